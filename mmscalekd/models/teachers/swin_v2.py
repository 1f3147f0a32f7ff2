"""Teacher adapter for mmpretrain's SwinTransformerV2."""
from typing import List, Optional, Tuple

import torch

from mmpretrain.models.backbones import SwinTransformerV2

from mmscalekd.models.utils import tokens_to_map
from mmscalekd.registry import TEACHER_ADAPTERS
from .base import TeacherAdapter, TeacherOutputs
from .swin import embed_patches

__all__ = ['SwinV2TeacherAdapter']


@TEACHER_ADAPTERS.register_module()
class SwinV2TeacherAdapter(TeacherAdapter):
    """Split a Swin Transformer V2 after the blocks of stage ``split_index``.

    Unlike Swin V1, a V2 stage starts with its patch merging (stage 0 has
    none), so the tokens at the split point are the output of stage
    ``split_index`` and the rest is stages ``split_index + 1 ..`` (each with
    its own leading patch merging) and the last stage's norm: the same
    split as :class:`SwinTeacherAdapter` (method section 3).

    Shapes: ``split_tokens`` (N, H*W, C) at the stage's (H, W) grid,
    ``final_feature`` the normalised last-stage map (N, C', H', W').

    Args:
        teacher (nn.Module): an ``ImageClassifier`` with a
            ``SwinTransformerV2`` backbone whose ``out_indices`` include the
            last stage.
        split_index (int): 0-based stage index in ``[0, num_stages - 2]``.
    """

    backbone_types = (SwinTransformerV2, )

    def __init__(self, teacher, split_index: int) -> None:
        super().__init__(teacher, split_index)
        self._check_stage_split('Swin V2')

    def _run_stages(self, x: torch.Tensor, hw: Tuple[int, int],
                    stages: range, outs: List[torch.Tensor]
                    ) -> Tuple[torch.Tensor, Tuple[int, int]]:
        """Run ``stages`` on tokens (N, H*W, C) exactly as
        ``SwinTransformerV2.forward`` does, appending the normalised maps
        of ``out_indices`` stages to ``outs``."""
        backbone = self.backbone
        for i in stages:
            stage = backbone.stages[i]
            x, hw = stage(x, hw)
            if i in backbone.out_indices:
                out = getattr(backbone, f'norm{i}')(x)
                outs.append(tokens_to_map(out, hw).contiguous())
        return x, tuple(hw)

    def forward(self, inputs: torch.Tensor) -> TeacherOutputs:
        """Images (N, 3, H0, W0) -> :class:`TeacherOutputs`."""
        x, hw = embed_patches(self.backbone, inputs)
        outs = []
        split_tokens, split_size = self._run_stages(
            x, hw, range(self.split_index + 1), outs)
        self._run_stages(split_tokens, split_size, self._rest_stages, outs)
        logits = self.logits_from_outputs(tuple(outs))
        return TeacherOutputs(split_tokens, split_size, outs[-1], logits)

    @property
    def _rest_stages(self) -> range:
        return range(self.split_index + 1, len(self.backbone.stages))

    def forward_rest(self,
                     tokens: torch.Tensor,
                     split_size: Tuple[int, int],
                     extra_tokens: Optional[torch.Tensor] = None
                     ) -> torch.Tensor:
        """Tokens (N, H*W, C) at the split point -> final feature
        (N, C', H', W'). Swin V2 has no extra (class) tokens."""
        outs = []
        self._run_stages(tokens, tuple(split_size), self._rest_stages, outs)
        return outs[-1]
