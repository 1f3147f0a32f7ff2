"""The shipped hooks under mmengine's FlexibleRunner with DDPStrategy: two
gloo processes on CPU train, save, auto-resume, and refuse a NaN
checkpoint."""
import os.path as osp
import sys

import pytest
import torch

from tests.conftest import load_checkpoint, run_command

DRIVER = osp.join(osp.dirname(__file__), 'flexible_runner.py')


def train(work_dir, epochs, resume=False):
    command = [
        sys.executable, '-m', 'torch.distributed.run', '--standalone',
        '--nproc_per_node', '2', DRIVER, str(work_dir), str(epochs)
    ] + (['--resume'] if resume else [])
    return run_command(command, check=False)


@pytest.mark.slow
def test_two_cpu_processes_train_and_resume(tmp_path):
    work_dir = tmp_path / 'run'
    first = train(work_dir, 1)
    assert first.returncode == 0, first.stdout + first.stderr
    assert not (work_dir / 'run.lock').exists()  # released at the end
    second = train(work_dir, 2, resume=True)
    output = second.stdout + second.stderr
    assert second.returncode == 0, output
    assert f'Resume checkpoint from {work_dir / "epoch_1.pth"}' in output
    checkpoint = load_checkpoint(work_dir / 'epoch_2.pth')
    assert checkpoint['meta']['epoch'] == 2
    # The run recorded the distiller's architecture (WorkDirHook's save).
    assert 'model_architecture' in checkpoint['meta']

    # A NaN weight in the newest checkpoint: refused before anything trains.
    weights = checkpoint['state_dict']
    name = next(k for k, v in weights.items()
                if 'student' in k and v.is_floating_point())
    weights[name].view(-1)[0] = float('nan')
    torch.save(checkpoint, work_dir / 'epoch_2.pth')
    third = train(work_dir, 3, resume=True)
    output = third.stdout + third.stderr
    assert third.returncode != 0
    assert 'holds NaN or Inf values' in output and 'resume=' in output
    assert not (work_dir / 'epoch_3.pth').exists()
