"""Whole training runs with faults injected: kills, a kill while saving, a
non-finite loss, and the teacher's integrity over a run."""
import glob
import json
import os.path as osp
import sys

import pytest
import torch

from tests.conftest import (SMOKE_CONFIG, build_runner, load_checkpoint,
                            run_command, smoke_config)

DRIVER = osp.join(osp.dirname(__file__), 'fault_injection.py')
# The smoke run: 3 epochs of 6 iterations, checkpoints after each epoch.
ITERS_PER_EPOCH = 6


def run(args, expect_killed=False, expect_failure=False):
    result = run_command([sys.executable] + args, check=False)
    if expect_killed:
        assert result.returncode == -9, result.stderr[-3000:]
    elif expect_failure:
        assert result.returncode not in (0, -9), result.stderr[-3000:]
    else:
        assert result.returncode == 0, result.stderr[-5000:]
    return result


def train(work_dir, *extra):
    return run([
        'tools/train.py', SMOKE_CONFIG, '--work-dir', work_dir,
        '--cfg-options', 'default_hooks.checkpoint.max_keep_ckpts=-1', *extra
    ])


def train_losses(work_dir):
    """iteration -> logged loss terms, over every run in the work dir."""
    records = {}
    for path in sorted(glob.glob(osp.join(work_dir, '*', 'vis_data',
                                          'scalars.json'))):
        with open(path) as f:
            for line in f:
                record = json.loads(line)
                if 'loss' in record:
                    records[record['iter']] = {
                        k: v for k, v in record.items() if 'loss' in k
                    }
    return records


def assert_same_weights(a, b):
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


@pytest.fixture(scope='module')
def straight_run(tmp_path_factory):
    work_dir = str(tmp_path_factory.mktemp('straight'))
    train(work_dir)
    return work_dir


@pytest.mark.slow
def test_sigkill_mid_epoch_then_resume_is_exact(straight_run, tmp_path):
    work_dir = str(tmp_path)
    # Killed at the 4th iteration of epoch 2 (after epoch 1's checkpoint).
    run([DRIVER, work_dir, '--kill-at-iter', str(ITERS_PER_EPOCH + 3)],
        expect_killed=True)
    assert osp.isfile(osp.join(work_dir, 'epoch_1.pth'))
    assert not osp.exists(osp.join(work_dir, 'epoch_2.pth'))
    result = train(work_dir, '--resume')
    assert 'resumed epoch: 1' in result.stdout + result.stderr

    assert_same_weights(
        load_checkpoint(osp.join(work_dir, 'epoch_3.pth'))['state_dict'],
        load_checkpoint(osp.join(straight_run, 'epoch_3.pth'))['state_dict'])
    straight, resumed = train_losses(straight_run), train_losses(work_dir)
    after_resume = [i for i in straight if i > ITERS_PER_EPOCH]
    assert after_resume
    for iteration in after_resume:
        assert resumed[iteration] == straight[iteration], iteration


@pytest.mark.slow
def test_kill_while_saving_leaves_no_broken_checkpoint(straight_run,
                                                       tmp_path):
    work_dir = str(tmp_path)
    run([DRIVER, work_dir, '--kill-while-saving', '2'], expect_killed=True)
    # The half-written file never got the checkpoint's name ...
    assert not osp.exists(osp.join(work_dir, 'epoch_2.pth'))
    with open(osp.join(work_dir, 'last_checkpoint')) as f:
        latest = f.read().strip()
    # ... and "latest" is the complete epoch-1 checkpoint.
    assert latest.endswith('epoch_1.pth')
    assert load_checkpoint(latest)['meta']['epoch'] == 1
    train(work_dir, '--resume')
    assert_same_weights(
        load_checkpoint(osp.join(work_dir, 'epoch_3.pth'))['state_dict'],
        load_checkpoint(osp.join(straight_run, 'epoch_3.pth'))['state_dict'])


@pytest.mark.slow
def test_non_finite_loss_stops_the_run_and_keeps_last_checkpoint(tmp_path):
    work_dir = str(tmp_path)
    result = run([DRIVER, work_dir, '--nan-at-iter', '9'],
                 expect_failure=True)
    assert 'Non-finite loss at iteration 9' in result.stderr
    assert 'loss_cls' in result.stderr
    checkpoint = load_checkpoint(osp.join(work_dir, 'epoch_1.pth'))
    assert all(
        torch.isfinite(v).all() for v in checkpoint['state_dict'].values()
        if v.is_floating_point())
    assert not osp.exists(osp.join(work_dir, 'epoch_2.pth'))


def test_teacher_is_bit_identical_after_a_run(tmp_path):
    """A teacher loaded from its file by a run (train, validate, save) is
    that file's teacher at the end, and in no checkpoint."""
    from mmengine.config import Config

    from mmpretrain.registry import MODELS
    torch.manual_seed(7)
    teacher = MODELS.build(Config.fromfile(SMOKE_CONFIG).teacher)
    teacher.init_weights()
    teacher_file = str(tmp_path / 'teacher.pth')
    torch.save({'state_dict': teacher.state_dict()}, teacher_file)

    # In-process, to read the trained model's teacher afterwards.
    runner = build_runner(smoke_config(
        tmp_path / 'run', validate=True,
        **{'model.teacher.checkpoint': teacher_file}))
    runner.train()
    assert_same_weights(runner.model.teacher.network.state_dict(),
                        teacher.state_dict())
    saved = load_checkpoint(tmp_path / 'run' / 'epoch_1.pth')['state_dict']
    assert not any(k.startswith('teacher.') for k in saved)
    assert any(k.startswith('student.') for k in saved)
