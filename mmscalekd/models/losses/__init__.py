from .dual_view_feature_loss import DualViewFeatureLoss, remove_spatial_mean
from .feature_l2_loss import FeatureL2Loss
from .logit_kd_loss import LogitKDLoss

__all__ = [
    'DualViewFeatureLoss', 'FeatureL2Loss', 'LogitKDLoss',
    'remove_spatial_mean'
]
