"""The command-line paths a user takes: tools/, dist_train.sh, mim, wheel."""
import glob
import json
import os.path as osp
import pickle
import sys
import zipfile
from importlib import metadata

import pytest
import torch
from mmengine.config import Config

from tests.conftest import REPO_ROOT, SMOKE_CONFIG, load_tool, run_command

SCALEKD_LOSSES = ('loss_cls', 'loss_kd', 'loss_perception_spatial',
                  'loss_perception_frequency', 'loss_final_spatial',
                  'loss_final_frequency')


STUDENT_CONFIG = osp.join(REPO_ROOT, 'configs', 'scalekd',
                          'student_resnet50_8xb32_in1k.py')


@pytest.fixture(scope='module')
def train_tool():
    return load_tool(osp.join(REPO_ROOT, 'tools', 'train.py'))


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
    run([sys.executable, 'tools/train.py', SMOKE_CONFIG, '--work-dir',
         work_dir, *ONE_EPOCH])
    check_training_outputs(work_dir)
    checkpoint = torch.load(
        osp.join(work_dir, 'epoch_1.pth'), weights_only=False)
    assert not any(k.startswith('teacher.') for k in checkpoint['state_dict'])

    predictions = str(tmp_path / 'preds.pkl')
    run([sys.executable, 'tools/test.py', SMOKE_CONFIG,
         osp.join(work_dir, 'epoch_1.pth'), '--work-dir', work_dir, '--out',
         predictions])
    with open(predictions, 'rb') as f:
        results = pickle.load(f)
    assert len(results) == 64  # the smoke validation set
    assert {'pred_label', 'gt_label', 'pred_score'} <= set(results[0])


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
    run(['mim', 'train', 'mmscalekd', SMOKE_CONFIG, '--work-dir', work_dir,
         *ONE_EPOCH])
    check_training_outputs(work_dir)
    result = run([
        'mim', 'test', 'mmscalekd', SMOKE_CONFIG, '--checkpoint',
        osp.join(work_dir, 'epoch_1.pth'), '--work-dir', work_dir
    ])
    assert 'accuracy/top1' in result.stdout + result.stderr


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
        with pytest.raises(SystemExit, match='--amp needs a CUDA GPU'):
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
