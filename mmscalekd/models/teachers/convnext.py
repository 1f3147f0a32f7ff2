"""Teacher adapter for mmpretrain's ConvNeXt."""
from typing import List, Optional, Tuple

import torch

from mmpretrain.models.backbones import ConvNeXt

from mmscalekd.models.utils import map_to_tokens, tokens_to_map
from mmscalekd.registry import TEACHER_ADAPTERS
from .base import TeacherAdapter, TeacherOutputs

__all__ = ['ConvNeXtTeacherAdapter']


@TEACHER_ADAPTERS.register_module()
class ConvNeXtTeacherAdapter(TeacherAdapter):
    """Split a ConvNeXt after stage ``split_index``.

    The tokens at the split point are the stage's output map flattened
    row-major; the rest is the later downsample layers and stages and the
    last stage's norm (method section 3, with stages as for Swin).

    The final feature is the last stage's map normalised by the backbone's
    own ``norm{last}`` (a channel LayerNorm) at every position, (N, C, H, W).
    With ``gap_before_final_norm=False`` that is exactly the backbone's
    output. With the default ``gap_before_final_norm=True`` the backbone
    normalises only the pooled vector and gives no map; this adapter still
    returns the per-position normalised map, so that a checkpoint gives the
    same teacher feature whatever the flag, and keeps the logits the
    classifier's own: they come from the backbone's outputs computed as the
    backbone computes them (pool, then norm).

    Shapes: ``split_tokens`` (N, H*W, C) at the stage's (H, W) grid,
    ``final_feature`` (N, C', H', W').

    Args:
        teacher (nn.Module): an ``ImageClassifier`` with a ``ConvNeXt``
            backbone whose ``out_indices`` include the last stage.
        split_index (int): 0-based stage index in ``[0, num_stages - 2]``.
    """

    backbone_types = (ConvNeXt, )

    def __init__(self, teacher, split_index: int) -> None:
        super().__init__(teacher, split_index)
        self._check_stage_split('ConvNeXt')

    def _run_stages(self, x: torch.Tensor, stages: range,
                    outs: Optional[List[torch.Tensor]]) -> torch.Tensor:
        """Run ``stages`` on a map (N, C, H, W) exactly as
        ``ConvNeXt.forward`` does, appending the outputs of ``out_indices``
        stages to ``outs`` when given."""
        backbone = self.backbone
        for i in stages:
            x = backbone.stages[i](backbone.downsample_layers[i](x))
            if outs is not None and i in backbone.out_indices:
                norm = getattr(backbone, f'norm{i}')
                if backbone.gap_before_final_norm:
                    gap = x.mean([-2, -1], keepdim=True)
                    outs.append(norm(gap).flatten(1))
                else:
                    outs.append(norm(x))
        return x

    @property
    def _rest_stages(self) -> range:
        return range(self.split_index + 1, len(self.backbone.stages))

    def _final_feature(self, x: torch.Tensor) -> torch.Tensor:
        last = len(self.backbone.stages) - 1
        return getattr(self.backbone, f'norm{last}')(x)

    def forward(self, inputs: torch.Tensor) -> TeacherOutputs:
        """Images (N, 3, H0, W0) -> :class:`TeacherOutputs`."""
        outs = []
        x = self._run_stages(inputs, range(self.split_index + 1), outs)
        split_size = tuple(x.shape[-2:])
        split_tokens = map_to_tokens(x).contiguous()
        x = self._run_stages(x, self._rest_stages, outs)
        logits = self.logits_from_outputs(tuple(outs))
        return TeacherOutputs(split_tokens, split_size,
                              self._final_feature(x), logits)

    def forward_rest(self,
                     tokens: torch.Tensor,
                     split_size: Tuple[int, int],
                     extra_tokens: Optional[torch.Tensor] = None
                     ) -> torch.Tensor:
        """Tokens (N, H*W, C) at the split point -> final feature
        (N, C', H', W'). ConvNeXt has no extra (class) tokens."""
        # Contiguous so that the convolutions see the same memory layout as
        # in the teacher's own forward.
        x = tokens_to_map(tokens, split_size).contiguous()
        return self._final_feature(self._run_stages(x, self._rest_stages,
                                                    None))
