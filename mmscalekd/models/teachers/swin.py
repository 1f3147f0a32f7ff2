"""Teacher adapter for mmpretrain's SwinTransformer."""
from typing import List, Optional, Tuple

import torch

from mmpretrain.models.backbones import SwinTransformer
from mmpretrain.models.utils import resize_pos_embed

from mmscalekd.models.utils import tokens_to_map
from mmscalekd.registry import TEACHER_ADAPTERS
from .base import TeacherAdapter, TeacherOutputs

__all__ = ['SwinTeacherAdapter', 'embed_patches']


def embed_patches(backbone, inputs: torch.Tensor
                  ) -> Tuple[torch.Tensor, Tuple[int, int]]:
    """The stem of mmpretrain's Swin (V1 and V2), as their ``forward``
    runs it: patch tokens (N, H*W, C) and their grid (H, W)."""
    x, hw = backbone.patch_embed(inputs)
    if backbone.use_abs_pos_embed:
        x = x + resize_pos_embed(backbone.absolute_pos_embed,
                                 backbone.patch_resolution, hw,
                                 backbone.interpolate_mode,
                                 backbone.num_extra_tokens)
    return backbone.drop_after_pos(x), tuple(hw)


@TEACHER_ADAPTERS.register_module()
class SwinTeacherAdapter(TeacherAdapter):
    """Split a Swin Transformer after the blocks of stage ``split_index``.

    The tokens at the split point are the stage's block outputs before its
    patch merging; the rest is that patch merging, the later stages and the
    final norm (method section 3).
    """

    backbone_types = (SwinTransformer, )

    def __init__(self, teacher, split_index: int) -> None:
        super().__init__(teacher, split_index)
        self._check_stage_split('Swin')

    def _stage_outputs(self, x: torch.Tensor, hw: Tuple[int, int],
                       first: int, run_first_blocks: bool
                       ) -> Tuple[List[torch.Tensor], Optional[tuple]]:
        """Run stages ``first..`` exactly as SwinTransformer.forward does.

        Returns the backbone outputs of the stages run and, when stage
        ``split_index`` ran its blocks here, the split tokens and grid.
        """
        backbone = self.backbone
        outs, split = [], None
        for i in range(first, len(backbone.stages)):
            stage = backbone.stages[i]
            if run_first_blocks or i > first:
                for block in stage.blocks:
                    x = block(x, hw)
                if i == self.split_index:
                    split = (x, hw)
            if i in backbone.out_indices and not backbone.out_after_downsample:
                outs.append(self._to_map(i, x, hw))
            if stage.downsample is not None:
                x, hw = stage.downsample(x, hw)
            if i in backbone.out_indices and backbone.out_after_downsample:
                outs.append(self._to_map(i, x, hw))
        return outs, split

    def _to_map(self, index: int, x: torch.Tensor,
                hw: Tuple[int, int]) -> torch.Tensor:
        out = getattr(self.backbone, f'norm{index}')(x)
        return tokens_to_map(out, hw).contiguous()

    def forward(self, inputs: torch.Tensor) -> TeacherOutputs:
        x, hw = embed_patches(self.backbone, inputs)
        outs, (split_tokens, split_size) = self._stage_outputs(
            x, hw, first=0, run_first_blocks=True)
        logits = self.logits_from_outputs(tuple(outs))
        return TeacherOutputs(split_tokens, tuple(split_size), outs[-1],
                              logits)

    def forward_rest(self,
                     tokens: torch.Tensor,
                     split_size: Tuple[int, int],
                     extra_tokens: Optional[torch.Tensor] = None
                     ) -> torch.Tensor:
        # Swin has no extra (class) tokens.
        outs, _ = self._stage_outputs(
            tokens, tuple(split_size), first=self.split_index,
            run_first_blocks=False)
        return outs[-1]
