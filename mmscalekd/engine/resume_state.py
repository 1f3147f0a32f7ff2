"""What ``--resume`` takes from a checkpoint, checked before anything acts on
it.

mmengine's resume copies the checkpoint's counters into the train loop, its
optimizer state into the optimizer and its scheduler states into the
schedulers, and trusts all three:

- counters: ``epoch_2.pth`` whose ``meta`` says epoch 0 is silently trained
  over; a checkpoint past ``max_epochs`` exits at once, having trained
  nothing; a counter of 10**12 makes the schedule replay of
  :mod:`mmscalekd.engine.schedule` step the schedulers for hours;
- optimizer state: a NaN momentum buffer or learning rate makes the first
  update NaN although every gradient is finite, and a buffer of another
  shape fails only inside the first step;
- scheduler states: a ``last_step`` far past the schedule puts the learning
  rate at the end of a schedule that has not run.

Each is refused here with the field and the file named. The bounds are what
the config's schedule can reach: an epoch-based run takes at most
``ceil(len(dataset) / batch_size)`` iterations an epoch (one process; more
processes take fewer), an iteration-based one ``max_iters``.
"""
import math
from dataclasses import dataclass
from typing import Dict, Optional

import torch

from mmscalekd.utils.checkpoint import CheckpointError, non_finite_entries
from .training_checkpoint import checkpoint_number

__all__ = [
    'ScheduleBounds', 'check_counters', 'check_optimizer_state',
    'check_scheduler_states', 'check_training_state'
]

_USE_LOAD_FROM = (' To start a new run from its weights, give it as '
                  '`load_from` (or `tools/train.py --cfg-options '
                  'load_from=...`) without --resume.')


@dataclass(frozen=True)
class ScheduleBounds:
    """How far the config's schedule can go.

    Attributes:
        max_epochs (int, optional): ``train_cfg.max_epochs`` of an
            epoch-based run; None for an iteration-based one.
        max_iters (int): the most iterations the schedule can reach.
        iters_key (str): how ``max_iters`` comes from the config, for
            messages.
    """
    max_epochs: Optional[int]
    max_iters: int
    iters_key: str


def check_training_state(checkpoint: dict, source: str) -> None:
    """Refuse a file that holds no training state to resume (a bare state
    dict, or a checkpoint without counters or message hub)."""
    meta = checkpoint.get('meta') or {}
    missing = [f'meta.{k}' for k in ('epoch', 'iter') if k not in meta]
    if 'message_hub' not in checkpoint:
        missing.append('message_hub')
    if missing:
        raise CheckpointError(
            f'{source} cannot be resumed: it has no {", ".join(missing)}, so '
            'it holds weights, not an mmengine training checkpoint (a bare '
            'state dict, the student.pth of extract_student.py, a converted '
            'release).' + _USE_LOAD_FROM)


def check_counters(meta: dict, path: str, source: str,
                   bounds: ScheduleBounds) -> None:
    """Refuse counters that disagree with the file's name or lie beyond
    what the config's schedule can reach."""
    kind, number = checkpoint_number(path) or (None, None)
    if kind is not None and meta[kind] != number:
        raise CheckpointError(
            f'{source}: its name says {kind} {number} but its meta.{kind} is '
            f'{meta[kind]}: the file was renamed, copied over or written by '
            'another run. Resuming would silently train over that. Move it '
            'out of the work dir (auto-resume then takes the checkpoint '
            'before it), or resume a file whose name and content agree.')
    if bounds.max_epochs is not None and meta['epoch'] > bounds.max_epochs:
        raise CheckpointError(
            f'{source} is at epoch {meta["epoch"]}, past the end of this '
            f'schedule (`train_cfg.max_epochs={bounds.max_epochs}`): '
            'nothing would be trained. Raise `train_cfg.max_epochs` to '
            'train on, or resume from an earlier checkpoint.')
    if bounds.max_epochs is None and meta['iter'] > bounds.max_iters:
        raise CheckpointError(
            f'{source} is at iteration {meta["iter"]}, past the end of this '
            f'schedule (`{bounds.iters_key}={bounds.max_iters}`): nothing '
            'would be trained. Raise it to train on, or resume from an '
            'earlier checkpoint.')
    if meta['iter'] > bounds.max_iters:
        raise CheckpointError(
            f'{source}: meta.iter={meta["iter"]} is more iterations than '
            f'this schedule can reach ({bounds.max_iters}: '
            f'{bounds.iters_key}). The checkpoint was not written by this '
            'training (another dataset or batch size), or the file was '
            'edited; resume with the config it was trained with.')


def _optimizers(optim_wrapper) -> Dict[str, torch.optim.Optimizer]:
    """Optimizers by the key of their state in a checkpoint ('' for one)."""
    wrappers = getattr(optim_wrapper, 'optim_wrappers', None)
    if wrappers is not None:
        return {name: w.optimizer for name, w in wrappers.items()}
    return {'': optim_wrapper.optimizer}


def _finite(value) -> bool:
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return True
    if isinstance(value, (int, float)):
        return math.isfinite(value)
    if isinstance(value, torch.Tensor):
        return not non_finite_entries({'': value})
    if isinstance(value, (list, tuple)):
        return all(_finite(v) for v in value)
    return True


def check_optimizer_state(checkpoint: dict, optim_wrapper,
                          source: str) -> None:
    """Refuse non-finite or mis-shaped optimizer state and hyper-parameters.

    Runs after the parameter groups were matched (same sizes): the saved
    state of the i-th parameter of a group belongs to the i-th parameter of
    the built group, as torch pairs them.
    """
    state = checkpoint.get('optimizer')
    if not isinstance(state, dict):
        return
    scaler = state.get('loss_scaler')
    if isinstance(scaler, dict) and not (
            _finite(scaler.get('scale')) and
            (scaler.get('scale') is None or scaler['scale'] > 0)):
        raise CheckpointError(
            f'{source}: its loss scaler state has scale='
            f'{scaler.get("scale")!r}; a loss scale must be a finite number '
            '> 0. The file is damaged or edited.' + _USE_LOAD_FROM)
    for name, optimizer in _optimizers(optim_wrapper).items():
        saved = state.get(name) if name else state
        if not isinstance(saved, dict):
            continue
        where = f'optimizer.{name}' if name else 'optimizer'
        groups = saved.get('param_groups') or []
        for index, group in enumerate(groups):
            bad = {k: v for k, v in group.items()
                   if k != 'params' and not _finite(v)}
            if isinstance(group.get('lr'), (int, float)) and group['lr'] < 0:
                bad['lr'] = group['lr']
            if bad:
                raise CheckpointError(
                    f'{source}: {where}.param_groups[{index}] holds {bad}: '
                    'a non-finite (or negative) learning rate or '
                    'hyper-parameter makes every update non-finite although '
                    'the gradients are finite. The file comes from a '
                    'diverged or edited run; resume an earlier checkpoint.' +
                    _USE_LOAD_FROM)
        saved_states = saved.get('state') or {}
        for group, built in zip(groups, optimizer.param_groups):
            for saved_id, param in zip(group.get('params', []),
                                       built['params']):
                _check_parameter_state(saved_states.get(saved_id), param,
                                       f'{where}.state[{saved_id}]', source)


def _check_parameter_state(entry, param: torch.Tensor, where: str,
                           source: str) -> None:
    if not isinstance(entry, dict):
        return
    for key, value in entry.items():
        if not isinstance(value, torch.Tensor):
            continue
        if value.dim() > param.dim() or (
                value.dim() == param.dim() and value.dim() > 0
                and value.shape != param.shape):
            raise CheckpointError(
                f'{source}: {where}.{key} has shape {tuple(value.shape)} but '
                f'its parameter has {tuple(param.shape)}: the optimizer '
                'state was saved for another model. Resume with the config '
                'it was trained with.' + _USE_LOAD_FROM)
        if not _finite(value):
            raise CheckpointError(
                f'{source}: {where}.{key} holds NaN or Inf: the optimizer '
                'state comes from a diverged run, and the first update '
                'would make the weights non-finite. Resume an earlier '
                'checkpoint.' + _USE_LOAD_FROM)


def check_scheduler_states(states: Dict[str, dict],
                           schedulers: Dict[str, object],
                           bounds: ScheduleBounds, source: str) -> None:
    """Refuse scheduler states with non-finite values or a position beyond
    the schedule (``last_step`` / ``_global_step``).

    Args:
        states (dict): the saved states by scheduler name
            (:func:`mmscalekd.engine.schedule.named_states`).
        schedulers (dict): the built schedulers they are loaded into, by
            the same names (:func:`~mmscalekd.engine.schedule.named_schedulers`).
    """
    for name, scheduler in schedulers.items():
        state = states.get(name)
        if not isinstance(state, dict):
            continue
        bound = (bounds.max_epochs if scheduler.by_epoch and
                 bounds.max_epochs is not None else bounds.max_iters)
        for key in ('last_step', '_global_step'):
            value = state.get(key)
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, int) or \
                    not -1 <= value <= bound + 1:
                raise CheckpointError(
                    f'{source}: {name}.{key}={value!r} is not a position of '
                    f'this schedule (at most {bound} '
                    f'{"epochs" if scheduler.by_epoch else "iterations"}). '
                    'The file is damaged or edited; resume with the config '
                    'it was trained with.' + _USE_LOAD_FROM)
        bad = [k for k in ('_last_value', 'base_values')
               if not _finite(state.get(k))]
        if bad:
            raise CheckpointError(
                f'{source}: {name} holds non-finite {bad} '
                f'({[state[k] for k in bad]}): the learning rate of the '
                'resumed run would be NaN. Resume an earlier checkpoint.' +
                _USE_LOAD_FROM)
