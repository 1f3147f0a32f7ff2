"""The base of teacher adapters for plain (non-hierarchical) ViTs."""
from typing import List, Optional, Tuple

import torch
from torch import nn

from mmscalekd.models.utils import tokens_to_map
from .base import TeacherAdapter, TokensAndGrid

__all__ = ['PlainViTTeacherAdapter']


class PlainViTTeacherAdapter(TeacherAdapter):
    """Split a plain ViT after block ``split_index``.

    A plain ViT has no stages, so the split point is a block (method
    section 3: the reference splits BEiT-L after block 21 of 24). The
    tokens at the split point are that block's output; the rest is blocks
    ``split_index + 1 ..`` plus the final norm. mmpretrain's and timm's ViTs
    differ only in the hooks: the stem (``_embed``), the block list
    (``blocks``), the extra inputs of every block (``_block_args``), the
    final norm (``_final_norm``), the number of extra tokens
    (``num_extra_tokens``) and how the logits are made (``_unit_output``
    and ``_logits``).

    Shapes, with E extra (class / distillation / register) tokens in front
    and an (H, W) patch grid of C channels:

    - ``split_tokens``: the patch tokens (N, H*W, C), row-major;
    - ``split_extra_tokens``: the extra tokens (N, E, C), or None when the
      backbone has none;
    - ``final_feature``: the patch tokens after the last block and the
      backbone's final norm, as a map (N, C, H, W). The final norm is
      whatever the backbone applies to every token (an identity when the
      released model normalises only the pooled vector), so the map is
      normalised or raw as the final-norm policy of
      :class:`TeacherAdapter` says.

    Args:
        teacher (nn.Module): the classifier holding the ViT.
        split_index (int): 0-based block index in ``[0, depth - 2]``, so
            that at least one block is left for the rest.
    """

    split_unit = 'block'
    split_example = ('the paper splits BEiT-L after block 21 of 24, leaving '
                     'its last two blocks')

    @property
    def blocks(self) -> nn.ModuleList:
        """The transformer blocks, in order."""
        raise NotImplementedError

    @property
    def num_extra_tokens(self) -> int:
        """How many non-patch tokens lead the sequence (E)."""
        raise NotImplementedError

    @property
    def num_split_units(self) -> int:
        return len(self.blocks)

    def _block_args(self) -> tuple:
        """Extra positional inputs of every block, computed once per run
        as the backbone does (none by default)."""
        return ()

    def _final_norm(self, x: torch.Tensor) -> torch.Tensor:
        """The norm the backbone applies to all tokens (N, E + H*W, C)
        after its last block."""
        raise NotImplementedError

    def _run(self, state: TokensAndGrid, blocks: range,
             outs: Optional[List[torch.Tensor]]) -> TokensAndGrid:
        """Run ``blocks`` on tokens (N, E + H*W, C) like the backbone's
        forward: the final norm right after the last block, before that
        block's output is read."""
        x, grid = state
        last = len(self.blocks) - 1
        block_args = self._block_args()
        for i in blocks:
            x = self.blocks[i](x, *block_args)
            if i == last:
                x = self._final_norm(x)
            self._collect(outs, i, (x, grid))
        return x, grid

    def _split(self, state: TokensAndGrid) -> Tuple[
            torch.Tensor, Tuple[int, int], Optional[torch.Tensor]]:
        x, grid = state
        num_extra = self.num_extra_tokens
        extra_tokens = x[:, :num_extra].contiguous() if num_extra else None
        return x[:, num_extra:].contiguous(), grid, extra_tokens

    def _join(self, tokens: torch.Tensor, split_size: Tuple[int, int],
              extra_tokens: Optional[torch.Tensor]) -> TokensAndGrid:
        """Put the extra tokens back in front of the patch tokens, where the
        backbone keeps them. The blocks mix them with the patch tokens, so
        they are required whenever the backbone has them."""
        num_extra = self.num_extra_tokens
        if not num_extra:
            return tokens, split_size
        if extra_tokens is None or extra_tokens.shape[1] != num_extra:
            raise ValueError(
                f'The rest of a {self.family} teacher needs its {num_extra} '
                'extra (class / distillation / register) token(s) at the '
                f'split point as `extra_tokens` (N, {num_extra}, C); pass '
                "the teacher's own `split_extra_tokens`.")
        return torch.cat((extra_tokens, tokens), dim=1), split_size

    def _final_feature(self, state: TokensAndGrid) -> torch.Tensor:
        # (N, E + H*W, C) -> patch map (N, C, H, W)
        x, grid = state
        return tokens_to_map(x, grid, self.num_extra_tokens).contiguous()
