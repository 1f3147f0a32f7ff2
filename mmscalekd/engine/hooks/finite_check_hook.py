"""Stop training before a non-finite step reaches the weights."""
from typing import Callable, List, Optional

import torch
from mmengine.dist import all_reduce, get_rank, get_world_size
from mmengine.hooks import Hook
from mmengine.logging import MessageHub, print_log
from mmengine.model import is_model_wrapper

from mmpretrain.registry import HOOKS

from mmscalekd.utils.checkpoint import non_finite_entries

__all__ = ['FiniteCheckHook']

_ADVICE = (
    'Training stopped before the optimizer step, so the weights and every '
    'checkpoint written so far are finite. Lower the learning rate '
    '(`optim_wrapper.optimizer.lr`) or clip gradients '
    '(`optim_wrapper.clip_grad=dict(max_norm=...)`) and resume from the last '
    'checkpoint (--resume): the changed schedule takes effect on resume.')


def _optimizers(optim_wrapper) -> list:
    wrappers = getattr(optim_wrapper, 'optim_wrappers', None)
    if wrappers is not None:
        return [w.optimizer for w in wrappers.values()]
    return [optim_wrapper.optimizer]


def _tensors(value, prefix: str = ''):
    """(name, tensor) pairs of a nested state (dicts, lists)."""
    if isinstance(value, torch.Tensor):
        yield prefix, value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _tensors(item, f'{prefix}.{key}' if prefix else
                                str(key))
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            yield from _tensors(item, f'{prefix}[{index}]')


@HOOKS.register_module()
class FiniteCheckHook(Hook):
    """Check each optimizer step for non-finite losses and gradients.

    In ``configs/_base_/scalekd_runtime.py``, so in every shipped config
    (its options are this hook's arguments in ``custom_hooks``). Right before
    the optimizer updates the weights it checks the gradient norm and, for a
    :class:`ScaleKDDistiller`, every loss term of the iteration:

    - without loss scaling, a non-finite value stops the run at once, before
      the update, so no checkpoint can hold the result;
    - with a loss scaler (``AmpOptimWrapper``, ``--amp``), non-finite
      gradients are the scaler's business: it skips the update and lowers
      its scale. Each skipped step is logged and counted, and the run stops
      after ``max_consecutive_skips`` skipped steps in a row.

    What the step produces is checked too: right after each update, the
    updated parameters (a finite gradient still gives non-finite weights
    when the optimizer state or the learning rate is non-finite, e.g. from
    an edited file), and before each checkpoint is written, every tensor it
    holds (weights, buffers, EMA weights, optimizer state). A non-finite
    one stops the run before that checkpoint exists, so auto-resume can
    never pick a checkpoint with NaN weights.

    In a distributed run every process learns what every other process saw
    (one all-reduce of a few numbers per step), so a non-finite loss on one
    rank stops all ranks in the same iteration with the same message,
    instead of leaving the others waiting in the gradient all-reduce.

    Args:
        max_consecutive_skips (int): consecutive steps the loss scaler may
            skip before the run stops. Defaults to 20 (the dynamic scale has
            then fallen by 2**20).
        check_updates (bool): check the weights after each update (one norm
            per parameter tensor a step, docs/benchmarks.md). Defaults to
            True; without it a non-finite update is caught by the next
            step's loss check, and the checkpoint check still never writes
            it.
    """

    priority = 'VERY_HIGH'

    def __init__(self, max_consecutive_skips: int = 20,
                 check_updates: bool = True) -> None:
        if not isinstance(max_consecutive_skips, int) or isinstance(
                max_consecutive_skips, bool) or max_consecutive_skips < 1:
            raise ValueError(
                'FiniteCheckHook: `max_consecutive_skips='
                f'{max_consecutive_skips!r}` must be an integer >= 1.')
        if not isinstance(check_updates, bool):
            raise ValueError(
                f'FiniteCheckHook: `check_updates={check_updates!r}` must be '
                'True or False.')
        self.max_consecutive_skips = max_consecutive_skips
        self.check_updates = check_updates
        self.consecutive_skips = 0
        self.skipped_steps = 0
        self._handles: List = []
        self._stepped = False
        self._updated = []

    def attach(self, model, optim_wrapper,
               iteration: Optional[Callable[[], int]] = None) -> None:
        """Check every step of ``optim_wrapper`` for ``model``.

        What :meth:`before_train` does for a runner; tools that step a model
        themselves (the benchmark) call it to time the same check.
        """
        self._model = model
        self._iteration = iteration or (
            lambda: MessageHub.get_current_instance().get_info('iter'))
        self._names = {id(p): n for n, p in model.named_parameters()}
        self._scaler = getattr(optim_wrapper, 'loss_scaler', None)
        for optimizer in _optimizers(optim_wrapper):
            self._handles.append(
                optimizer.register_step_pre_hook(self._check_step))
            if self.check_updates:
                self._handles.append(
                    optimizer.register_step_post_hook(self._record_update))

    def before_train(self, runner) -> None:
        model = runner.model.module if is_model_wrapper(
            runner.model) else runner.model
        self.attach(model, runner.optim_wrapper, lambda: runner.iter)

    def after_train(self, runner) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []

    def before_train_iter(self, runner, batch_idx: int,
                          data_batch=None) -> None:
        self._stepped = False

    # ------------------------------------------------------------- checks
    def _loss_terms(self):
        """(names, non-finite flags, values) recorded by the model."""
        record = getattr(self._model, 'loss_terms', None)
        self._model.loss_terms = None
        return record if record is not None else ([], None, None)

    def _check_step(self, optimizer, args, kwargs) -> None:
        self._stepped = True
        grads = [p.grad for group in optimizer.param_groups
                 for p in group['params']
                 if p.grad is not None and not p.grad.is_sparse]
        names, loss_flags, loss_values = self._loss_terms()
        device = grads[0].device if grads else torch.device('cpu')
        flags = [torch.zeros(1, device=device)]
        if grads:
            # One norm of all gradients: NaN/Inf if any entry is.
            total = torch.nn.utils.get_total_norm(grads)
            flags = [(~torch.isfinite(total)).float().reshape(1)]
        if loss_flags is not None:
            flags.append(loss_flags.float().to(device))
        flags = torch.cat(flags)
        world_size = get_world_size()
        if world_size > 1:
            # One row per rank: everyone sees who saw what.
            table = torch.zeros(world_size, flags.numel(), device=device)
            table[get_rank()] = flags
            all_reduce(table, op='sum')
        else:
            table = flags.reshape(1, -1)
        table = table.cpu()
        if not bool(table.any()):
            return
        raise FloatingPointError(
            self._message(table, names, loss_values, grads, optimizer))

    def _message(self, table, names, loss_values, grads, optimizer) -> str:
        iteration = self._iteration()
        ranks = lambda column: [  # noqa: E731
            r for r in range(table.shape[0]) if table[r, column] > 0]
        bad_terms = [(n, ranks(i + 1)) for i, n in enumerate(names)
                     if ranks(i + 1)]
        where = (lambda r: f' (rank {", ".join(map(str, r))})'
                 if table.shape[0] > 1 else '')
        if bad_terms:
            mine = [n for i, n in enumerate(names) if table[get_rank(),
                                                             i + 1] > 0]
            values = ', '.join(
                f'{n}={loss_values[names.index(n)].item()}' for n in mine)
            return (f'Non-finite loss at iteration {iteration}: '
                    f'{[n for n, _ in bad_terms]}'
                    f'{where(sorted({r for _, rs in bad_terms for r in rs}))}'
                    f'{"; " + values + " here" if values else ""}. '
                    + _ADVICE)
        params = [p for group in optimizer.param_groups
                  for p in group['params'] if p.grad is not None]
        bad = [self._names.get(id(p), '?') for p in params
               if not bool(torch.isfinite(p.grad).all())]
        return (f'Non-finite gradients at iteration {iteration} although '
                f'every loss term was finite (an overflow in the backward '
                f'pass), e.g. in {bad[:5]}. ' + _ADVICE)

    # ---------------------------------------------------- what it made
    def _record_update(self, optimizer, args, kwargs) -> None:
        """After the update: whether it made any parameter non-finite, as a
        device flag (read with the iteration's other results, so it adds no
        synchronisation of its own)."""
        params = [p for group in optimizer.param_groups
                  for p in group['params'] if p.grad is not None]
        if params:
            # NaN or Inf when any weight is (or when the norm overflows:
            # then the weights are looked at one by one).
            norm = torch.nn.utils.get_total_norm(params)
            self._updated.append((optimizer, ~torch.isfinite(norm)))

    def check_update(self) -> None:
        """Raise if the last update made parameters non-finite (every rank
        learns whether any rank's did)."""
        if not self._updated:
            return
        updated, self._updated = self._updated, []
        bad = []
        if bool(torch.stack([flag for _, flag in updated]).any()):
            # A norm that is not finite: NaN / Inf weights, or an overflow.
            bad = [self._names.get(id(p), '?') for optimizer, _ in updated
                   for group in optimizer.param_groups
                   for p in group['params']
                   if not bool(torch.isfinite(p).all())]
        found = torch.tensor([float(bool(bad))])
        if get_world_size() > 1:
            all_reduce(found, op='sum')
        if not bool(found.item()):
            return
        lrs = sorted({group.get('lr') for optimizer, _ in updated
                      for group in optimizer.param_groups}, key=str)
        where = f'e.g. {bad[:5]}' if bad else 'on another rank'
        raise FloatingPointError(
            f'The optimizer update of iteration {self._iteration()} made '
            f'weights non-finite ({where}) although its loss and gradients '
            'were finite: the optimizer state (momentum, moments) or the '
            f'learning rate ({lrs[:4]}) is non-finite. Nothing of this '
            'update was saved. Resume an earlier checkpoint; if this run '
            'was resumed, its checkpoint carries that state (start from its '
            'weights with `load_from` instead).')

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        """Refuse to write a checkpoint holding NaN / Inf tensors."""
        bad = non_finite_entries({
            f'{field}.{name}': tensor
            for field in ('state_dict', 'ema_state_dict', 'optimizer')
            for name, tensor in _tensors(checkpoint.get(field))
        })
        if bad:
            meta = checkpoint.get('meta') or {}
            raise FloatingPointError(
                f'The checkpoint of epoch {meta.get("epoch")}, iteration '
                f'{meta.get("iter")} would hold NaN or Inf in {len(bad)} '
                f'tensor(s) (e.g. {bad[:5]}); it was not written, so the checkpoints on disk stay finite. Lower '
                'the learning rate or clip gradients and resume from the '
                'last checkpoint (--resume).')

    # ------------------------------------------------- loss-scaled steps
    def after_train_iter(self, runner, batch_idx: int, data_batch=None,
                         outputs: Optional[dict] = None) -> None:
        self.check_update()
        should_update = getattr(runner.optim_wrapper, 'should_update', None)
        if should_update is not None and not should_update():
            return  # accumulating gradients
        # The terms of a skipped step must not count against the next one.
        self._model.loss_terms = None
        if self._scaler is None:
            return
        if self._stepped:
            self.consecutive_skips = 0
            return
        self.consecutive_skips += 1
        self.skipped_steps += 1
        scale = self._scaler.get_scale()
        if self.consecutive_skips >= self.max_consecutive_skips:
            raise FloatingPointError(
                f'The loss scaler skipped {self.consecutive_skips} steps in '
                f'a row (iterations {runner.iter - self.consecutive_skips + 1}'
                f'-{runner.iter}, loss scale now {scale}): the gradients '
                'stay non-finite, which is divergence, not a transient fp16 '
                'overflow (`FiniteCheckHook.max_consecutive_skips='
                f'{self.max_consecutive_skips}`). ' + _ADVICE)
        print_log(
            f'Iteration {runner.iter}: non-finite gradients; the loss scaler '
            f'skipped this update and lowered its scale to {scale} '
            f'({self.consecutive_skips} in a row, {self.skipped_steps} in '
            f'all; the run stops at {self.max_consecutive_skips} in a row).',
            logger='current', level=30)
