"""Teacher adapters for timm models inside mmpretrain's ``TimmClassifier``.

A ``TimmClassifier`` has no ``backbone``: it holds the whole timm model as
``teacher.model`` and its ``forward(x, mode='tensor')`` is
``model.forward_head(model.forward_features(x))``. These adapters walk
``forward_features`` with a split inside and finish with the model's own
``forward_head``, so the logits are the classifier's own.
"""
from typing import List, Optional, Tuple

import torch
from torch import nn

from mmpretrain.models.classifiers import TimmClassifier
from timm.models.deit import VisionTransformerDistilled
from timm.models.swin_transformer import SwinTransformer
from timm.models.vision_transformer import VisionTransformer

from mmscalekd.models.utils import tokens_to_map
from mmscalekd.registry import TEACHER_ADAPTERS
from .base import TeacherAdapter, TeacherOutputs

__all__ = [
    'TimmVisionTransformerTeacherAdapter', 'TimmSwinTeacherAdapter'
]


class _TimmTeacherAdapter(TeacherAdapter):
    """What the timm adapters share: the network is ``teacher.model``."""

    @classmethod
    def matches(cls, teacher: nn.Module) -> bool:
        return (isinstance(teacher, TimmClassifier)
                and type(teacher.model) in cls.backbone_types)

    @classmethod
    def family_names(cls) -> List[str]:
        return [f'timm.{t.__name__}' for t in cls.backbone_types]

    @property
    def backbone(self) -> nn.Module:
        # The timm model plays the backbone's part (and the head's).
        return self.teacher.model


@TEACHER_ADAPTERS.register_module()
class TimmVisionTransformerTeacherAdapter(_TimmTeacherAdapter):
    """Split a timm ViT after block ``split_index``.

    Serves timm's ``VisionTransformer`` (the models that timm's
    ``vision_transformer.py`` builds: ViT, DeiT, DeiT III, CLIP, BEiT-3
    and others, with class and/or register tokens) and
    ``VisionTransformerDistilled`` (DeiT with its distillation token).
    timm's ``Eva`` and ``Beit`` are other classes (rotary or relative
    position terms passed to every block) and are not served here. The
    rest is blocks ``split_index + 1 ..`` plus the final norm; the logits
    come from the model's own ``forward_head`` (token, average or
    attention pooling, ``fc_norm``, head).

    Shapes, with E prefix tokens (``model.num_prefix_tokens``: class,
    distillation and register tokens, in the model's order) and an (H, W)
    patch grid of C channels: ``split_tokens`` (N, H*W, C) row-major,
    ``split_extra_tokens`` (N, E, C) or None when E is 0,
    ``final_feature`` the final-normed patch tokens as a map (N, C, H, W).

    Args:
        teacher (nn.Module): a ``TimmClassifier`` holding the ViT.
        split_index (int): 0-based block index in ``[0, depth - 2]``.
    """

    backbone_types = (VisionTransformer, VisionTransformerDistilled)

    def __init__(self, teacher, split_index: int) -> None:
        super().__init__(teacher, split_index)
        depth = len(self.backbone.blocks)
        if not 0 <= split_index <= depth - 2:
            raise ValueError(
                f'Teacher split point `model.perception_stage.teacher_split='
                f'{split_index}` is out of range for a timm '
                f'{type(self.backbone).__name__} teacher with {depth} '
                f'blocks: it is the 0-based block after which the teacher '
                f'is split and must lie in [0, {depth - 2}] so that at least '
                'one block is left to run.')

    @property
    def _rest_blocks(self) -> range:
        return range(self.split_index + 1, len(self.backbone.blocks))

    def _run_blocks(self, x: torch.Tensor, blocks: range) -> torch.Tensor:
        """Run ``blocks`` on tokens (N, E + H*W, C); after the last block
        also the final norm, as ``forward_features`` does."""
        model = self.backbone
        for i in blocks:
            x = model.blocks[i](x)
        if blocks.stop == len(model.blocks):
            x = model.norm(x)
        return x

    def _patch_map(self, x: torch.Tensor,
                   hw: Tuple[int, int]) -> torch.Tensor:
        # (N, E + H*W, C) -> patch map (N, C, H, W)
        return tokens_to_map(x, hw,
                             self.backbone.num_prefix_tokens).contiguous()

    def forward(self, inputs: torch.Tensor) -> TeacherOutputs:
        """Images (N, 3, H0, W0) -> :class:`TeacherOutputs`."""
        model = self.backbone
        # The stem of ``forward_features``: the model's own ``_pos_embed``
        # places the class / distillation / register tokens.
        x = model.norm_pre(
            model.patch_drop(model._pos_embed(model.patch_embed(inputs))))
        hw = tuple(model.patch_embed.dynamic_feat_size(inputs.shape[-2:]))
        x = self._run_blocks(x, range(self.split_index + 1))
        num_prefix = model.num_prefix_tokens
        extra_tokens = x[:, :num_prefix].contiguous() if num_prefix else None
        split_tokens = x[:, num_prefix:].contiguous()
        x = self._run_blocks(x, self._rest_blocks)
        return TeacherOutputs(split_tokens, hw, self._patch_map(x, hw),
                              model.forward_head(x), extra_tokens)

    def forward_rest(self,
                     tokens: torch.Tensor,
                     split_size: Tuple[int, int],
                     extra_tokens: Optional[torch.Tensor] = None
                     ) -> torch.Tensor:
        """Patch tokens (N, H*W, C) and prefix tokens (N, E, C) at the split
        point -> final feature map (N, C, H, W)."""
        num_prefix = self.backbone.num_prefix_tokens
        if num_prefix:
            if extra_tokens is None or extra_tokens.shape[1] != num_prefix:
                raise ValueError(
                    f'The rest of a timm {type(self.backbone).__name__} '
                    f'teacher needs its {num_prefix} prefix (class / '
                    f'distillation / register) token(s) at the split point '
                    f'as `extra_tokens` (N, {num_prefix}, C); pass the '
                    "teacher's own `split_extra_tokens`.")
            tokens = torch.cat((extra_tokens, tokens), dim=1)
        x = self._run_blocks(tokens, self._rest_blocks)
        return self._patch_map(x, tuple(split_size))


@TEACHER_ADAPTERS.register_module()
class TimmSwinTeacherAdapter(_TimmTeacherAdapter):
    """Split a timm Swin Transformer after stage ``split_index``.

    timm's stage ``i`` is its patch merging (none in stage 0) followed by
    its blocks, on channels-last maps (N, H, W, C). The tokens at the split
    point are stage ``split_index``'s output; the rest is the later stages
    (each with its leading patch merging) and the final norm, the same
    split as :class:`SwinTeacherAdapter`.

    Shapes: ``split_tokens`` (N, H*W, C) row-major, ``final_feature`` the
    normalised last-stage map (N, C', H', W').

    Args:
        teacher (nn.Module): a ``TimmClassifier`` holding the Swin.
        split_index (int): 0-based stage index in ``[0, num_stages - 2]``.
    """

    backbone_types = (SwinTransformer, )

    def __init__(self, teacher, split_index: int) -> None:
        super().__init__(teacher, split_index)
        last = len(self.backbone.layers) - 1
        if not 0 <= split_index < last:
            raise ValueError(
                f'Teacher split point `model.perception_stage.teacher_split='
                f'{split_index}` is out of range for a timm Swin teacher '
                f'with {last + 1} stages; it must be a 0-based stage index '
                f'in [0, {last - 1}] (stage 3 of 4 is 2).')

    def _rest(self, x: torch.Tensor) -> torch.Tensor:
        """Channels-last map at the split point -> normed last stage
        (N, H', W', C'), as ``forward_features`` ends."""
        model = self.backbone
        for stage in model.layers[self.split_index + 1:]:
            x = stage(x)
        return model.norm(x)

    def forward(self, inputs: torch.Tensor) -> TeacherOutputs:
        """Images (N, 3, H0, W0) -> :class:`TeacherOutputs`."""
        model = self.backbone
        x = model.patch_embed(inputs)
        for stage in model.layers[:self.split_index + 1]:
            x = stage(x)
        n, h, w, c = x.shape
        split_tokens = x.reshape(n, h * w, c)
        x = self._rest(x)
        # The head reads the channels-last map, like ``forward`` does.
        logits = model.forward_head(x)
        return TeacherOutputs(split_tokens, (h, w),
                              x.permute(0, 3, 1, 2).contiguous(), logits)

    def forward_rest(self,
                     tokens: torch.Tensor,
                     split_size: Tuple[int, int],
                     extra_tokens: Optional[torch.Tensor] = None
                     ) -> torch.Tensor:
        """Tokens (N, H*W, C) at the split point -> final feature
        (N, C', H', W'). Swin has no extra (class) tokens."""
        # (N, H*W, C) -> channels-last (N, H, W, C)
        x = tokens.reshape(tokens.shape[0], *split_size, tokens.shape[-1])
        return self._rest(x).permute(0, 3, 1, 2).contiguous()
