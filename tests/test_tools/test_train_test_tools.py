"""The command-line paths a user takes: tools/, dist_train.sh, mim, wheel."""
import argparse
import glob
import json
import os
import os.path as osp
import pickle
import sys
import zipfile
from importlib import metadata

import pytest
import torch
from mmengine.config import Config

from mmscalekd.utils.dataloader import has_accelerator
from tests.conftest import REPO_ROOT, SMOKE_CONFIG, load_tool, run_command
from tests.test_tools.stand_ins import recorded, stand_in

SCALEKD_LOSSES = ('loss_cls', 'loss_kd', 'loss_perception_spatial',
                  'loss_perception_frequency', 'loss_final_spatial',
                  'loss_final_frequency')


STUDENT_CONFIG = osp.join(REPO_ROOT, 'configs', 'scalekd',
                          'student_resnet50_8xb32_in1k.py')


@pytest.fixture(scope='module')
def train_tool():
    return load_tool(osp.join(REPO_ROOT, 'tools', 'train.py'))


@pytest.fixture(scope='module')
def test_tool():
    return load_tool(osp.join(REPO_ROOT, 'tools', 'test.py'))


def mmpretrain_tool(name):
    """mmpretrain's own tools/NAME.py (shipped in the package for mim)."""
    import mmpretrain
    return load_tool(osp.join(osp.dirname(mmpretrain.__file__), '.mim',
                              'tools', f'{name}.py'))


def mmpretrain_args(tool, argv, monkeypatch):
    monkeypatch.setattr(sys, 'argv', [f'{tool.__name__}.py', *argv])
    return tool.parse_args()


def run(cmd):
    return run_command(cmd)


def built_config(tool, *argv, config=SMOKE_CONFIG):
    """The config tools/train.py would train with these arguments."""
    args = tool.parse_args([config, *argv])
    return tool.merge_args(Config.fromfile(config), args)


def logged_scalars(work_dir):
    (path, ) = glob.glob(osp.join(work_dir, '*', 'vis_data', 'scalars.json'))
    with open(path) as f:
        return [json.loads(line) for line in f]


# One epoch of the smoke run (6 iterations on one process, 3 on two), then
# validation: every path below trains, checkpoints and validates.
ONE_EPOCH = ['--cfg-options', 'train_cfg.max_epochs=1',
             'param_scheduler.T_max=1']


def check_training_outputs(work_dir, epochs=1):
    assert osp.isfile(osp.join(work_dir, f'epoch_{epochs}.pth'))
    records = logged_scalars(work_dir)
    train = [r for r in records if 'loss' in r]
    assert train, records
    for key in SCALEKD_LOSSES:
        assert all(key in r for r in train), key
    # the total is the sum of the terms
    for record in train:
        assert record['loss'] == pytest.approx(
            sum(record[k] for k in SCALEKD_LOSSES), rel=1e-3)
    assert any('accuracy/top1' in r for r in records)


@pytest.mark.slow
def test_train_then_test(tmp_path):
    work_dir = str(tmp_path / 'run')
    result = run([sys.executable, 'tools/train.py', SMOKE_CONFIG,
                  '--work-dir', work_dir, *ONE_EPOCH])
    check_training_outputs(work_dir)
    # The first screen: no environment, config or hook table before the
    # first iteration (about 330 lines with them) ...
    console = result.stdout.splitlines()
    first = next(i for i, line in enumerate(console)
                 if 'Epoch(train)' in line)
    assert first < 25, '\n'.join(console[:first])
    assert 'System environment' not in result.stdout
    assert 'MultiScaleDeformableAttention' not in result.stderr
    # ... and the log file keeps all of it.
    (log, ) = glob.glob(osp.join(work_dir, '*', '*.log'))
    with open(log) as f:
        text = f.read()
    for part in ('System environment:', 'Config:', 'Hooks will be executed'):
        assert part in text, part
    checkpoint = torch.load(
        osp.join(work_dir, 'epoch_1.pth'), weights_only=False)
    assert not any(k.startswith('teacher.') for k in checkpoint['state_dict'])

    predictions = str(tmp_path / 'preds.pkl')
    result = run([sys.executable, 'tools/test.py', SMOKE_CONFIG,
                  osp.join(work_dir, 'epoch_1.pth'), '--work-dir', work_dir,
                  '--out', predictions])
    # The console of a test: the random-teacher warning (7 lines), the
    # checkpoint, progress and the metrics (344 lines with the start-up
    # details, which the log file keeps).
    console = (result.stdout + result.stderr).splitlines()
    assert len(console) <= 15, '\n'.join(console)
    assert 'accuracy/top1' in console[-1]
    assert 'System environment' not in result.stdout
    assert 'MultiScaleDeformableAttention' not in result.stderr
    (log, ) = sorted(glob.glob(osp.join(work_dir, '*', '*.log')))[-1:]
    with open(log) as f:
        assert 'System environment:' in f.read()
    with open(predictions, 'rb') as f:
        results = pickle.load(f)
    assert len(results) == 64  # the smoke validation set
    assert {'pred_label', 'gt_label', 'pred_score'} <= set(results[0])

    # mmpretrain's test flags: flip TTA (the checkpoint loads into the
    # wrapped distiller), autocast, drawn predictions.
    tta = str(tmp_path / 'tta.pkl')
    run([sys.executable, 'tools/test.py', SMOKE_CONFIG,
         osp.join(work_dir, 'epoch_1.pth'), '--work-dir', work_dir, '--out',
         tta, '--tta', '--amp'])
    with open(tta, 'rb') as f:
        flipped = pickle.load(f)
    assert len(flipped) == 64
    assert any(not torch.allclose(a['pred_score'].float(),
                                  b['pred_score'].float())
               for a, b in zip(results, flipped))
    run([sys.executable, 'tools/test.py', SMOKE_CONFIG,
         osp.join(work_dir, 'epoch_1.pth'), '--work-dir', work_dir,
         '--show-dir', str(tmp_path / 'vis'), '--interval', '16'])
    assert sorted(p.name for p in (tmp_path / 'vis').iterdir()) == [
        '0_0.png', '16_0.png', '32_0.png', '48_0.png']


@pytest.mark.slow
def test_smoke_config_trains_under_mmpretrains_train_py(tmp_path):
    # mmpretrain's tools/train.py turns on persistent_workers; the smoke
    # config (num_workers=0) must turn it off itself.
    import mmpretrain
    work_dir = str(tmp_path / 'mmpretrain')
    run([sys.executable,
         osp.join(osp.dirname(mmpretrain.__file__), '.mim', 'tools',
                  'train.py'), SMOKE_CONFIG, '--work-dir', work_dir,
         '--cfg-options', 'train_cfg.max_epochs=1', 'param_scheduler.T_max=1',
         'train_dataloader.dataset.num_samples=64'])
    assert osp.isfile(osp.join(work_dir, 'epoch_1.pth'))


@pytest.mark.slow
def test_two_process_cpu_training(tmp_path):
    work_dir = str(tmp_path / 'dist')
    result = run([
        'bash', 'tools/dist_train.sh', SMOKE_CONFIG, '2', '--work-dir',
        work_dir, *ONE_EPOCH, 'sync_bn=torch'
    ])
    # SyncBatchNorm needs GPUs: said, not silently dropped
    assert '`sync_bn=\'torch\'` needs GPUs' in result.stdout + result.stderr
    check_training_outputs(work_dir)
    # 192 images, batch 32 per process: 3 iterations per epoch with two
    # processes (6 with one), so the data really was split between them.
    checkpoint = torch.load(
        osp.join(work_dir, 'epoch_1.pth'), weights_only=False)
    assert checkpoint['meta']['iter'] == 3


def _installed():
    try:
        metadata.distribution('mmscalekd')
    except metadata.PackageNotFoundError:
        return False
    return True


@pytest.mark.slow
@pytest.mark.skipif(not _installed(), reason='needs `make install` first')
def test_mim_train_and_test(tmp_path):
    work_dir = str(tmp_path / 'mim')
    result = run(['mim', 'train', 'mmscalekd', SMOKE_CONFIG, '--work-dir',
                  work_dir, *ONE_EPOCH])
    check_training_outputs(work_dir)
    # mmcv-lite's warning came twice (mim's `train.py -h`, then train.py)
    assert 'MultiScaleDeformableAttention' not in result.stderr
    result = run([
        'mim', 'test', 'mmscalekd', SMOKE_CONFIG, '--checkpoint',
        osp.join(work_dir, 'epoch_1.pth'), '--work-dir', work_dir
    ])
    output = (result.stdout + result.stderr).splitlines()
    assert 'accuracy/top1' in output[-2]  # then mim's "finished" line
    assert len(output) <= 16, '\n'.join(output)


@pytest.mark.skipif(not _installed(), reason='needs `make install` first')
def test_mim_train_with_the_slurm_launcher(tmp_path, monkeypatch):
    """`mim train mmscalekd CFG --launcher slurm` without --srun-args hands
    srun the package's tools/train.py (with click >= 8.3 mim crashed
    before: the `mim` extra and requirements/runtime.txt bound click). A
    stand-in srun records its arguments."""
    bin_dir = tmp_path / 'bin'
    record = stand_in(bin_dir, 'srun')
    monkeypatch.setenv('PATH', f'{bin_dir}:{os.environ["PATH"]}')
    run(['mim', 'train', 'mmscalekd', SMOKE_CONFIG, '--launcher', 'slurm',
         '--gpus', '2', '--gpus-per-node', '2', '--partition', 'p',
         '--work-dir', str(tmp_path / 'w')])
    args = recorded(record)
    assert args[:4] == ['-p', 'p', '--gres=gpu:2', '--ntasks=2']
    script = args.index('-u') + 1
    assert args[script].endswith(
        osp.join('mmscalekd', '.mim', 'tools', 'train.py'))
    assert osp.isfile(args[script])
    assert args[script + 1] == SMOKE_CONFIG
    assert args[script + 2:script + 4] == ['--launcher', 'slurm']


def test_wheel_ships_configs_and_tools_for_mim(tmp_path):
    run([sys.executable, '-m', 'pip', 'wheel', '.', '--no-deps',
         '--no-build-isolation', '-q', '-w', str(tmp_path)])
    (wheel, ) = glob.glob(str(tmp_path / 'mmscalekd-*.whl'))
    names = set(zipfile.ZipFile(wheel).namelist())
    for name in ('mmscalekd/.mim/tools/train.py',
                 'mmscalekd/.mim/tools/test.py',
                 'mmscalekd/.mim/tools/dist_train.sh',
                 'mmscalekd/.mim/configs/smoke/scalekd_smoke_synthetic.py',
                 'mmscalekd/.mim/configs/scalekd/'
                 'scalekd_swin-l_resnet50_8xb32_in1k.py',
                 'mmscalekd/.mim/configs/_base_/scalekd/swin.py',
                 'mmscalekd/.mim/configs/_base_/scalekd/beit-l.py',
                 'mmscalekd/models/distillers/scalekd_distiller.py'):
        assert name in names, name


# --- the speed flags: the config the tool builds, without training --------


def test_no_flag_leaves_the_model_eager_and_fp32(train_tool):
    cfg = built_config(train_tool)
    assert cfg.optim_wrapper.get('type', 'OptimWrapper') == 'OptimWrapper'
    assert 'compile' not in cfg.model and 'channels_last' not in cfg.model
    assert 'dtype' not in cfg.model.teacher and 'compile' not in cfg


def test_compile_compiles_the_distiller_not_the_train_step(
        train_tool, capsys):
    cfg = built_config(train_tool, '--compile')
    assert cfg.model.compile == {}
    # mmengine's whole-train_step compile stays off
    assert not cfg.get('compile')
    assert '--compile: model.compile=dict()' in capsys.readouterr().out
    # the config's own torch.compile arguments are kept
    cfg = built_config(train_tool, '--compile', '--cfg-options',
                       'model.compile.mode=max-autotune')
    assert cfg.model.compile == {'mode': 'max-autotune'}


def test_compile_of_a_student_config_is_mmengines(train_tool, capsys):
    cfg = built_config(train_tool, '--compile', config=STUDENT_CONFIG)
    assert cfg.compile is True and 'compile' not in cfg.model
    assert "mmengine's compile=True" in capsys.readouterr().out


def test_channels_last_sets_the_model_key(train_tool):
    cfg = built_config(train_tool, '--channels-last')
    assert cfg.model.channels_last is True
    with pytest.raises(SystemExit, match='model.channels_last'):
        built_config(train_tool, '--channels-last', config=STUDENT_CONFIG)


def test_amp_bf16_holds_the_teacher_in_bf16_without_loss_scaling(
        train_tool):
    cfg = Config.fromfile(SMOKE_CONFIG)
    line = train_tool.use_amp(cfg, 'bfloat16')
    assert cfg.optim_wrapper.type == 'AmpOptimWrapper'
    assert cfg.optim_wrapper.dtype == 'bfloat16'
    assert cfg.optim_wrapper.loss_scale == {'enabled': False}
    assert cfg.optim_wrapper.optimizer.lr == 0.05  # the rest is kept
    assert cfg.model.teacher.dtype == 'bfloat16'
    assert line == ('--amp: bfloat16 autocast (the GPU supports bf16), no '
                    'loss scaling; frozen teacher held in bfloat16')


def test_amp_fp16_scales_the_loss_and_keeps_a_configured_teacher_dtype(
        train_tool):
    cfg = Config.fromfile(SMOKE_CONFIG)
    cfg.model.teacher.dtype = 'float32'
    line = train_tool.use_amp(cfg, 'float16')
    assert (cfg.optim_wrapper.dtype, cfg.optim_wrapper.loss_scale) == (
        'float16', 'dynamic')
    assert cfg.model.teacher.dtype == 'float32'
    assert 'dynamic loss scaling' in line and 'held in float32' in line
    # a student config has no teacher to hold
    cfg = Config.fromfile(STUDENT_CONFIG)
    train_tool.use_amp(cfg, 'bfloat16')
    assert 'teacher' not in cfg.model
    assert cfg.optim_wrapper.dtype == 'bfloat16'


def test_amp_keeps_an_amp_config_and_refuses_other_wrappers(train_tool):
    cfg = Config.fromfile(SMOKE_CONFIG)
    cfg.optim_wrapper.update(type='AmpOptimWrapper', dtype='float16')
    assert train_tool.use_amp(cfg, 'bfloat16').startswith(
        'AMP is already enabled in the config (float16)')
    assert cfg.optim_wrapper.dtype == 'float16'
    assert cfg.model.teacher.dtype == 'float16'
    cfg.optim_wrapper.type = 'ApexOptimWrapper'
    with pytest.raises(ValueError, match='optim_wrapper.type'):
        train_tool.use_amp(cfg, 'bfloat16')


def test_amp_picks_the_dtype_of_this_machine(train_tool):
    if not torch.cuda.is_available():
        with pytest.raises(SystemExit, match='--amp'):
            built_config(train_tool, '--amp')
        return
    expected = 'bfloat16' if torch.cuda.is_bf16_supported() else 'float16'
    cfg = built_config(train_tool, '--amp')
    assert cfg.optim_wrapper.dtype == cfg.model.teacher.dtype == expected


@pytest.mark.slow
@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs CUDA')
def test_amp_compile_training_on_cuda(tmp_path):
    work_dir = str(tmp_path / 'cuda')
    result = run([
        sys.executable, 'tools/train.py', SMOKE_CONFIG, '--work-dir',
        work_dir, '--amp', '--compile', '--channels-last', *ONE_EPOCH
    ])
    output = result.stdout + result.stderr
    dtype = 'bfloat16' if torch.cuda.is_bf16_supported() else 'float16'
    assert f'--amp: {dtype} autocast' in output
    assert f'frozen teacher held in {dtype}' in output
    assert '--compile: model.compile=dict()' in output
    check_training_outputs(work_dir)
    records = [r for r in logged_scalars(work_dir) if 'loss' in r]
    assert all(torch.isfinite(torch.tensor(r['loss'])) for r in records)


# --- mmpretrain parity: data loaders, test flags, the first screen --------


def _loaders(cfg):
    return {s: cfg.get(f'{s}_dataloader') for s in ('train', 'val', 'test')}


@pytest.mark.parametrize('argv', [[], ['--no-persistent-workers'],
                                  ['--no-pin-memory']])
def test_dataloader_settings_are_mmpretrains(train_tool, monkeypatch, argv):
    theirs_tool = mmpretrain_tool('train')
    for config in (SMOKE_CONFIG, STUDENT_CONFIG):
        ours = built_config(train_tool, *argv, config=config)
        theirs = theirs_tool.merge_args(
            Config.fromfile(config),
            mmpretrain_args(theirs_tool, [config, *argv], monkeypatch))
        for split, loader in _loaders(ours).items():
            want = _loaders(theirs)[split].to_dict()
            have = loader.to_dict()
            # pin_memory where there is an accelerator (torch pins nothing
            # and warns without one)
            if '--no-pin-memory' not in argv:
                want['pin_memory'] = has_accelerator()
            assert have == want, (config, split)
            assert have['collate_fn'] == {'type': 'default_collate'}
    cfg = built_config(train_tool, *argv, config=STUDENT_CONFIG)
    assert cfg.train_dataloader.persistent_workers is (
        '--no-persistent-workers' not in argv)


@pytest.mark.slow
def test_every_shipped_config_runs_under_both_train_scripts(
        train_tool, monkeypatch):
    theirs_tool = mmpretrain_tool('train')
    configs = [p for p in glob.glob(osp.join(REPO_ROOT, 'configs', '**',
                                             '*.py'), recursive=True)
               if '_base_' not in p]
    assert len(configs) > 40
    for config in configs:
        args = mmpretrain_args(theirs_tool, [config], monkeypatch)
        for cfg in (theirs_tool.merge_args(Config.fromfile(config), args),
                    built_config(train_tool, config=config)):
            for split, loader in _loaders(cfg).items():
                # torch refuses persistent workers without workers
                assert loader.num_workers > 0 or \
                    not loader.persistent_workers, (config, split)


def test_smoke_loaders_build_under_mmpretrains_settings(monkeypatch):
    from mmengine.registry import init_default_scope
    from mmengine.runner import Runner
    init_default_scope('mmpretrain')
    theirs_tool = mmpretrain_tool('train')
    cfg = theirs_tool.merge_args(
        Config.fromfile(SMOKE_CONFIG),
        mmpretrain_args(theirs_tool, [SMOKE_CONFIG], monkeypatch))
    loader = Runner.build_dataloader(cfg.train_dataloader)
    assert loader.num_workers == 0 and not loader.persistent_workers
    assert next(iter(loader))['inputs'].shape == (32, 3, 64, 64)


def test_test_py_accepts_mmpretrains_test_flags(test_tool, monkeypatch):
    theirs_tool = mmpretrain_tool('test')
    argv = [SMOKE_CONFIG, 'x.pth', '--amp', '--tta', '--show-dir', 'vis',
            '--show', '--interval', '3', '--wait-time', '0.5',
            '--no-pin-memory', '--out', 'x.pkl', '--out-item', 'metrics',
            '--work-dir', 'w', '--launcher', 'none', '--cfg-options',
            'test_dataloader.batch_size=8']
    theirs = vars(mmpretrain_args(theirs_tool, argv, monkeypatch))
    ours = vars(test_tool.parse_args(argv))
    assert ours.pop('verbose') is False  # ours alone: the quiet console
    assert theirs == ours
    ours['verbose'] = False

    shown = dict(ours, tta=False)
    cfg = test_tool.merge_args(Config.fromfile(SMOKE_CONFIG),
                               argparse.Namespace(**shown))
    want = theirs_tool.merge_args(Config.fromfile(SMOKE_CONFIG),
                                  argparse.Namespace(**shown))
    assert cfg.test_cfg.fp16 is True
    assert cfg.default_hooks.visualization == want.default_hooks.visualization
    assert cfg.default_hooks.visualization.interval == 3
    assert cfg.test_dataloader == want.test_dataloader

    tta = dict(ours, show=False, show_dir=None)
    cfg = test_tool.merge_args(Config.fromfile(SMOKE_CONFIG),
                               argparse.Namespace(**tta))
    want = theirs_tool.merge_args(Config.fromfile(SMOKE_CONFIG),
                                  argparse.Namespace(**tta))
    assert cfg.model.type == 'mmpretrain.AverageClsScoreTTA'
    assert cfg.model.module.type == 'ScaleKDDistiller'
    assert cfg.test_dataloader == want.test_dataloader
    assert cfg.test_dataloader.dataset.pipeline[-1].type == 'TestTimeAug'
    with pytest.raises(ValueError, match='--show-dir.*--tta'):
        test_tool.merge_args(Config.fromfile(SMOKE_CONFIG),
                             argparse.Namespace(**dict(ours, show=False)))


def test_startup_details_go_to_the_log_file_only(train_tool, tmp_path,
                                                 capsys):
    from mmscalekd.utils.command_line import build_runner

    def build(verbose, work_dir):
        cfg = built_config(train_tool, '--work-dir', str(work_dir))
        # Its own logger: mmengine names the logger after the experiment
        # (config name and time, to the second) and reuses an existing one.
        cfg.experiment_name = f'startup_verbose_{verbose}'
        runner = build_runner(cfg, verbose=verbose)
        (log, ) = [h.baseFilename for h in runner.logger.handlers
                   if hasattr(h, 'baseFilename')]
        with open(log) as f:
            return capsys.readouterr().out, f.read(), runner

    details = ('System environment:', 'Config:\n',
               'Hooks will be executed in the following order')
    console, log, runner = build(False, tmp_path / 'quiet')
    assert type(runner).__name__ == 'Runner'  # mmengine's, console filtered
    assert 'Environment, config and hook order: in ' in console
    for part in details:
        assert part not in console and part in log, part
    assert len(console.splitlines()) < 20, console
    console, log, _ = build(True, tmp_path / 'verbose')
    for part in details:
        assert part in console and part in log, part
    assert len(console.splitlines()) > 200
