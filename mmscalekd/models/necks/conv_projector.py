"""The conventional projector, the baseline the paper compares CAP with."""
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from mmcv.cnn import build_norm_layer

from mmpretrain.registry import MODELS

from .cross_attention_projector import _pair

__all__ = ['ConvProjector']


@MODELS.register_module()
class ConvProjector(nn.Module):
    """Project a student feature onto the teacher's grid with a 3x3 conv.

    ``BN(Conv3x3(Cs -> Ct)(S))`` resampled to the teacher's (Hq, Wq): the
    usual feature-distillation projector, with no attention and no queries.
    It is the projector ablation of ScaleKD: set
    ``projector=dict(type='ConvProjector')`` in a stage to compare it with
    :class:`CrossAttentionProjector`. A larger student grid is average
    pooled when the teacher's grid divides it (e.g. 14x14 -> 7x7), and
    resampled bilinearly otherwise.

    Args:
        student_channels (int): Cs of the student feature.
        teacher_channels (int): Ct of the teacher tokens.
        student_size (int | tuple): (Hs, Ws) of the student feature.
        query_size (int | tuple): (Hq, Wq), the teacher's token grid.
        norm_cfg (dict): the norm after the convolution, BatchNorm by
            default.

    Shapes:
        student feature (N, Cs, Hs, Ws) -> tokens (N, Hq*Wq, Ct).
    """

    #: The final stage cannot feed it queries from perception.
    takes_queries = False

    def __init__(self,
                 student_channels: int,
                 teacher_channels: int,
                 student_size,
                 query_size,
                 norm_cfg: Optional[dict] = None) -> None:
        super().__init__()
        self.student_size = _pair(student_size)
        self.query_size = _pair(query_size)
        self.conv = nn.Conv2d(
            student_channels, teacher_channels, 3, padding=1, bias=False)
        self.norm = build_norm_layer(norm_cfg or dict(type='BN'),
                                     teacher_channels)[1]

    def forward(self,
                student: torch.Tensor,
                queries: Optional[torch.Tensor] = None) -> torch.Tensor:
        if queries is not None:
            raise ValueError('ConvProjector takes no queries.')
        x = self.norm(self.conv(student))  # (N, Ct, Hs, Ws)
        (hs, ws), (hq, wq) = x.shape[-2:], self.query_size
        if (hs, ws) != (hq, wq):
            if hs % hq == 0 and ws % wq == 0:
                x = F.adaptive_avg_pool2d(x, (hq, wq))
            else:
                x = F.interpolate(
                    x, (hq, wq), mode='bilinear', align_corners=False)
        return x.flatten(2).transpose(1, 2)  # (N, Hq*Wq, Ct)
