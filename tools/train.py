# Train a model (a ScaleKD student) from a config, as mmpretrain's train.py.
# torch, mmengine and mmscalekd are imported once the arguments are parsed:
# `--help` answers at once (`mim train` runs it before every run).
import argparse
import os
import os.path as osp


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Train a model')
    parser.add_argument('config', help='train config file path')
    parser.add_argument('--work-dir', help='the dir to save logs and models')
    parser.add_argument(
        '--resume',
        nargs='?',
        type=str,
        const='auto',
        help='resume from the given checkpoint, or from the latest one in '
        'the work dir if no path is given')
    parser.add_argument(
        '--amp',
        action='store_true',
        help='mixed precision (CUDA only): bf16 where the GPU supports it, '
        'else fp16 with dynamic loss scaling; the frozen teacher is held in '
        'the same dtype unless `model.teacher.dtype` is set')
    parser.add_argument(
        '--compile',
        action='store_true',
        help='torch.compile the hot path of a ScaleKD distiller '
        '(`model.compile=dict()`: teacher forward and rest, student, '
        "projectors); other models: mmengine's `compile=True`")
    parser.add_argument(
        '--channels-last',
        action='store_true',
        help='channels-last student, projectors and images on CUDA '
        '(`model.channels_last=True`; the model keeps it off on CPU)')
    parser.add_argument(
        '--no-validate',
        action='store_true',
        help='do not evaluate checkpoints during training')
    parser.add_argument(
        '--auto-scale-lr',
        action='store_true',
        help='scale the learning rate with the total batch size')
    parser.add_argument(
        '--accumulate',
        type=int,
        metavar='N',
        help='accumulate the gradients of N batches per optimizer step '
        '(`optim_wrapper.accumulative_counts=N`): the global batch is '
        'processes x batch per process x N, e.g. a recipe of 8 GPUs x 32 on '
        '2 GPUs: --accumulate 4; with --auto-scale-lr the lr is scaled by '
        'that global batch')
    parser.add_argument(
        '--no-pin-memory',
        action='store_true',
        help='turn off pin_memory in all data loaders')
    parser.add_argument(
        '--no-persistent-workers',
        action='store_true',
        help='turn off persistent_workers in all data loaders')
    parser.add_argument(
        '--verbose',
        action='store_true',
        help='also print the environment, the whole config and the hook '
        'order before training (always written to the log file), and the '
        'traceback of an error')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action='extend',
        metavar='KEY=VALUE',
        help='override config settings, e.g. model.teacher.checkpoint=x.pth')
    parser.add_argument(
        '--launcher',
        choices=['none', 'pytorch', 'slurm', 'mpi'],
        default='none',
        help='job launcher')
    # torch.distributed.launch passes --local-rank; older tools --local_rank.
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args(argv)
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    from mmscalekd.utils.command_line import dict_options
    return dict_options(args, 'cfg_options')


def is_distiller(cfg) -> bool:
    """Whether the config trains a ScaleKD distiller (not a model alone)."""
    return str(cfg.model.get('type', '')).split('.')[-1] == 'ScaleKDDistiller'


def amp_dtype() -> str:
    """The AMP dtype of this machine: bfloat16 where the GPU supports it,
    else float16 (with loss scaling)."""
    import torch
    if not torch.cuda.is_available():
        raise SystemExit(
            '--amp needs a CUDA GPU (mmengine\'s AmpOptimWrapper runs on '
            'accelerators only) and none is visible here: drop --amp to '
            'train in fp32 on the CPU.')
    return 'bfloat16' if torch.cuda.is_bf16_supported() else 'float16'


def use_amp(cfg, dtype: str) -> str:
    """Turn on mixed precision in ``dtype`` ('bfloat16' or 'float16').

    fp16 needs dynamic loss scaling; bf16 has fp32's range, so its scaler is
    off (a non-finite gradient then stops the run, FiniteCheckHook). The
    frozen teacher of a distiller is held in the same dtype unless the
    config sets ``model.teacher.dtype``. A config that already has
    ``AmpOptimWrapper`` keeps its own settings. Returns the log line.
    """
    wrapper = cfg.optim_wrapper
    wrapper_type = wrapper.get('type', 'OptimWrapper')
    if wrapper_type == 'AmpOptimWrapper':
        dtype = str(wrapper.get('dtype') or 'float16')
        line = f'AMP is already enabled in the config ({dtype}).'
    elif wrapper_type != 'OptimWrapper':
        raise ValueError(
            '--amp needs `optim_wrapper.type` to be OptimWrapper, got '
            f'{wrapper_type!r}.')
    else:
        wrapper.type = 'AmpOptimWrapper'
        wrapper.dtype = dtype
        if dtype == 'bfloat16':
            wrapper.loss_scale = dict(enabled=False)
            line = ('--amp: bfloat16 autocast (the GPU supports bf16), no '
                    'loss scaling')
        else:
            wrapper.loss_scale = 'dynamic'
            line = ('--amp: float16 autocast with dynamic loss scaling (the '
                    'GPU has no bf16)')
    if is_distiller(cfg):
        teacher = cfg.model.teacher
        teacher.setdefault('dtype', dtype)
        line += f'; frozen teacher held in {teacher.dtype}'
    return line


def merge_args(cfg, args):
    """Apply the command line to the config."""
    from mmscalekd.utils.dataloader import set_dataloader_defaults
    cfg.launcher = args.launcher
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir', None) is None:
        cfg.work_dir = osp.join('./work_dirs',
                                osp.splitext(osp.basename(args.config))[0])

    if args.amp:
        print(use_amp(cfg, amp_dtype()), flush=True)

    if args.compile:
        if is_distiller(cfg):
            # Not mmengine's `compile=True`: that compiles the whole
            # train_step, data preprocessor and loss bookkeeping included.
            if cfg.model.get('compile') is None:
                cfg.model.compile = dict()
            options = dict(cfg.model.compile) or 'dict()'
            print(f'--compile: model.compile={options} (teacher forward and '
                  'rest, student, projectors)', flush=True)
        else:
            cfg.compile = True
            print("--compile: mmengine's compile=True (the model's "
                  'train_step)', flush=True)

    if args.channels_last:
        if not is_distiller(cfg):
            raise SystemExit(
                '--channels-last sets `model.channels_last`, a key of '
                'ScaleKDDistiller; this config trains '
                f'{cfg.model.get("type")!r}.')
        cfg.model.channels_last = True

    if args.resume == 'auto':
        cfg.resume = True
        cfg.load_from = None
    elif args.resume is not None:
        cfg.resume = True
        cfg.load_from = args.resume

    if args.no_validate:
        cfg.val_cfg = None
        cfg.val_dataloader = None
        cfg.val_evaluator = None

    if args.auto_scale_lr:
        cfg.setdefault('auto_scale_lr', {})
        cfg.auto_scale_lr.enable = True

    if args.accumulate is not None:
        cfg.optim_wrapper.accumulative_counts = args.accumulate

    set_dataloader_defaults(cfg, ('train', 'val', 'test'),
                            no_pin_memory=args.no_pin_memory,
                            no_persistent_workers=args.no_persistent_workers)

    if args.cfg_options is not None:
        cfg.merge_from_dict(args.cfg_options)
    return cfg


def main(argv=None):
    args = parse_args(argv)
    from mmengine.config import Config

    from mmscalekd.engine import run
    from mmscalekd.utils.command_line import build_runner, report_errors
    report_errors(verbose=args.verbose)
    cfg = merge_args(Config.fromfile(args.config), args)
    run(build_runner(cfg, verbose=args.verbose), cfg, 'train')


if __name__ == '__main__':
    main()
