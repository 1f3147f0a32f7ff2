# Ablation of dual-view feature mimicking (method section 2): the released
# Swin-L -> ResNet-50 run with the spatial view alone. A view of weight 0
# has no projector and no loss term.
_base_ = ['./scalekd_swin-l_resnet50_8xb32_in1k.py']

model = dict(
    perception_stage=dict(loss=dict(frequency_weight=0.0)),
    final_stage=dict(loss=dict(frequency_weight=0.0)))
