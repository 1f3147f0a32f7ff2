"""Teacher adapter for mmpretrain's SwinTransformerV2."""
import torch

from mmpretrain.models.backbones import SwinTransformerV2

from mmscalekd.registry import TEACHER_ADAPTERS
from .base import TokensAndGrid
from .swin import SwinTeacherAdapter

__all__ = ['SwinV2TeacherAdapter']


@TEACHER_ADAPTERS.register_module()
class SwinV2TeacherAdapter(SwinTeacherAdapter):
    """Split a Swin Transformer V2 after stage ``split_index``.

    Unlike Swin V1, a V2 stage starts with its patch merging (stage 0 has
    none), so the tokens at the split point are the output of stage
    ``split_index`` and the rest is stages ``split_index + 1 ..`` (each with
    its own leading patch merging) and the last stage's norm: the same
    split as :class:`SwinTeacherAdapter` (method section 3), whose stem,
    tokens and final feature it shares.

    Final norm, shapes and arguments as for :class:`SwinTeacherAdapter`
    (with a ``SwinTransformerV2`` backbone): ``final_feature`` is the last
    stage's map normalised by ``norm{last}`` at every position.
    """

    backbone_types = (SwinTransformerV2, )

    def _run_stage(self, index: int, state: TokensAndGrid) -> TokensAndGrid:
        x, grid = self.stages[index](*state)
        return x, tuple(grid)

    def _unit_output(self, index: int, state: TokensAndGrid) -> torch.Tensor:
        return self._normed_map(index, *state)
