"""Plain feature distillation (FD), the baseline ScaleKD is compared with."""
from typing import Dict, Mapping, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from mmpretrain.registry import MODELS

from mmscalekd.models.utils.config_values import check_number

__all__ = ['FeatureL2Loss']


@MODELS.register_module()
class FeatureL2Loss(nn.Module):
    """Mean squared error between the projected student feature and the
    teacher's.

    ``loss_l2 = loss_weight * sum((S - T)^2) / (N * C * H * W)``, on raw
    features: no normalisation over C and no frequency view. One view, fed
    by one projector per stage.

    Args:
        loss_weight (float): the weight of the term, > 0. Defaults to 1.0.
    """

    #: The one view: the projected feature as it is.
    views: Tuple[str, ...] = ('spatial', )

    def __init__(self, loss_weight: float = 1.0) -> None:
        super().__init__()
        self.loss_weight = check_number(loss_weight, 'loss_weight',
                                        greater_than=0)

    def forward(self, projections: Mapping[str, torch.Tensor],
                target: torch.Tensor) -> Dict[str, torch.Tensor]:
        """View -> projected student map (N, C, H, W) and the teacher map
        (N, C, H, W), no gradient -> ``loss_l2`` (a scalar)."""
        student = projections['spatial']
        if student.shape != target.shape:
            raise ValueError(
                f'FeatureL2Loss got student {tuple(student.shape)} and '
                f'teacher {tuple(target.shape)}; both must be (N, C, H, W) '
                'of the same shape.')
        return dict(loss_l2=self.loss_weight * F.mse_loss(student, target))
