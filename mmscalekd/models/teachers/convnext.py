"""Teacher adapter for mmpretrain's ConvNeXt."""
from typing import Tuple

import torch

from mmpretrain.models.backbones import ConvNeXt

from mmscalekd.models.utils import map_to_tokens, tokens_to_map
from mmscalekd.registry import TEACHER_ADAPTERS
from .staged import StagedTeacherAdapter

__all__ = ['ConvNeXtTeacherAdapter']


@TEACHER_ADAPTERS.register_module()
class ConvNeXtTeacherAdapter(StagedTeacherAdapter):
    """Split a ConvNeXt after stage ``split_index``.

    The tokens at the split point are the stage's output map flattened
    row-major; the rest is the later downsample layers and stages (method
    section 3, with stages as for Swin). The state between stages is the
    map (N, C, H, W) itself.

    Final norm: with ``gap_before_final_norm=False`` the backbone normalises
    the last stage's map at every position (``norm{last}``, a channel
    LayerNorm), and ``final_feature`` is that map, exactly the backbone's
    output. With the released default ``gap_before_final_norm=True`` the
    backbone normalises only the pooled vector, so ``final_feature`` is the
    last stage's raw map. The logits are the classifier's own either way:
    they come from the backbone's outputs computed as the backbone computes
    them (pool then norm, or norm).

    Shapes: ``split_tokens`` (N, H*W, C) at the stage's (H, W) grid,
    ``final_feature`` (N, C', H', W').

    Args:
        teacher (nn.Module): an ``ImageClassifier`` with a ``ConvNeXt``
            backbone whose ``out_indices`` include the last stage.
        split_index (int): 0-based stage index in ``[0, num_stages - 2]``.
    """

    backbone_types = (ConvNeXt, )

    def _embed(self, inputs: torch.Tensor) -> torch.Tensor:
        return inputs  # the stem is stage 0's downsample layer

    def _run_stage(self, index: int, x: torch.Tensor) -> torch.Tensor:
        backbone = self.backbone
        return backbone.stages[index](backbone.downsample_layers[index](x))

    def _to_tokens(self, x: torch.Tensor
                   ) -> Tuple[torch.Tensor, Tuple[int, int]]:
        return map_to_tokens(x).contiguous(), tuple(x.shape[-2:])

    def _from_tokens(self, tokens: torch.Tensor,
                     grid: Tuple[int, int]) -> torch.Tensor:
        # Contiguous so that the convolutions see the same memory layout as
        # in the teacher's own forward.
        return tokens_to_map(tokens, grid).contiguous()

    def _unit_output(self, index: int, x: torch.Tensor) -> torch.Tensor:
        norm = getattr(self.backbone, f'norm{index}')
        if self.backbone.gap_before_final_norm:
            return norm(x.mean([-2, -1], keepdim=True)).flatten(1)
        return norm(x)

    def _final_feature(self, x: torch.Tensor) -> torch.Tensor:
        if self.backbone.gap_before_final_norm:
            return x  # the released model normalises only the pooled vector
        # Per position: the backbone's own output of the last stage.
        return self._unit_output(self.num_split_units - 1, x)
