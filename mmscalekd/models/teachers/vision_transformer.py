"""Teacher adapters for mmpretrain's plain (non-hierarchical) ViTs.

``VisionTransformer`` (ViT and DeiT), ``DistilledVisionTransformer`` (DeiT
with its distillation token), ``DeiT3`` and ``BEiTViT`` share everything after
their stem: a stack of blocks on (class/distillation + patch) tokens and an
optional final norm. They differ in how the stem builds those tokens (and
BEiT's blocks take a relative position bias), so each has a class here that
overrides only the differing step.
"""
from typing import Tuple

import torch
from torch import nn

from mmpretrain.models.backbones import (BEiTViT, DeiT3,
                                         DistilledVisionTransformer,
                                         VisionTransformer)
from mmpretrain.models.utils import resize_pos_embed

from mmscalekd.compat import vit_format_output
from mmscalekd.registry import TEACHER_ADAPTERS
from .base import TokensAndGrid
from .plain_vit import PlainViTTeacherAdapter

__all__ = [
    'VisionTransformerTeacherAdapter',
    'DistilledVisionTransformerTeacherAdapter', 'DeiT3TeacherAdapter',
    'BEiTTeacherAdapter'
]


@TEACHER_ADAPTERS.register_module()
class VisionTransformerTeacherAdapter(PlainViTTeacherAdapter):
    """Split an mmpretrain ViT (or DeiT) after block ``split_index``.

    See :class:`PlainViTTeacherAdapter` for the split and the shapes.
    Final norm: ``ln1`` on every token when ``final_norm=True`` (ViT's and
    DeiT's default), so ``final_feature`` is normalised; with
    ``final_norm=False`` it is the last block's raw patch tokens. Either way
    it is what the backbone returns for ``out_type='featmap'``, whatever its
    configured ``out_type``. The logits are the classifier's own: its neck
    and head on the backbone outputs formatted by the backbone's own
    formatting for its ``out_type`` and ``out_indices``.

    Args:
        teacher (nn.Module): an ``ImageClassifier`` with the backbone.
        split_index (int): 0-based block index in ``[0, num_layers - 2]``.
    """

    backbone_types = (VisionTransformer, )

    @property
    def blocks(self) -> nn.ModuleList:
        return self.backbone.layers

    @property
    def num_extra_tokens(self) -> int:
        # Read from the backbone: it is 0 without a class token, 2 for
        # DeiT's class + distillation tokens.
        return self.backbone.num_extra_tokens

    def _embed(self, inputs: torch.Tensor) -> TokensAndGrid:
        """Images (N, 3, H0, W0) -> tokens (N, E + H*W, C) and (H, W),
        exactly as ``VisionTransformer.forward`` builds them."""
        backbone = self.backbone
        x, grid = backbone.patch_embed(inputs)
        x = self._add_pos_embed(self._prepend_cls_token(x), grid,
                                backbone.num_extra_tokens)
        return backbone.pre_norm(backbone.drop_after_pos(x)), tuple(grid)

    def _prepend_cls_token(self, x: torch.Tensor) -> torch.Tensor:
        # (N, H*W, C) -> (N, 1 + H*W, C); unchanged without a class token.
        cls_token = self.backbone.cls_token
        if cls_token is None:
            return x
        return torch.cat((cls_token.expand(x.shape[0], -1, -1), x), dim=1)

    def _add_pos_embed(self, x: torch.Tensor, grid: Tuple[int, int],
                       num_extra_tokens: int) -> torch.Tensor:
        # Resized to the input's grid, as the backbone does for any size.
        backbone = self.backbone
        return x + resize_pos_embed(
            backbone.pos_embed,
            backbone.patch_resolution,
            grid,
            mode=backbone.interpolate_mode,
            num_extra_tokens=num_extra_tokens)

    def _final_norm(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone.ln1(x) if self.backbone.final_norm else x

    def _unit_output(self, index: int, state: TokensAndGrid) -> torch.Tensor:
        # The backbone's own formatting, so that the logits match whatever
        # ``out_type`` (cls_token, avg_featmap, ...) is set.
        return vit_format_output(self.backbone, *state)


@TEACHER_ADAPTERS.register_module()
class DistilledVisionTransformerTeacherAdapter(
        VisionTransformerTeacherAdapter):
    """Split DeiT with its distillation token after block ``split_index``.

    The extra tokens at the split point are (class, distillation), in that
    order (E = 2). Only the stem differs from ViT: both tokens go in before
    the position embedding, and ``DistilledVisionTransformer.forward`` does
    not apply ``pre_norm``. See :class:`VisionTransformerTeacherAdapter`
    for the final norm, shapes and arguments.
    """

    backbone_types = (DistilledVisionTransformer, )

    def _embed(self, inputs: torch.Tensor) -> TokensAndGrid:
        backbone = self.backbone
        x, grid = backbone.patch_embed(inputs)
        dist_token = backbone.dist_token.expand(x.shape[0], -1, -1)
        x = self._prepend_cls_token(torch.cat((dist_token, x), dim=1))
        x = self._add_pos_embed(x, grid, backbone.num_extra_tokens)
        return backbone.drop_after_pos(x), tuple(grid)


@TEACHER_ADAPTERS.register_module()
class DeiT3TeacherAdapter(VisionTransformerTeacherAdapter):
    """Split DeiT III after block ``split_index``.

    Only the stem differs from ViT: the position embedding covers the patch
    tokens alone and is added before the class token goes in front. See
    :class:`VisionTransformerTeacherAdapter` for the final norm, shapes and
    arguments.
    """

    backbone_types = (DeiT3, )

    def _embed(self, inputs: torch.Tensor) -> TokensAndGrid:
        backbone = self.backbone
        x, grid = backbone.patch_embed(inputs)
        x = backbone.drop_after_pos(self._add_pos_embed(x, grid, 0))
        return self._prepend_cls_token(x), tuple(grid)


@TEACHER_ADAPTERS.register_module()
class BEiTTeacherAdapter(VisionTransformerTeacherAdapter):
    """Split BEiT (and EVA) after block ``split_index``.

    BEiT's position information is a relative position bias in attention:
    per block (``use_rel_pos_bias``, inside each block, nothing to pass) or
    one table shared by all blocks (``use_shared_rel_pos_bias``), which the
    rest must receive too; the absolute position embedding is optional.
    The paper splits BEiT-L before its last two blocks
    (``split_index = num_layers - 3``). mmpretrain's EVA configs (the
    authors' EVA-L teacher) build a ``BEiTViT`` too.

    Final norm: BEiT's and EVA's released default ``final_norm=False``
    normalises only the pooled vector (``ln2`` after averaging the patch
    tokens, i.e. the head's input), so ``final_feature`` is the last
    block's raw patch tokens; with ``final_norm=True`` it is normalised by
    ``ln1``. See :class:`VisionTransformerTeacherAdapter` for the shapes
    and arguments.
    """

    backbone_types = (BEiTViT, )

    def _embed(self, inputs: torch.Tensor) -> TokensAndGrid:
        backbone = self.backbone
        x, grid = backbone.patch_embed(inputs)
        x = self._prepend_cls_token(x)
        if backbone.pos_embed is not None:
            x = self._add_pos_embed(x, grid, backbone.num_extra_tokens)
        return backbone.drop_after_pos(x), tuple(grid)

    def _block_args(self) -> tuple:
        # Every BEiT block takes the shared bias (None when not shared).
        shared = self.backbone.rel_pos_bias
        return (shared() if shared is not None else None, )
