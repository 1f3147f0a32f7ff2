"""Teacher adapters for timm models inside mmpretrain's ``TimmClassifier``.

A ``TimmClassifier`` has no ``backbone``: it holds the whole timm model as
``teacher.model`` and its ``forward(x, mode='tensor')`` is
``model.forward_head(model.forward_features(x))``. These adapters walk
``forward_features`` with a split inside (on the plain-ViT and staged bases,
like the mmpretrain families) and finish with the model's own
``forward_head``, so the logits are the classifier's own.
"""
from typing import List, Sequence, Tuple

import torch
from torch import nn

from mmpretrain.models.classifiers import TimmClassifier
from timm.models.deit import VisionTransformerDistilled
from timm.models.swin_transformer import SwinTransformer
from timm.models.vision_transformer import VisionTransformer

from mmscalekd.compat import timm_vit_pos_embed
from mmscalekd.registry import TEACHER_ADAPTERS
from .base import TeacherAdapter, TokensAndGrid
from .plain_vit import PlainViTTeacherAdapter
from .staged import StagedTeacherAdapter

__all__ = [
    'TimmVisionTransformerTeacherAdapter', 'TimmSwinTeacherAdapter'
]


class _TimmTeacherAdapter(TeacherAdapter):
    """What the timm adapters share: the network is ``teacher.model`` and
    its ``forward_head`` reads the final state, not per-unit outputs."""

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

    @property
    def family(self) -> str:
        return f'timm {type(self.backbone).__name__}'

    @property
    def _output_indices(self) -> Sequence[int]:
        return ()  # nothing to collect: the head reads the final state


@TEACHER_ADAPTERS.register_module()
class TimmVisionTransformerTeacherAdapter(_TimmTeacherAdapter,
                                          PlainViTTeacherAdapter):
    """Split a timm ViT after block ``split_index``.

    Serves timm's ``VisionTransformer`` (the models that timm's
    ``vision_transformer.py`` builds: ViT, DeiT, DeiT III, CLIP, BEiT-3
    and others, with class and/or register tokens) and
    ``VisionTransformerDistilled`` (DeiT with its distillation token).
    timm's ``Eva`` and ``Beit`` are other classes (rotary or relative
    position terms passed to every block) and are not served here. The
    logits come from the model's own ``forward_head`` (token, average or
    attention pooling, ``fc_norm``, head).

    Final norm: timm's ``norm`` on every token, so ``final_feature`` is
    normalised, exactly ``forward_features``' patch tokens; a model built
    with ``fc_norm`` normalises only the pooled vector (its ``norm`` is an
    identity), and there the map is raw. The E extra tokens are
    ``model.num_prefix_tokens`` (class, distillation and register tokens,
    in the model's order). See :class:`PlainViTTeacherAdapter` for the
    shapes.

    Args:
        teacher (nn.Module): a ``TimmClassifier`` holding the ViT.
        split_index (int): 0-based block index in ``[0, depth - 2]``.
    """

    backbone_types = (VisionTransformer, VisionTransformerDistilled)

    @property
    def blocks(self) -> nn.ModuleList:
        return self.backbone.blocks

    @property
    def num_extra_tokens(self) -> int:
        return self.backbone.num_prefix_tokens

    def _embed(self, inputs: torch.Tensor) -> TokensAndGrid:
        """The stem of ``forward_features``: the model's own position
        embedding step places the class / distillation / register tokens."""
        model = self.backbone
        x = model.norm_pre(model.patch_drop(
            timm_vit_pos_embed(model, model.patch_embed(inputs))))
        grid = model.patch_embed.dynamic_feat_size(inputs.shape[-2:])
        return x, tuple(grid)

    def _final_norm(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone.norm(x)

    def _logits(self, state: TokensAndGrid,
                outs: List[torch.Tensor]) -> torch.Tensor:
        return self.backbone.forward_head(state[0])


@TEACHER_ADAPTERS.register_module()
class TimmSwinTeacherAdapter(_TimmTeacherAdapter, StagedTeacherAdapter):
    """Split a timm Swin Transformer after stage ``split_index``.

    timm's stage ``i`` is its patch merging (none in stage 0) followed by
    its blocks, on channels-last maps (N, H, W, C), the state here. The
    tokens at the split point are stage ``split_index``'s output; the rest
    is the later stages and the final norm, the same split as
    :class:`SwinTeacherAdapter`.

    Final norm: timm's ``norm`` on every position, so ``final_feature`` is
    normalised, exactly ``forward_features`` as a map (N, C', H', W'). See
    :class:`StagedTeacherAdapter` for the shapes.

    Args:
        teacher (nn.Module): a ``TimmClassifier`` holding the Swin.
        split_index (int): 0-based stage index in ``[0, num_stages - 2]``.
    """

    backbone_types = (SwinTransformer, )

    @property
    def stages(self) -> nn.ModuleList:
        return self.backbone.layers

    def _check_last_stage_output(self) -> None:
        """Nothing to check: ``forward_features`` always ends with the last
        stage and its norm."""

    def _embed(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.backbone.patch_embed(inputs)

    def _run_stage(self, index: int, x: torch.Tensor) -> torch.Tensor:
        x = self.stages[index](x)
        if index == self.num_split_units - 1:
            # ``forward_features`` ends with the norm; the head reads it.
            x = self.backbone.norm(x)
        return x

    def _to_tokens(self, x: torch.Tensor
                   ) -> Tuple[torch.Tensor, Tuple[int, int]]:
        n, h, w, c = x.shape
        return x.reshape(n, h * w, c), (h, w)

    def _from_tokens(self, tokens: torch.Tensor,
                     grid: Tuple[int, int]) -> torch.Tensor:
        # (N, H*W, C) -> channels-last (N, H, W, C)
        return tokens.reshape(tokens.shape[0], *grid, tokens.shape[-1])

    def _final_feature(self, x: torch.Tensor) -> torch.Tensor:
        return x.permute(0, 3, 1, 2).contiguous()

    def _logits(self, x: torch.Tensor,
                outs: List[torch.Tensor]) -> torch.Tensor:
        # The head reads the channels-last map, like ``forward`` does.
        return self.backbone.forward_head(x)
