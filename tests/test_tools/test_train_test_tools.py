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

from tests.conftest import SMOKE_CONFIG, run_command

SCALEKD_LOSSES = ('loss_cls', 'loss_kd', 'loss_perception_spatial',
                  'loss_perception_frequency', 'loss_final_spatial',
                  'loss_final_frequency')


def run(cmd):
    return run_command(cmd)


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
