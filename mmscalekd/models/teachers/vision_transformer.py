"""Teacher adapters for mmpretrain's plain (non-hierarchical) ViTs.

``VisionTransformer`` (ViT and DeiT), ``DistilledVisionTransformer`` (DeiT
with its distillation token), ``DeiT3`` and ``BEiTViT`` share everything after
their stem: a stack of blocks on (class/distillation + patch) tokens and an
optional final norm. They differ in how the stem builds those tokens (and
BEiT's blocks take a relative position bias), so each has a class here that
overrides only the differing step.
"""
from typing import List, Optional, Tuple

import torch

from mmpretrain.models.backbones import (BEiTViT, DeiT3,
                                         DistilledVisionTransformer,
                                         VisionTransformer)
from mmpretrain.models.utils import resize_pos_embed

from mmscalekd.models.utils import tokens_to_map
from mmscalekd.registry import TEACHER_ADAPTERS
from .base import TeacherAdapter, TeacherOutputs

__all__ = [
    'VisionTransformerTeacherAdapter',
    'DistilledVisionTransformerTeacherAdapter', 'DeiT3TeacherAdapter',
    'BEiTTeacherAdapter'
]


@TEACHER_ADAPTERS.register_module()
class VisionTransformerTeacherAdapter(TeacherAdapter):
    """Split a plain ViT after block ``split_index``.

    A plain ViT has no stages, so the split point is a block (method
    section 3: the reference splits BEiT-L after block 21 of 24). The
    tokens at the split point are that block's output; the rest is blocks
    ``split_index + 1 ..`` plus the final norm.

    Shapes, with E extra (class / distillation) tokens and an (H, W) patch
    grid of C channels:

    - ``split_tokens``: the patch tokens (N, H*W, C), row-major;
    - ``split_extra_tokens``: the extra tokens (N, E, C), or None when the
      backbone has none (``with_cls_token=False``);
    - ``final_feature``: the patch tokens after the last block and, when the
      backbone has one (``final_norm=True``), the final norm ``ln1``, as a
      map (N, C, H, W). It is what the backbone itself returns for
      ``out_type='featmap'``, whatever its configured ``out_type``: BEiT's
      default ``final_norm=False`` normalises only the pooled vector
      (``ln2`` after averaging, i.e. the head's input), not the tokens, so
      there the map is the last block's raw patch tokens;
    - ``logits``: the classifier's own, from the backbone outputs formatted
      by the backbone's own ``_format_output`` for its ``out_type`` and
      ``out_indices``.

    Args:
        teacher (nn.Module): an ``ImageClassifier`` with the backbone.
        split_index (int): 0-based block index in
            ``[0, num_layers - 2]``, so that at least one block is left for
            the rest.
    """

    backbone_types = (VisionTransformer, )

    def __init__(self, teacher, split_index: int) -> None:
        super().__init__(teacher, split_index)
        num_layers = len(self.backbone.layers)
        if not 0 <= split_index <= num_layers - 2:
            raise ValueError(
                f'Teacher split point `model.perception_stage.teacher_split='
                f'{split_index}` is out of range for a '
                f'{type(self.backbone).__name__} teacher with {num_layers} '
                f'blocks: it is the 0-based block after which the teacher '
                f'is split and must lie in [0, {num_layers - 2}] so that at '
                f'least one block is left to run (the paper splits BEiT-L '
                f'before its last two blocks: {num_layers - 3} here).')

    @property
    def num_extra_tokens(self) -> int:
        # Read from the backbone: it is 0 without a class token, 2 for
        # DeiT's class + distillation tokens.
        return self.backbone.num_extra_tokens

    def _embed(self,
               inputs: torch.Tensor) -> Tuple[torch.Tensor, Tuple[int, int]]:
        """Images (N, 3, H0, W0) -> tokens (N, E + H*W, C) and (H, W),
        exactly as ``VisionTransformer.forward`` builds them."""
        backbone = self.backbone
        x, hw = backbone.patch_embed(inputs)
        if backbone.cls_token is not None:
            x = torch.cat((backbone.cls_token.expand(x.shape[0], -1, -1), x),
                          dim=1)
        x = x + resize_pos_embed(
            backbone.pos_embed,
            backbone.patch_resolution,
            hw,
            mode=backbone.interpolate_mode,
            num_extra_tokens=backbone.num_extra_tokens)
        x = backbone.drop_after_pos(x)
        return backbone.pre_norm(x), tuple(hw)

    def _layer_inputs(self) -> tuple:
        """Extra positional inputs of every block (none for ViT)."""
        return ()

    def _run_blocks(self, x: torch.Tensor, hw: Tuple[int, int],
                    blocks: range,
                    outs: Optional[List] = None) -> torch.Tensor:
        """Run ``blocks`` on tokens (N, E + H*W, C) like the backbone's
        forward: the final norm right after the last block, and the
        formatted outputs of ``out_indices`` blocks appended to ``outs``."""
        backbone = self.backbone
        last = len(backbone.layers) - 1
        layer_inputs = self._layer_inputs()
        for i in blocks:
            x = backbone.layers[i](x, *layer_inputs)
            if i == last and backbone.final_norm:
                x = backbone.ln1(x)
            if outs is not None and i in backbone.out_indices:
                # The backbone's own formatting, so that the logits match
                # whatever ``out_type`` (cls_token, avg_featmap, ...) is set.
                outs.append(backbone._format_output(x, hw))
        return x

    @property
    def _rest_blocks(self) -> range:
        return range(self.split_index + 1, len(self.backbone.layers))

    def _patch_map(self, x: torch.Tensor,
                   hw: Tuple[int, int]) -> torch.Tensor:
        # (N, E + H*W, C) -> patch map (N, C, H, W)
        return tokens_to_map(x, hw, self.num_extra_tokens).contiguous()

    def forward(self, inputs: torch.Tensor) -> TeacherOutputs:
        """Images (N, 3, H0, W0) -> :class:`TeacherOutputs`."""
        x, hw = self._embed(inputs)
        outs = []
        x = self._run_blocks(x, hw, range(self.split_index + 1), outs)
        num_extra = self.num_extra_tokens
        extra_tokens = x[:, :num_extra].contiguous() if num_extra else None
        split_tokens = x[:, num_extra:].contiguous()
        x = self._run_blocks(x, hw, self._rest_blocks, outs)
        logits = self.logits_from_outputs(tuple(outs))
        return TeacherOutputs(split_tokens, hw, self._patch_map(x, hw),
                              logits, extra_tokens)

    def forward_rest(self,
                     tokens: torch.Tensor,
                     split_size: Tuple[int, int],
                     extra_tokens: Optional[torch.Tensor] = None
                     ) -> torch.Tensor:
        """Patch tokens (N, H*W, C) and extra tokens (N, E, C) at the split
        point -> final feature map (N, C, H, W).

        The extra tokens go back in front of the patch tokens, where the
        backbone keeps them. The blocks mix them with the patch tokens, so
        they are required whenever the backbone has them.
        """
        num_extra = self.num_extra_tokens
        if num_extra:
            if extra_tokens is None or extra_tokens.shape[1] != num_extra:
                raise ValueError(
                    f'The rest of a {type(self.backbone).__name__} teacher '
                    f'needs its {num_extra} class/distillation token(s) at '
                    f'the split point as `extra_tokens` (N, {num_extra}, C); '
                    "pass the teacher's own `split_extra_tokens`.")
            tokens = torch.cat((extra_tokens, tokens), dim=1)
        hw = tuple(split_size)
        x = self._run_blocks(tokens, hw, self._rest_blocks)
        return self._patch_map(x, hw)


@TEACHER_ADAPTERS.register_module()
class DistilledVisionTransformerTeacherAdapter(
        VisionTransformerTeacherAdapter):
    """Split DeiT with its distillation token after block ``split_index``.

    The extra tokens at the split point are (class, distillation), in that
    order (E = 2). Only the stem differs from ViT: both tokens go in before
    the position embedding, and ``DistilledVisionTransformer.forward`` does
    not apply ``pre_norm``. See :class:`VisionTransformerTeacherAdapter`
    for the shapes and arguments.
    """

    backbone_types = (DistilledVisionTransformer, )

    def _embed(self,
               inputs: torch.Tensor) -> Tuple[torch.Tensor, Tuple[int, int]]:
        backbone = self.backbone
        x, hw = backbone.patch_embed(inputs)
        n = x.shape[0]
        x = torch.cat((backbone.cls_token.expand(n, -1, -1),
                       backbone.dist_token.expand(n, -1, -1), x),
                      dim=1)
        x = x + resize_pos_embed(
            backbone.pos_embed,
            backbone.patch_resolution,
            hw,
            mode=backbone.interpolate_mode,
            num_extra_tokens=backbone.num_extra_tokens)
        return backbone.drop_after_pos(x), tuple(hw)


@TEACHER_ADAPTERS.register_module()
class DeiT3TeacherAdapter(VisionTransformerTeacherAdapter):
    """Split DeiT III after block ``split_index``.

    Only the stem differs from ViT: the position embedding covers the patch
    tokens alone and is added before the class token goes in front. See
    :class:`VisionTransformerTeacherAdapter` for the shapes and arguments.
    """

    backbone_types = (DeiT3, )

    def _embed(self,
               inputs: torch.Tensor) -> Tuple[torch.Tensor, Tuple[int, int]]:
        backbone = self.backbone
        x, hw = backbone.patch_embed(inputs)
        x = x + resize_pos_embed(
            backbone.pos_embed,
            backbone.patch_resolution,
            hw,
            mode=backbone.interpolate_mode,
            num_extra_tokens=0)
        x = backbone.drop_after_pos(x)
        if backbone.cls_token is not None:
            x = torch.cat((backbone.cls_token.expand(x.shape[0], -1, -1), x),
                          dim=1)
        return x, tuple(hw)


@TEACHER_ADAPTERS.register_module()
class BEiTTeacherAdapter(VisionTransformerTeacherAdapter):
    """Split BEiT after block ``split_index``.

    BEiT's position information is a relative position bias in attention:
    per block (``use_rel_pos_bias``, inside each block, nothing to pass) or
    one table shared by all blocks (``use_shared_rel_pos_bias``), which the
    rest must receive too; the absolute position embedding is optional.
    The paper splits BEiT-L before its last two blocks
    (``split_index = num_layers - 3``). mmpretrain's EVA configs (the
    authors' EVA-L teacher) build a ``BEiTViT`` too. See
    :class:`VisionTransformerTeacherAdapter` for the shapes and arguments.
    """

    backbone_types = (BEiTViT, )

    def _embed(self,
               inputs: torch.Tensor) -> Tuple[torch.Tensor, Tuple[int, int]]:
        backbone = self.backbone
        x, hw = backbone.patch_embed(inputs)
        if backbone.cls_token is not None:
            x = torch.cat((backbone.cls_token.expand(x.shape[0], -1, -1), x),
                          dim=1)
        if backbone.pos_embed is not None:
            x = x + resize_pos_embed(
                backbone.pos_embed,
                backbone.patch_resolution,
                hw,
                mode=backbone.interpolate_mode,
                num_extra_tokens=backbone.num_extra_tokens)
        return backbone.drop_after_pos(x), tuple(hw)

    def _layer_inputs(self) -> tuple:
        # Every BEiT block takes the shared bias (None when not shared).
        shared = self.backbone.rel_pos_bias
        return (shared() if shared is not None else None, )
