"""Teacher adapter for mmpretrain's SwinTransformer."""
import math
from typing import Tuple

import torch
from torch import nn

from mmpretrain.models.backbones import SwinTransformer
from mmpretrain.models.utils import resize_pos_embed

from mmscalekd.models.utils import tokens_to_map
from mmscalekd.registry import TEACHER_ADAPTERS
from .base import TokensAndGrid
from .staged import StagedTeacherAdapter

__all__ = ['SwinTeacherAdapter', 'check_window_fits', 'embed_patches']


def embed_patches(backbone, inputs: torch.Tensor) -> TokensAndGrid:
    """The stem of mmpretrain's Swin (V1 and V2), as their ``forward``
    runs it: patch tokens (N, H*W, C) and their grid (H, W)."""
    x, hw = backbone.patch_embed(inputs)
    if backbone.use_abs_pos_embed:
        x = x + resize_pos_embed(backbone.absolute_pos_embed,
                                 backbone.patch_resolution, hw,
                                 backbone.interpolate_mode,
                                 backbone.num_extra_tokens)
    return backbone.drop_after_pos(x), tuple(hw)


def check_window_fits(network: nn.Module, image_size: Tuple[int, int],
                      key: str) -> None:
    """Refuse an image size (``key``) that gives a Swin teacher's stage a
    token map smaller than its attention window, before mmpretrain's
    assertion in the first forward would.

    Without ``pad_small_map`` mmpretrain's Swin needs every stage's map to
    be at least ``window_size`` a side; each patch merging halves it
    (rounding up, as its padding does).
    """
    backbone = getattr(network, 'backbone', None)
    if type(backbone) is not SwinTransformer:
        return
    stride = backbone.patch_embed.projection.stride
    grid = [math.ceil(size / step) for size, step in zip(image_size, stride)]
    for index, stage in enumerate(backbone.stages):
        attention = stage.blocks[0].attn
        window = attention.window_size
        if not attention.pad_small_map and min(grid) < window:
            # The smallest side whose map is still `window` in the last
            # stage, through every rounding-up merge.
            merges = len(backbone.stages) - 1
            smallest = ((window - 1) * 2**merges) * max(stride) + 1
            raise ValueError(
                f'`{key}={tuple(image_size)!r}` gives the Swin teacher a '
                f'{tuple(grid)} token map in stage {index + 1}, smaller '
                f'than its window_size={window}. This teacher takes images '
                f'of {smallest} px a side and more: set '
                f'`model.teacher.input_size` to such a size (the teacher '
                'then sees the images resized; the student keeps its own '
                'size), or set `pad_small_map=True` in the teacher\'s '
                'backbone.')
        grid = [math.ceil(side / 2) for side in grid]


@TEACHER_ADAPTERS.register_module()
class SwinTeacherAdapter(StagedTeacherAdapter):
    """Split a Swin Transformer after the blocks of stage ``split_index``.

    The tokens at the split point are the stage's block outputs before its
    patch merging; the rest is that patch merging, the later stages and the
    final norm (method section 3). So this adapter's stage ``i`` is stage
    ``i - 1``'s patch merging followed by stage ``i``'s blocks.

    Final norm: ``final_feature`` is the last stage's map normalised by
    ``norm{last}`` at every position, exactly the backbone's own last
    output. See :class:`StagedTeacherAdapter` for the shapes.

    Args:
        teacher (nn.Module): an ``ImageClassifier`` with a
            ``SwinTransformer`` backbone whose ``out_indices`` include the
            last stage.
        split_index (int): 0-based stage index in ``[0, num_stages - 2]``.
    """

    backbone_types = (SwinTransformer, )

    def _embed(self, inputs: torch.Tensor) -> TokensAndGrid:
        return embed_patches(self.backbone, inputs)

    def _run_stage(self, index: int, state: TokensAndGrid) -> TokensAndGrid:
        x, grid = state
        if index > 0:
            x, grid = self.stages[index - 1].downsample(x, grid)
        for block in self.stages[index].blocks:
            x = block(x, grid)
        return x, tuple(grid)

    def _to_tokens(self, state: TokensAndGrid) -> TokensAndGrid:
        return state  # Swin runs on row-major tokens already

    def _from_tokens(self, tokens: torch.Tensor,
                     grid: Tuple[int, int]) -> TokensAndGrid:
        return tokens, grid

    def _normed_map(self, index: int, x: torch.Tensor,
                    grid: Tuple[int, int]) -> torch.Tensor:
        """Tokens (N, H*W, C) -> ``norm{index}``-ed map (N, C, H, W), as the
        backbone outputs stage ``index``."""
        out = getattr(self.backbone, f'norm{index}')(x)
        return tokens_to_map(out, grid).contiguous()

    def _unit_output(self, index: int, state: TokensAndGrid) -> torch.Tensor:
        x, grid = state
        downsample = self.stages[index].downsample
        if self.backbone.out_after_downsample and downsample is not None:
            # The backbone then outputs the stage after its patch merging,
            # which this adapter runs at the start of the next stage.
            x, grid = downsample(x, grid)
        return self._normed_map(index, x, grid)

    def _final_feature(self, state: TokensAndGrid) -> torch.Tensor:
        return self._normed_map(self.num_split_units - 1, *state)
