"""Dual-view feature mimicking (method section 2)."""
from typing import Dict, Mapping, Tuple, Union

import torch
import torch.nn.functional as F
from torch import nn

from mmpretrain.registry import MODELS

from mmscalekd.models.utils.config_values import check_number

__all__ = ['DualViewFeatureLoss', 'remove_spatial_mean']


def remove_spatial_mean(x: torch.Tensor) -> torch.Tensor:
    """Remove the DC component of each channel of a (N, C, H, W) map.

    The zero-frequency basis function of the 2-D DCT-II is constant over
    (H, W). Zeroing its coefficient and inverting the (orthogonal) transform
    therefore subtracts the projection of each channel onto a constant, which
    is the channel's spatial mean. This is the frequency view of the method
    without building any DCT matrix; ``tests`` check it against the DCT route.
    """
    return x - x.mean(dim=(2, 3), keepdim=True)


@MODELS.register_module()
class DualViewFeatureLoss(nn.Module):
    """Spatial and frequency ("alternative") view feature mimicking loss.

    ``loss_spatial = spatial_weight * sum((normC(S) - normC(T))^2) / N``
    and ``loss_frequency`` is the same on features whose per-channel spatial
    mean (the DCT DC coefficient) is removed, where normC is L2 normalisation
    of each position's channel vector.

    Args:
        spatial_weight (float): ``alpha_sp``. Defaults to 0.08.
        frequency_weight (float): ``alpha_fr``. Defaults to 0.06.
    """

    def __init__(self,
                 spatial_weight: float = 0.08,
                 frequency_weight: float = 0.06) -> None:
        super().__init__()
        note = ('0 switches the view off; released configs use 0.08 and '
                '0.06')
        self.spatial_weight = check_number(
            spatial_weight, 'spatial_weight', at_least=0, note=note)
        self.frequency_weight = check_number(
            frequency_weight, 'frequency_weight', at_least=0, note=note)

    @property
    def views(self) -> Tuple[str, ...]:
        """The views switched on (weight > 0), of 'spatial', 'frequency'."""
        return tuple(view for view in ('spatial', 'frequency')
                     if getattr(self, f'{view}_weight') > 0)

    @staticmethod
    def _mimic(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
        """sum((normC(S) - normC(T))^2) / N for (N, C, H, W) maps."""
        diff = F.normalize(student, dim=1) - F.normalize(teacher, dim=1)
        return diff.pow(2).sum() / student.shape[0]

    def forward(self, projections: Union[torch.Tensor,
                                         Mapping[str, torch.Tensor]],
                target: torch.Tensor) -> Dict[str, torch.Tensor]:
        """Compute both views.

        Args:
            projections (Tensor | dict): view -> projected student feature
                (N, C, H, W): ScaleKD feeds each view from its own
                projector. One tensor feeds both views.
            target (Tensor): teacher feature (N, C, H, W), no gradient.

        Returns:
            dict: ``loss_spatial`` and ``loss_frequency`` (scalars); a view
            whose weight is 0 is left out.
        """
        if isinstance(projections, torch.Tensor):
            projections = dict.fromkeys(self.views, projections)
        students = {view: projections[view] for view in self.views}
        for student in students.values():
            if student.shape != target.shape:
                raise ValueError(
                    f'DualViewFeatureLoss got student '
                    f'{tuple(student.shape)} and teacher '
                    f'{tuple(target.shape)}; both must be (N, C, H, W) of '
                    'the same shape.')
        # A view with weight 0 is switched off: no key, no computation.
        losses = dict()
        if 'spatial' in students:
            losses['loss_spatial'] = self.spatial_weight * self._mimic(
                students['spatial'], target)
        if 'frequency' in students:
            losses['loss_frequency'] = self.frequency_weight * self._mimic(
                remove_spatial_mean(students['frequency']),
                remove_spatial_mean(target))
        return losses
