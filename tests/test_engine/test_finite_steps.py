"""A bad step never reaches the weights or the "last good" checkpoint."""
import os.path as osp
import sys
from contextlib import contextmanager

import pytest
import torch
from mmengine.hooks import Hook
from mmengine.optim import AmpOptimWrapper, OptimWrapper
from mmengine.registry import OPTIM_WRAPPERS

from mmscalekd.engine import FiniteCheckHook
from mmscalekd.utils import MMENGINE_CHECKPOINT_GLOBALS
from tests.conftest import (REPO_ROOT, build_runner, run_command, run_log,
                            smoke_config)

DRIVER = osp.join(osp.dirname(__file__), 'fault_injection.py')


@OPTIM_WRAPPERS.register_module()
class CPULossScalingOptimWrapper(AmpOptimWrapper):
    """``AmpOptimWrapper`` with torch's CPU ``GradScaler``, without autocast.

    mmengine builds ``AmpOptimWrapper`` on accelerators only; this keeps all
    of its loss-scaling code (backward, step, state) and swaps in the CPU
    scaler, so the skip-on-overflow path runs here as it runs under
    ``--amp`` on a GPU.
    """

    def __init__(self, init_scale: float = 256.0, **kwargs):
        OptimWrapper.__init__(self, **kwargs)
        self._scale_update_param = None
        self.cast_dtype = None
        self.loss_scaler = torch.amp.GradScaler('cpu', init_scale=init_scale)

    @contextmanager
    def optim_context(self, model):
        with OptimWrapper.optim_context(self, model):
            yield


class InfiniteGradients(Hook):
    """Make one weight's gradient infinite in the given iterations (the loss
    stays finite: an overflow in the backward pass)."""

    def __init__(self, iterations):
        self.iterations = set(iterations)
        self._handle = None

    def before_train_iter(self, runner, batch_idx, data_batch=None):
        if self._handle is not None:
            self._handle.remove()
            self._handle = None
        if runner.iter in self.iterations:
            weight = runner.model.student.backbone.conv1.weight
            self._handle = weight.register_hook(
                lambda grad: grad * float('inf'))


def finite(state_dict):
    return all(bool(torch.isfinite(v).all()) for v in state_dict.values()
               if v.is_floating_point())


def test_non_finite_gradient_stops_before_the_step(tmp_path):
    runner = build_runner(smoke_config(tmp_path, max_epochs=2))
    runner.register_hook(InfiniteGradients([3]))
    with pytest.raises(FloatingPointError) as error:
        runner.train()
    message = str(error.value)
    assert 'Non-finite gradients at iteration 3' in message
    assert 'student.backbone.conv1.weight' in message
    assert 'every loss term was finite' in message
    assert finite(runner.model.state_dict())  # the step never happened
    with torch.serialization.safe_globals(MMENGINE_CHECKPOINT_GLOBALS):
        saved = torch.load(tmp_path / 'epoch_1.pth', weights_only=True)
    assert finite(saved['state_dict'])
    assert not osp.exists(tmp_path / 'epoch_2.pth')


class PoisonAt(Hook):
    """Make a state tensor NaN at a point of the run: what the checks of
    the loss and the gradients cannot see."""

    def __init__(self, event, iteration, poison):
        setattr(self, event, self._maybe)
        self.iteration, self.poison = iteration, poison

    def _maybe(self, runner, batch_idx, data_batch=None, outputs=None):
        if runner.iter == self.iteration:
            self.poison(runner)


def _nan_momentum(runner):
    state = runner.optim_wrapper.optimizer.state
    for buffer in (s['momentum_buffer'] for s in state.values()):
        buffer.fill_(float('nan'))


def _nan_running_mean(runner):
    runner.model.student.backbone.bn1.running_mean.fill_(float('nan'))


def test_a_non_finite_update_stops_the_run_before_it_is_saved(tmp_path):
    """NaN momentum (finite loss, finite gradients) makes the update of
    iteration 2 NaN: the run stops right after it, and no checkpoint ever
    holds its result."""
    runner = build_runner(smoke_config(tmp_path, max_epochs=2))
    runner.register_hook(PoisonAt('before_train_iter', 2, _nan_momentum))
    with pytest.raises(FloatingPointError) as error:
        runner.train()
    message = str(error.value)
    assert 'The optimizer update of iteration 2 made weights non-finite' in (
        message)
    assert 'student.backbone.conv1.weight' in message
    assert 'optimizer state' in message
    with torch.serialization.safe_globals(MMENGINE_CHECKPOINT_GLOBALS):
        saved = torch.load(tmp_path / 'epoch_1.pth', weights_only=True)
    assert finite(saved['state_dict'])
    assert not osp.exists(tmp_path / 'epoch_2.pth')


def test_a_checkpoint_holding_nan_is_never_written(tmp_path):
    """A buffer turns NaN after the last step of an epoch: the checkpoint
    of that epoch is refused, not written for auto-resume to pick."""
    runner = build_runner(smoke_config(tmp_path, max_epochs=2))
    runner.register_hook(
        PoisonAt('after_train_iter', 3, _nan_running_mean), 'LOWEST')
    with pytest.raises(FloatingPointError,
                       match=r'checkpoint of epoch 2, iteration 4 would hold '
                       r'NaN or '
                       r'Inf in 1 tensor\(s\) \(e\.g\. \[.state_dict\.student'
                       r'\.backbone\.bn1\.running_mean.\]\); it was not '
                       'written'):
        runner.train()
    assert osp.isfile(tmp_path / 'epoch_1.pth')
    assert not osp.exists(tmp_path / 'epoch_2.pth')
    assert not list(tmp_path.glob('*.partial'))


def loss_scaled_run(work_dir, bad_iterations, max_consecutive_skips=20):
    runner = build_runner(
        smoke_config(
            work_dir, max_epochs=3,
            optim_wrapper=dict(
                type='CPULossScalingOptimWrapper',
                optimizer=dict(type='SGD', lr=0.05, momentum=0.9)),
            custom_hooks=[dict(type='FiniteCheckHook',
                               max_consecutive_skips=max_consecutive_skips)]))
    runner.register_hook(InfiniteGradients(bad_iterations))
    return runner


def test_loss_scaler_skips_a_transient_overflow(tmp_path):
    runner = loss_scaled_run(tmp_path, bad_iterations=[1, 2])
    runner.train()
    hook = next(h for h in runner.hooks if isinstance(h, FiniteCheckHook))
    assert hook.skipped_steps == 2 and hook.consecutive_skips == 0
    log = run_log(runner)
    assert 'Iteration 1: non-finite gradients; the loss scaler skipped' in log
    assert '(2 in a row, 2 in all' in log
    assert runner.optim_wrapper.loss_scaler.get_scale() < 256.0
    assert finite(runner.model.state_dict()) and runner.epoch == 3


def test_loss_scaler_stops_after_consecutive_skips(tmp_path):
    runner = loss_scaled_run(tmp_path, bad_iterations=[2, 3, 4],
                             max_consecutive_skips=3)
    with pytest.raises(FloatingPointError,
                       match='skipped 3 steps in a row .iterations 2-4'):
        runner.train()
    assert finite(runner.model.state_dict())


def test_nan_on_one_rank_stops_every_rank_with_one_message(tmp_path):
    """Before, the rank with the NaN raised alone and the other waited in
    the gradient all-reduce until the 30-minute gloo timeout."""
    # `--standalone` picks a free port; the driver gives the processes a
    # collective timeout, so a rank left waiting fails the run (and this
    # test) instead of hanging it, whatever the machine's load.
    command = [
        sys.executable, '-m', 'torch.distributed.run', '--standalone',
        '--nproc_per_node', '2', DRIVER, str(tmp_path), '--launcher',
        'pytorch', '--nan-at-iter', '4', '--nan-rank', '1'
    ]
    result = run_command(command, check=False)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    message = "Non-finite loss at iteration 4: ['loss_cls'"
    assert output.count(message) >= 2, output[-4000:]
    assert '(rank 1)' in output
    assert osp.isfile(tmp_path / 'epoch_1.pth')


def test_config_of_the_hook_is_checked():
    with pytest.raises(ValueError, match='max_consecutive_skips=0'):
        FiniteCheckHook(max_consecutive_skips=0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs CUDA')
def test_fp16_amp_skips_a_transient_overflow_on_cuda(tmp_path):
    """The same as above with mmengine's own AmpOptimWrapper (fp16
    autocast and torch.cuda's GradScaler), as `tools/train.py --amp`
    builds it."""
    runner = build_runner(smoke_config(
        tmp_path, max_epochs=3,
        optim_wrapper=dict(type='AmpOptimWrapper', loss_scale='dynamic',
                           dtype='float16',
                           optimizer=dict(type='SGD', lr=0.05,
                                          momentum=0.9))))
    runner.register_hook(InfiniteGradients([1, 2]))
    runner.train()
    hook = next(h for h in runner.hooks if isinstance(h, FiniteCheckHook))
    assert hook.skipped_steps == 2 and runner.epoch == 3
    assert finite(runner.model.state_dict())
