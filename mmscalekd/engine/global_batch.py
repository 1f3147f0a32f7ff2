"""The global batch of a run: processes x batch per process x accumulation.

mmengine's ``OptimWrapper`` accumulates gradients over
``optim_wrapper.accumulative_counts`` batches before each optimizer step,
but its ``Runner.scale_lr`` (``auto_scale_lr.enable``) scales the learning
rate by world size x batch per process only.
:func:`scale_lr_with_accumulation` hands it a base batch divided by the
accumulation, so that the ratio it computes is the effective global batch
over the recipe's base batch.
"""
from mmengine.optim import OptimWrapper

from mmpretrain.registry import OPTIM_WRAPPERS

__all__ = [
    'accumulative_counts', 'recipe_base_batch', 'scale_lr_with_accumulation'
]


def accumulative_counts(cfg) -> int:
    """``optim_wrapper.accumulative_counts`` (1 where the config sets
    none), checked to be a count the optimizer wrapper can accumulate."""
    wrapper = cfg.get('optim_wrapper') or {}
    counts = wrapper.get('accumulative_counts', 1)
    if isinstance(counts, bool) or not isinstance(counts, int) or counts < 1:
        raise ValueError(
            f'`optim_wrapper.accumulative_counts={counts!r}` (set by '
            '`--accumulate` or the config) must be an integer >= 1: the '
            'number of batches whose gradients make one optimizer step '
            '(1: no accumulation).')
    wrapper_type = wrapper.get('type', 'OptimWrapper')
    wrapper_cls = OPTIM_WRAPPERS.get(wrapper_type) if isinstance(
        wrapper_type, str) else wrapper_type
    if counts > 1 and isinstance(wrapper_cls, type) and not issubclass(
            wrapper_cls, OptimWrapper):
        raise ValueError(
            f'`optim_wrapper.accumulative_counts={counts}` (set by '
            f'`--accumulate` or the config), but `optim_wrapper.type='
            f'{wrapper_type!r}` cannot accumulate gradients: only '
            "mmengine's OptimWrapper and its subclasses (AmpOptimWrapper, "
            'ApexOptimWrapper) take it. Drop the accumulation, or set it '
            'the way that wrapper does.')
    return counts


def recipe_base_batch(auto_scale_lr):
    """The global batch the config's learning rate is meant for, or None."""
    auto_scale_lr = auto_scale_lr or {}
    return auto_scale_lr.get('recipe_base_batch_size',
                             auto_scale_lr.get('base_batch_size'))


def scale_lr_with_accumulation(cfg) -> None:
    """With ``auto_scale_lr.enable``, make mmengine's learning-rate scaling
    count the accumulated batches too (see the module docstring)."""
    counts = accumulative_counts(cfg)
    auto_scale_lr = cfg.get('auto_scale_lr')
    if not auto_scale_lr or not auto_scale_lr.get('enable', False):
        return
    base = recipe_base_batch(auto_scale_lr)
    if isinstance(base, bool) or not isinstance(base, (int, float)) \
            or not base > 0:
        raise ValueError(
            f'`auto_scale_lr.base_batch_size={base!r}`: `--auto-scale-lr` '
            '(`auto_scale_lr.enable=True`) scales the learning rate by the '
            'global batch over this base, the global batch the config\'s '
            'lr is meant for; set it to that number (e.g. 256 for '
            '8 GPUs x 32 images).')
    if counts == 1 and 'recipe_base_batch_size' not in auto_scale_lr:
        return
    # Kept, so that a run of the dumped config divides the recipe's base
    # again, not an already divided one.
    auto_scale_lr.recipe_base_batch_size = base
    auto_scale_lr.base_batch_size = base / counts
