# Evaluate a checkpoint (the student of a ScaleKD run) on a config's test set.
# torch, mmengine and mmscalekd are imported once the arguments are parsed,
# so that `--help` answers at once.
import argparse
import os
import os.path as osp
from copy import deepcopy


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Test (and eval) a model')
    parser.add_argument('config', help='test config file path')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('--work-dir', help='the dir to save logs and metrics')
    parser.add_argument(
        '--out', help='file to dump the predictions (.pkl) or metrics to')
    parser.add_argument(
        '--out-item',
        choices=['metrics', 'pred'],
        help='what --out holds: the per-image predictions (default) or the '
        'metrics')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action='extend',
        metavar='KEY=VALUE',
        help='override config settings, e.g. test_dataloader.batch_size=64')
    parser.add_argument(
        '--amp',
        action='store_true',
        help='mixed-precision test (`test_cfg.fp16=True`: fp16 autocast on '
        'CUDA, bf16 on the CPU)')
    parser.add_argument(
        '--show-dir',
        help='save every INTERVAL-th test image, drawn with its prediction, '
        'into this folder')
    parser.add_argument(
        '--show',
        action='store_true',
        help='show images with their predictions in a window')
    parser.add_argument(
        '--interval',
        type=int,
        default=1,
        help='draw every INTERVAL-th test image (with --show / --show-dir)')
    parser.add_argument(
        '--wait-time',
        type=float,
        default=2,
        help='seconds each --show window stays open')
    parser.add_argument(
        '--no-pin-memory',
        action='store_true',
        help='turn off pin_memory in the test data loader')
    parser.add_argument(
        '--tta',
        action='store_true',
        help='test-time augmentation: the config\'s `tta_model` and '
        '`tta_pipeline`, else the average of the image and its horizontal '
        'flip (mmpretrain\'s AverageClsScoreTTA)')
    parser.add_argument(
        '--launcher',
        choices=['none', 'pytorch', 'slurm', 'mpi'],
        default='none',
        help='job launcher')
    parser.add_argument(
        '--verbose',
        action='store_true',
        help='also print the environment, the whole config and the hook '
        'order before testing (always written to the log file), and the '
        'traceback of an error')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args(argv)
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    from mmscalekd.utils.command_line import dict_options
    return dict_options(args, 'cfg_options')


def use_tta(cfg):
    """Wrap ``cfg.model`` for test-time augmentation, as mmpretrain does:
    the config's ``tta_model`` / ``tta_pipeline``, else the mean score of
    the image and its horizontal flip."""
    from mmengine.config import ConfigDict
    if 'tta_model' not in cfg:
        cfg.tta_model = dict(type='mmpretrain.AverageClsScoreTTA')
    if 'tta_pipeline' not in cfg:
        pipeline = cfg.test_dataloader.dataset.pipeline
        cfg.tta_pipeline = deepcopy(pipeline)
        cfg.tta_pipeline[-1] = dict(
            type='TestTimeAug',
            transforms=[[dict(type='RandomFlip', prob=1.),
                         dict(type='RandomFlip', prob=0.)],
                        [pipeline[-1]]])
    cfg.model = ConfigDict(**cfg.tta_model, module=cfg.model)
    cfg.test_dataloader.dataset.pipeline = cfg.tta_pipeline


def merge_args(cfg, args):
    from mmscalekd.utils.dataloader import set_dataloader_defaults
    cfg.launcher = args.launcher
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir', None) is None:
        cfg.work_dir = osp.join('./work_dirs',
                                osp.splitext(osp.basename(args.config))[0])
    cfg.load_from = args.checkpoint

    if args.amp:
        cfg.test_cfg.fp16 = True

    if args.show or args.show_dir is not None:
        if args.tta:
            # mmpretrain's VisualizationHook draws one view per image; under
            # TTA a batch holds several (it fails the same way there).
            raise ValueError('--show / --show-dir cannot be combined with '
                             '--tta: run them separately.')
        hooks = cfg.get('default_hooks') or {}
        if 'visualization' not in hooks:
            raise ValueError(
                '--show / --show-dir need a VisualizationHook: set '
                "`default_hooks.visualization=dict(type='VisualizationHook')`"
                ' (mmpretrain\'s default_runtime.py has one).')
        hooks.visualization.update(
            enable=True, show=args.show, wait_time=args.wait_time,
            out_dir=args.show_dir, interval=args.interval)

    if args.tta:
        use_tta(cfg)

    # mmpretrain's tools/test.py defaults for the test data loader.
    set_dataloader_defaults(cfg, ('test', ), persistent_workers=False,
                            no_pin_memory=args.no_pin_memory)

    if args.cfg_options is not None:
        cfg.merge_from_dict(args.cfg_options)
    return cfg


def main(argv=None):
    """Test, and return the metrics."""
    args = parse_args(argv)
    import mmengine
    from mmengine.config import Config
    from mmengine.evaluator import DumpResults

    from mmscalekd.engine import run
    from mmscalekd.utils.command_line import build_runner, report_errors
    report_errors(verbose=args.verbose)
    if args.out is None and args.out_item is not None:
        raise ValueError('--out-item needs --out.')
    cfg = merge_args(Config.fromfile(args.config), args)
    runner = build_runner(cfg, verbose=args.verbose, training=False)
    if args.out and args.out_item in ('pred', None):
        runner.test_evaluator.metrics.append(
            DumpResults(out_file_path=args.out))
    metrics = run(runner, cfg, 'test')
    if args.out and args.out_item == 'metrics':
        mmengine.dump(metrics, args.out)
    return metrics


if __name__ == '__main__':
    main()
