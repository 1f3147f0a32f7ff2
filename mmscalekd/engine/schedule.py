"""What ``--resume`` does with the learning-rate schedule.

mmengine's resume restores the optimizer's hyper-parameters and every
scheduler from the checkpoint, so the config's values are silently ignored:
a lowered learning rate (what a non-finite loss asks for) keeps the old one,
and a raised ``max_epochs`` keeps the old end of a schedule that ends with
training. Here the config always wins:

- nothing changed: the checkpoint's schedule state is used as mmengine does
  (bit-exact continuation);
- something changed (a hyper-parameter, a scheduler, the number of epochs a
  scheduler spans): the schedule is rebuilt from the config and stepped
  forward to the resumed epoch and iteration, exactly as a run started with
  the new config would have stepped it; the optimizer's moments still come
  from the checkpoint. Each change is logged. A schedule driven by
  validation metrics (``ReduceOnPlateau``) cannot be stepped forward without
  them and is refused.
"""
import copy
from typing import Dict, List, Optional

from mmengine.logging import print_log

from mmscalekd.utils.checkpoint import CheckpointError

__all__ = ['ScheduleSnapshot', 'named_schedulers', 'named_states']

# Scheduler fields that say where a schedule is, not what it is.
_POSITION = {
    'last_step', '_global_step', '_last_value', 'base_values', 'verbose',
    '_get_lr_called_within_step'
}


def _optimizers(optim_wrapper) -> Dict[str, object]:
    wrappers = getattr(optim_wrapper, 'optim_wrappers', None)
    if wrappers is not None:
        return {f'{name}.': w.optimizer for name, w in wrappers.items()}
    return {'': optim_wrapper.optimizer}


def named_schedulers(param_schedulers) -> Dict[str, object]:
    """Built schedulers by their config key, e.g. ``param_scheduler[0]``."""
    if param_schedulers is None:
        return {}
    if isinstance(param_schedulers, dict):
        return {
            f'param_scheduler.{name}[{i}]': s
            for name, group in param_schedulers.items()
            for i, s in enumerate(group)
        }
    return {f'param_scheduler[{i}]': s
            for i, s in enumerate(param_schedulers)}


def _hyper(group: dict) -> dict:
    """A parameter group's hyper-parameters that the config sets.

    A scheduled value (``lr`` with ``initial_lr`` beside it) is a position
    in the schedule; its ``initial_*`` value is the config's.
    """
    return {
        key: value
        for key, value in group.items()
        if key != 'params' and f'initial_{key}' not in group
    }


def _scheduler_states(param_schedulers) -> Dict[str, dict]:
    return {
        name: copy.deepcopy(scheduler.state_dict())
        for name, scheduler in named_schedulers(param_schedulers).items()
    }


def named_states(states) -> Dict[str, object]:
    """Saved scheduler states under the names :func:`named_schedulers`
    gives."""
    if isinstance(states, dict):
        return {
            f'param_scheduler.{name}[{i}]': s
            for name, group in states.items()
            for i, s in enumerate(group if isinstance(group, list) else [])
        }
    return {f'param_scheduler[{i}]': s for i, s in enumerate(states)}


class ScheduleSnapshot:
    """The schedule as the config builds it, taken before a resume.

    Args:
        optim_wrapper: the runner's built optim wrapper.
        param_schedulers: the runner's built schedulers (list or dict).
    """

    def __init__(self, optim_wrapper, param_schedulers) -> None:
        self.groups = {
            prefix: [{k: copy.deepcopy(v) for k, v in g.items()
                      if k != 'params'} for g in optimizer.param_groups]
            for prefix, optimizer in _optimizers(optim_wrapper).items()
        }
        self.group_sizes = {
            prefix: [len(g['params']) for g in optimizer.param_groups]
            for prefix, optimizer in _optimizers(optim_wrapper).items()
        }
        self.schedulers = _scheduler_states(param_schedulers)
        self.scheduler_types = {
            name: type(s).__name__
            for name, s in named_schedulers(param_schedulers).items()
        }

    # ------------------------------------------------- checkpoint's states
    def check_optimizer_state(self, checkpoint: dict, source: str) -> None:
        """Refuse optimizer state saved for other parameter groups.

        Its moments belong to the parameters of the groups it was saved
        with; torch would refuse it only with a bare ``ValueError``.
        """
        state = checkpoint.get('optimizer')
        if not isinstance(state, dict):
            return
        for prefix, sizes in self.group_sizes.items():
            saved = state.get(prefix[:-1], {}) if prefix else state
            saved = [len(g.get('params', [])) for g in saved.get(
                'param_groups', [])] if isinstance(saved, dict) else []
            if saved != sizes:
                raise CheckpointError(
                    f'{source}: its optimizer has parameter groups of '
                    f'{saved} parameters, the config builds {sizes} (a '
                    'changed `optim_wrapper.paramwise_cfg` or model). '
                    'Resume with the config it was trained with.')

    def usable_states(self, checkpoint: dict, source: str) -> Optional[str]:
        """Why the checkpoint's scheduler states cannot be loaded as they
        are (then they are removed from ``checkpoint``), or None.

        mmengine copies every field of a saved state into the scheduler
        object and pairs saved and built schedulers by position, so states
        are loaded only when each has exactly the fields of the scheduler it
        is paired with.
        """
        if not self.schedulers:
            checkpoint.pop('param_schedulers', None)
            return None
        states = checkpoint.get('param_schedulers')
        reason = None
        if states is None:
            reason = 'the checkpoint has no scheduler states'
        elif not isinstance(states, (list, dict)):
            reason = 'its scheduler states are not a list'
        elif set(named_states(states)) != set(self.schedulers):
            reason = (f'it has the schedulers {sorted(named_states(states))}'
                      f', the config {sorted(self.schedulers)}')
        else:
            saved_states = named_states(states)
            for name, fresh in self.schedulers.items():
                saved = saved_states[name]
                if not isinstance(saved, dict) or set(saved) != set(fresh):
                    extra = sorted(set(saved) - set(fresh)) if isinstance(
                        saved, dict) else saved
                    reason = (f'{name} is a {self.scheduler_types[name]} in '
                              'the config but its saved state has other '
                              f'fields (extra: {extra})')
                    break
        if reason is not None:
            checkpoint.pop('param_schedulers', None)
            print_log(f'{source}: {reason}; the schedule is rebuilt from the '
                      'config.', logger='current', level=30)
        return reason

    # ------------------------------------------------------------ changes
    def changes(self, optim_wrapper, param_schedulers) -> List[str]:
        """How the resumed schedule differs from the config's."""
        changes = []
        for prefix, optimizer in _optimizers(optim_wrapper).items():
            for index, (fresh, group) in enumerate(
                    zip(self.groups[prefix], optimizer.param_groups)):
                config, saved = _hyper(fresh), _hyper(group)
                for key in sorted(set(config) | set(saved)):
                    if config.get(key) != saved.get(key):
                        where = 'optim_wrapper.optimizer' if index == 0 \
                            else f'parameter group {index}'
                        changes.append(
                            f'{prefix}{where}.{key.replace("initial_", "")}'
                            f': {saved.get(key)} -> {config.get(key)}')
        current = _scheduler_states(param_schedulers)
        for name, fresh in self.schedulers.items():
            for key in sorted(set(fresh) - _POSITION):
                if fresh[key] != current[name].get(key):
                    changes.append(f'{name}.{key}: {current[name].get(key)} '
                                   f'-> {fresh[key]}')
        return changes

    # ------------------------------------------------------------- replay
    def replay(self, optim_wrapper, param_schedulers, epochs: int,
               iters: int, iters_per_epoch: Optional[int]) -> None:
        """Put the config's schedule where a straight run would have it.

        Restores the config's hyper-parameters and fresh schedulers, then
        steps the schedulers as mmengine's ``ParamSchedulerHook`` does:
        iteration-based ones after every iteration, epoch-based ones after
        every epoch.
        """
        schedulers = named_schedulers(param_schedulers)
        driven = [n for n, s in schedulers.items()
                  if getattr(s, 'need_val_args', False)]
        if driven:
            raise CheckpointError(
                f'{driven} follow validation metrics and cannot be rebuilt '
                'on resume. Resume with the schedule the checkpoint was '
                'trained with, or start a new run from its weights with '
                '`load_from`.')
        for prefix, optimizer in _optimizers(optim_wrapper).items():
            for fresh, group in zip(self.groups[prefix],
                                    optimizer.param_groups):
                for key in [k for k in group if k != 'params']:
                    if key not in fresh:
                        del group[key]
                group.update(copy.deepcopy(fresh))
        for name, scheduler in schedulers.items():
            scheduler.load_state_dict(copy.deepcopy(self.schedulers[name]))
        by_iter = [s for s in schedulers.values() if not s.by_epoch]
        by_epoch = [s for s in schedulers.values() if s.by_epoch]
        stepped_epochs = 0
        for it in range(1, iters + 1):
            for scheduler in by_iter:
                scheduler.step()
            if iters_per_epoch and it % iters_per_epoch == 0 and \
                    stepped_epochs < epochs:
                for scheduler in by_epoch:
                    scheduler.step()
                stepped_epochs += 1
        for _ in range(stepped_epochs, epochs):
            for scheduler in by_epoch:
                scheduler.step()
