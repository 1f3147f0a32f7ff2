"""Loaded checkpoints: exactly this model's weights, and a resumed state
that is safe to act on."""
import math
from typing import Optional

from mmengine.hooks import Hook
from mmengine.model import BaseTTAModel, is_model_wrapper
from mmengine.runner import EpochBasedTrainLoop
from mmengine.runner import find_latest_checkpoint as last_checkpoint_of

from mmpretrain.registry import HOOKS
from mmscalekd.utils.checkpoint import check_finite_weights
from ..checkpoint_loading import name_source
from ..resume_state import (ScheduleBounds, check_counters,
                            check_optimizer_state, check_scheduler_states,
                            check_training_state)
from ..schedule import ScheduleSnapshot, named_schedulers, named_states
from ..training_checkpoint import (check_model_weights, check_state_dict,
                                   check_training_checkpoint,
                                   sanitize_runtime_info)
from .work_dir_hook import WorkDirHook, checkpoint_dirs, is_training

__all__ = ['CheckpointCheckHook']


def _network(runner):
    """The network a checkpoint holds weights for: inside DDP and inside a
    test-time-augmentation wrapper (``tools/test.py --tta``), as mmengine's
    loader unwraps them."""
    model = runner.model
    while is_model_wrapper(model) or isinstance(model, BaseTTAModel):
        model = model.module
    return model


def _schedule_bounds(runner) -> ScheduleBounds:
    """How far this config's schedule can go (see
    :mod:`mmscalekd.engine.resume_state`)."""
    if isinstance(runner.train_loop, EpochBasedTrainLoop):
        loader = runner.train_dataloader
        per_epoch = math.ceil(len(loader.dataset) / (loader.batch_size or 1))
        return ScheduleBounds(
            runner.max_epochs, runner.max_epochs * per_epoch,
            f'train_cfg.max_epochs={runner.max_epochs} epochs of at most '
            f'{per_epoch} iterations, on one process')
    return ScheduleBounds(None, runner.max_iters, 'train_cfg.max_iters')


@HOOKS.register_module()
class CheckpointCheckHook(Hook):
    """Every checkpoint a run loads is checked before mmengine acts on it.

    - Files are read as data (the loader of
      :mod:`mmscalekd.engine.checkpoint_loading`), and no field becomes code
      or an action: ``meta.config`` is dropped, file paths in the message
      hub must lie in this run's checkpoint folders (mmengine deletes
      them), scheduler states must have their scheduler's fields.
    - ``load_from``, ``resume`` and ``tools/test.py`` take exactly this
      model's weights: a file that does not (or was trained with other
      projector heads, taps or split), or holds NaN/Inf, is an error naming
      the parts, never a partly random model.
    - ``resume``: counters the schedule cannot reach, and non-finite or
      mis-shaped optimizer and scheduler states, are refused; a changed
      learning rate, schedule or ``max_epochs`` follows the config (see
      :mod:`mmscalekd.engine.schedule`), and a finished run says so.
    """

    priority = 'VERY_HIGH'

    def __init__(self) -> None:
        self._schedule = None
        self._schedule_reason = None
        self._resumed_from = None

    # ------------------------------------------------- what will be loaded
    @staticmethod
    def _resume_source(runner) -> Optional[str]:
        """The checkpoint a training run resumes from, if it resumes."""
        if not (is_training(runner) and runner.cfg.get('resume')):
            return None
        if runner.cfg.get('load_from'):
            return runner.cfg.load_from
        finder = next((h for h in runner.hooks if isinstance(h, WorkDirHook)),
                      None)
        if finder is not None and finder.resume_from:
            return finder.resume_from
        # FlexibleRunner loads before any hook's before_run: what mmengine
        # itself resumed from.
        return last_checkpoint_of(runner.work_dir)

    def before_run(self, runner) -> None:
        resume_from = self._resume_source(runner)
        if resume_from:
            name_source(resume_from, 'resume')
        elif runner.cfg.get('load_from'):
            name_source(runner.cfg.load_from, 'load_from')

    # --------------------------------------------------------- the checks
    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        self._resumed_from = self._resume_source(runner)
        resuming = self._resumed_from is not None
        key = 'resume' if resuming else 'load_from'
        path = self._resumed_from or runner.cfg.get('load_from') or \
            'the loaded checkpoint'
        check_training_checkpoint(checkpoint, path, key)
        source = f'`{key}={path!r}`'
        model = _network(runner)
        weights = checkpoint['state_dict']
        check_model_weights(model, weights, source,
                            checkpoint['meta'].get('model_architecture'))
        check_finite_weights(weights, source)
        if 'ema_state_dict' in checkpoint:
            # mmengine's EMAHook loads it leniently: a mismatch would leave
            # the averaged model (the one evaluated) partly random.
            expected = {f'module.{k}': v
                        for k, v in model.state_dict().items()}
            ema = {k: v for k, v in checkpoint['ema_state_dict'].items()
                   if k != 'steps'}
            where = f'{source} (its ema_state_dict)'
            check_state_dict(expected, ema, where, 'the EMA model')
            check_finite_weights(ema, where)
        if resuming:
            self._check_resume(runner, checkpoint, path, source)

    def _check_resume(self, runner, checkpoint, path, source) -> None:
        check_training_state(checkpoint, source)
        bounds = _schedule_bounds(runner)
        check_counters(checkpoint['meta'], path, source, bounds)
        hub = checkpoint['message_hub']
        hub['runtime_info'] = sanitize_runtime_info(
            hub['runtime_info'], checkpoint_dirs(runner), source)
        # The config's schedule, before mmengine copies the file's into it.
        self._schedule = ScheduleSnapshot(runner.optim_wrapper,
                                          runner.param_schedulers)
        self._schedule.check_optimizer_state(checkpoint, source)
        check_optimizer_state(checkpoint, runner.optim_wrapper, source)
        self._schedule_reason = self._schedule.usable_states(
            checkpoint, source)
        check_scheduler_states(
            named_states(checkpoint.get('param_schedulers') or []),
            named_schedulers(runner.param_schedulers), bounds, source)
        if 'optimizer' not in checkpoint:
            runner.logger.warning(
                f'{source} has no optimizer state (saved with '
                'save_optimizer=False): the optimizer restarts, e.g. without '
                'momentum.')

    # ---------------------------------------------------- after resuming
    def before_train(self, runner) -> None:
        if self._schedule is None:
            return
        schedule, self._schedule = self._schedule, None
        by_epoch = isinstance(runner.train_loop, EpochBasedTrainLoop)
        if (runner.epoch >= runner.max_epochs) if by_epoch else (
                runner.iter >= runner.max_iters):
            end = (f'epoch {runner.epoch} of `train_cfg.max_epochs='
                   f'{runner.max_epochs}`' if by_epoch else
                   f'iteration {runner.iter} of `train_cfg.max_iters='
                   f'{runner.max_iters}`')
            runner.logger.warning(
                f'The run in {runner.work_dir} is finished: '
                f'{self._resumed_from} is at {end}, so there is nothing left '
                'to train. Raise that key to train longer.')
        changes = schedule.changes(runner.optim_wrapper,
                                   runner.param_schedulers)
        if self._schedule_reason is not None:
            changes.append(self._schedule_reason)
        if not changes:
            return
        iters_per_epoch = len(runner.train_dataloader) if by_epoch else None
        runner.logger.info(
            'Rebuilding the schedule of the config: stepping its schedulers '
            f'through {runner.iter} iterations and {runner.epoch} epochs.')
        schedule.replay(runner.optim_wrapper, runner.param_schedulers,
                        runner.epoch, runner.iter, iters_per_epoch)
        lrs = sorted({g['lr'] for g in runner.optim_wrapper.param_groups})
        runner.logger.warning(
            f'Resuming with a changed schedule: {"; ".join(changes)}. The '
            'config wins: its schedule was rebuilt and stepped to epoch '
            f'{runner.epoch}, iteration {runner.iter}, as a run started with '
            f'this config would have it (learning rate now {lrs[:4]}). The '
            'optimizer state (e.g. momentum) comes from the checkpoint.')
