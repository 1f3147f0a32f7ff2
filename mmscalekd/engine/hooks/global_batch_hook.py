"""One log line at the start of training: the global batch and the lr."""
import logging

from mmengine.dist import get_world_size
from mmengine.hooks import Hook
from mmengine.runner import IterBasedTrainLoop

from mmpretrain.registry import HOOKS

from ..global_batch import accumulative_counts, recipe_base_batch

__all__ = ['GlobalBatchHook']


def _number(value) -> str:
    return f'{value:g}' if isinstance(value, float) else str(value)


@HOOKS.register_module()
class GlobalBatchHook(Hook):
    """Logs, before the first training iteration, the effective global
    batch (processes x images per process x accumulated batches per
    optimizer step), the recipe's base batch (``auto_scale_lr``) and the
    learning rate(s) in use after any auto-scaling, so that a run on fewer
    GPUs can be checked against the recipe it reproduces.

    A global batch other than the recipe's, with the learning rate left
    unscaled, is logged as a warning; so is accumulation under an
    iteration-based loop, whose ``max_iters`` counts batches, not optimizer
    steps.
    """

    priority = 'LOWEST'

    def before_train(self, runner) -> None:
        processes = get_world_size()
        per_process = runner.train_dataloader.batch_size
        counts = accumulative_counts(runner.cfg)
        global_batch = processes * per_process * counts
        auto_scale_lr = runner.cfg.get('auto_scale_lr') or {}
        base = recipe_base_batch(auto_scale_lr)
        scaled = bool(auto_scale_lr.get('enable', False))

        # `initial_lr` is the lr a scheduler starts from (after
        # auto-scaling); `lr` may already be a warm-up's first value.
        groups = runner.optim_wrapper.param_groups
        peak = sorted({g.get('initial_lr', g['lr']) for g in groups})
        now = sorted({g['lr'] for g in groups})
        line = (f'Global batch {global_batch} = {processes} process(es) x '
                f'{per_process} images x {counts} accumulated batch(es) '
                f'per optimizer step; recipe base batch '
                f'(auto_scale_lr.base_batch_size): '
                f'{"not set" if base is None else _number(base)}; lr '
                f'{", ".join(map(_number, peak))}')
        if scaled and base:
            line += (f' (auto-scaled by {global_batch}/{_number(base)} = '
                     f'{global_batch / base:g})')
        else:
            line += ' (not auto-scaled)'
        if now != peak:
            line += f', now {", ".join(map(_number, now))}'
        level = logging.INFO
        if base and not scaled and global_batch != base:
            level = logging.WARNING
            line += ('. The lr is meant for the base batch: train with it '
                     '(`--accumulate`, see README) or pass --auto-scale-lr')
        if counts > 1 and isinstance(runner.train_loop, IterBasedTrainLoop):
            level = logging.WARNING
            line += (f'. `train_cfg.max_iters` counts batches: '
                     f'{runner.max_iters} iterations are '
                     f'{runner.max_iters // counts} optimizer steps')
        runner.logger.log(level, line + '.')
