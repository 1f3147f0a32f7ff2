from .dual_view_feature_loss import DualViewFeatureLoss, remove_spatial_mean
from .logit_kd_loss import LogitKDLoss

__all__ = ['DualViewFeatureLoss', 'LogitKDLoss', 'remove_spatial_mean']
