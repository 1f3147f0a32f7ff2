"""Private APIs of the libraries mmscalekd builds on, in one place.

Each entry is the one use of something a library does not promise to keep:
its docstring names the versions it was tested on and what it relies on, so
that a new release is checked here and nowhere else. Everything else in the
package uses public APIs only.
"""
from typing import Callable, Dict, List

import numpy as np
import torch
from torch import nn

__all__ = [
    'apply_to_held_module', 'classification_losses', 'cpu_attention_ops',
    'history_buffer_fields',
    'has_classification_loss', 'numpy_pickle_globals', 'timm_vit_pos_embed',
    'torch_tensor_rebuild', 'vit_format_output'
]


def classification_losses(head: nn.Module, logits: torch.Tensor,
                          data_samples: List) -> Dict[str, torch.Tensor]:
    """The head's own classification loss (and accuracies) of ``logits``.

    mmpretrain 1.2.0: ``ClsHead._get_loss(cls_score, data_samples)``, the
    loss of logits already computed (the public ``ClsHead.loss`` runs the
    head again on features: a second run, with other dropout masks where
    the head has dropout). Relies on its returning a dict with ``loss``
    (and ``accuracy_top-k`` without batch augments).
    """
    return head._get_loss(logits, data_samples)


def has_classification_loss(head) -> bool:
    """Whether :func:`classification_losses` works on ``head``
    (mmpretrain 1.2.0: every ``ClsHead`` has ``_get_loss``)."""
    return hasattr(head, '_get_loss')


def vit_format_output(backbone: nn.Module, tokens: torch.Tensor,
                      grid) -> torch.Tensor:
    """What an mmpretrain ViT backbone outputs for its tokens (N, E + H*W,
    C) after a block of ``out_indices``, for its ``out_type``.

    mmpretrain 1.2.0: ``VisionTransformer._format_output(x, hw)`` (and the
    overrides of DeiT, DeiT III and BEiT), the formatting its ``forward``
    applies ('raw', 'cls_token', 'featmap', 'avg_featmap' with ``ln2``).
    """
    return backbone._format_output(tokens, grid)


def timm_vit_pos_embed(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Patch tokens (N, H*W, C) or a channels-last map with the class /
    distillation / register tokens prepended and the position embedding
    added, as timm's ViT ``forward_features`` does right after
    ``patch_embed``.

    timm 1.0.31: ``VisionTransformer._pos_embed(x)`` (the same method on
    ``VisionTransformerDistilled``); relies on it doing all of the token
    placement between ``patch_embed`` and ``patch_drop``.
    """
    return model._pos_embed(x)


def apply_to_held_module(module: nn.Module, fn: Callable, *args,
                         **kwargs) -> None:
    """Run ``fn`` of ``.to()``, ``.cuda()``, ``.double()`` ... on the
    tensors of ``module``, a network held outside the module tree.

    torch 2.14.1: ``nn.Module._apply(fn)``, the method every such call goes
    through (and that a module overrides to take part); relies on its
    signature ``_apply(fn, recurse=True)``.
    """
    module._apply(fn, *args, **kwargs)


def history_buffer_fields() -> frozenset:
    """The fields of a pickled ``mmengine.logging.HistoryBuffer`` (besides
    its statistics functions), which training checkpoints hold in the
    message hub. mmengine 0.10.7: ``max_length``, ``_log_history``,
    ``_count_history``."""
    return frozenset({'max_length', '_log_history', '_count_history'})


def cpu_attention_ops() -> tuple:
    """torch's CPU fused-attention ops (forward, backward), which its FLOP
    counter does not know. torch 2.14.1:
    ``aten._scaled_dot_product_flash_attention_for_cpu`` and its
    ``_backward``."""
    return (torch.ops.aten._scaled_dot_product_flash_attention_for_cpu,
            torch.ops.aten._scaled_dot_product_flash_attention_for_cpu_backward)


def numpy_pickle_globals() -> list:
    """The numpy callables and types that pickled arrays and scalars name
    (``numpy._core.multiarray._reconstruct`` / ``scalar`` under numpy 2,
    ``numpy.core`` under numpy 1), for torch's ``weights_only`` allow-list.
    Tested: numpy 2.4.6."""
    multiarray = np._core.multiarray if hasattr(np, '_core') \
        else np.core.multiarray
    dtype_types = [type(np.dtype(name)) for name in (
        'bool', 'int8', 'int16', 'int32', 'int64', 'uint8', 'uint16',
        'uint32', 'uint64', 'float16', 'float32', 'float64')]
    return [multiarray._reconstruct, multiarray.scalar, np.ndarray,
            np.dtype] + dtype_types


def torch_tensor_rebuild():
    """The function a pickled tensor names (``torch._utils.
    _rebuild_tensor_v2``), for reading prediction files as data. Tested:
    torch 2.14."""
    return torch._utils._rebuild_tensor_v2
