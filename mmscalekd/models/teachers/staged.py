"""The base of teacher adapters for hierarchical (staged) backbones."""
from typing import List, Optional, Tuple

import torch
from torch import nn

from .base import TeacherAdapter, TeacherState

__all__ = ['StagedTeacherAdapter']


class StagedTeacherAdapter(TeacherAdapter):
    """Split a hierarchical backbone after stage ``split_index``.

    The tokens at the split point are stage ``split_index``'s output,
    flattened row-major; the rest is the later stages (with the patch
    merging / downsampling that leads each) and the final norm (method
    section 3). Swin, Swin V2, ConvNeXt and timm Swin differ only in the
    hooks: the stem (``_embed``), the stage list (``stages``), how one stage
    runs (``_run_stage``), how the state converts to and from tokens
    (``_to_tokens``, ``_from_tokens``), the final feature
    (``_final_feature``, by the final-norm policy of
    :class:`TeacherAdapter`) and how the logits are made (``_unit_output``
    and ``_logits``).

    Shapes: ``split_tokens`` (N, H*W, C) at the stage's (H, W) grid,
    ``split_extra_tokens`` None (no class tokens), ``final_feature``
    (N, C', H', W').

    Args:
        teacher (nn.Module): the classifier holding the backbone; an
            mmpretrain backbone's ``out_indices`` must include the last
            stage.
        split_index (int): 0-based stage index in ``[0, num_stages - 2]``.
    """

    split_unit = 'stage'
    split_example = 'the paper splits a 4-stage Swin after stage 3, index 2'

    def __init__(self, teacher: nn.Module, split_index: int) -> None:
        super().__init__(teacher, split_index)
        self._check_last_stage_output()

    @property
    def stages(self) -> nn.ModuleList:
        """The backbone's stages, in order."""
        return self.backbone.stages

    @property
    def num_split_units(self) -> int:
        return len(self.stages)

    def _check_last_stage_output(self) -> None:
        # mmpretrain builds the norm of a stage, and the head expects the
        # last stage, only when it is in ``out_indices``.
        last = self.num_split_units - 1
        if last not in self._output_indices:
            raise ValueError(
                f'The {self.family} teacher must output its last stage: set '
                f'`backbone.out_indices` to include {last} in the teacher '
                'config.')

    def _run_stage(self, index: int, state: TeacherState) -> TeacherState:
        """State after stage ``index - 1`` (after the stem for 0) -> state
        after stage ``index``, exactly as the backbone's forward runs it."""
        raise NotImplementedError

    def _to_tokens(self, state: TeacherState
                   ) -> Tuple[torch.Tensor, Tuple[int, int]]:
        """State -> row-major tokens (N, H*W, C) and their grid (H, W)."""
        raise NotImplementedError

    def _from_tokens(self, tokens: torch.Tensor,
                     grid: Tuple[int, int]) -> TeacherState:
        """The inverse of ``_to_tokens``."""
        raise NotImplementedError

    def _run(self, state: TeacherState, stages: range,
             outs: Optional[List[torch.Tensor]]) -> TeacherState:
        for i in stages:
            state = self._run_stage(i, state)
            self._collect(outs, i, state)
        return state

    def _split(self, state: TeacherState) -> Tuple[
            torch.Tensor, Tuple[int, int], Optional[torch.Tensor]]:
        return (*self._to_tokens(state), None)

    def _join(self, tokens: torch.Tensor, split_size: Tuple[int, int],
              extra_tokens: Optional[torch.Tensor]) -> TeacherState:
        # Staged backbones have no extra (class) tokens to put back.
        return self._from_tokens(tokens, split_size)
