"""Row-major tokens <-> feature maps, the one pair of conversions."""
from typing import Tuple

import torch

__all__ = ['tokens_to_map', 'map_to_tokens']


def tokens_to_map(tokens: torch.Tensor, grid: Tuple[int, int],
                  extra_tokens: int = 0) -> torch.Tensor:
    """Row-major tokens (N, E + H*W, C) -> patch map (N, C, H, W).

    The first ``extra_tokens`` (class / distillation) tokens are dropped.
    The result is a view where possible; call ``.contiguous()`` where the
    memory layout matters.
    """
    patch = tokens[:, extra_tokens:]
    batch, _, channels = patch.shape
    return patch.transpose(1, 2).reshape(batch, channels, *grid)


def map_to_tokens(feature: torch.Tensor) -> torch.Tensor:
    """Feature map (N, C, H, W) -> row-major tokens (N, H*W, C), a view."""
    return feature.flatten(2).transpose(1, 2)
