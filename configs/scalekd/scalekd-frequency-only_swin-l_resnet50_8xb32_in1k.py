# Ablation of dual-view feature mimicking (method section 2): the released
# Swin-L -> ResNet-50 run with the frequency (alternative) view alone.
_base_ = ['./scalekd_swin-l_resnet50_8xb32_in1k.py']

model = dict(
    perception_stage=dict(loss=dict(spatial_weight=0.0)),
    final_stage=dict(loss=dict(spatial_weight=0.0)))
