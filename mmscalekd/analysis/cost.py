"""Multiply-adds of what a function runs, forward and backward."""
from typing import Callable, Dict

from torch.utils.flop_counter import (FlopCounterMode,
                                      sdpa_backward_flop_count,
                                      sdpa_flop_count)

from mmscalekd.compat import cpu_attention_ops

__all__ = ['count_macs', 'split_convolution']


def _cpu_sdpa_flop(query, key, value, *args, out_val=None, **kwargs) -> int:
    return sdpa_flop_count(query, key, value)


def _cpu_sdpa_backward_flop(grad_out, query, key, value, *args,
                            out_val=None, **kwargs) -> int:
    return sdpa_backward_flop_count(grad_out, query, key, value)


# torch's registry knows the CUDA attention kernels only; without these the
# CPU fused attention (what F.scaled_dot_product_attention runs on CPU)
# would count as free.
_EXTRA_FORMULAS = dict(
    zip(cpu_attention_ops(), (_cpu_sdpa_flop, _cpu_sdpa_backward_flop)))


def count_macs(fn: Callable[[], object],
               by_module: bool = False) -> Dict[str, int]:
    """Multiply-adds of the aten ops ``fn`` runs, forward and backward.

    FlopCounterMode counts a multiply-add as 2 FLOPs (``2*m*n*k`` for a
    matmul); this halves its counts. Element-wise ops, normalisation and
    softmax are not counted (they are memory-bound and small in MACs).

    Args:
        fn (Callable): called once, with no arguments, under the counter.
        by_module (bool): count per module instead of per op.

    Returns:
        dict: aten op name -> multiply-adds, or with ``by_module`` the
        module path (``'Global'`` for everything) -> multiply-adds.
    """
    with FlopCounterMode(display=False,
                         custom_mapping=_EXTRA_FORMULAS) as counter:
        fn()
    flops = counter.get_flop_counts()
    if by_module:
        return {name: sum(ops.values()) // 2 for name, ops in flops.items()}
    return {str(op): count // 2
            for op, count in flops.get('Global', {}).items()}


def split_convolution(macs_by_module: Dict[str, int]) -> Dict[str, int]:
    """A projector's MACs: its 3x3 convolution vs. everything else.

    Split by module, not by op: the convolution may run as a matrix product
    (:class:`~mmscalekd.models.necks.Conv3x3` on CPU).

    Args:
        macs_by_module (dict): from ``count_macs(..., by_module=True)``.

    Returns:
        dict: ``convolution`` and ``other`` multiply-adds; they sum to
        ``macs_by_module['Global']``.
    """
    conv = sum(v for k, v in macs_by_module.items()
               if k.endswith('.student_conv'))
    return dict(convolution=conv, other=macs_by_module['Global'] - conv)
