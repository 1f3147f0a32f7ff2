# Baseline: MobileNet-V1 (timm `mobilenetv1_100`) with mmpretrain's RSB-A2
# recipe (LAMB, 300 epochs, strong augmentation), trained alone with the same
# recipe as its ScaleKD configs (the reference point of the paper's gains).
# The paper's ScaleKD result with a Swin-L teacher, 75.15, is +3.05 over
# this baseline (method page, section 6).
_base_ = [
    'mmpretrain::resnet/resnet50_8xb256-rsb-a2-300e_in1k.py',
    '../_base_/scalekd_runtime.py'
]

# MobileNet-V1 1.0x from timm (mmpretrain has none): 512 ch @ 14x14 after
# `blocks.3`, 1024 ch @ 7x7 after `blocks.4`.
model = dict(
    backbone=dict(
        _delete_=True,
        type='TimmStudentBackbone',
        model_name='mobilenetv1_100'),
    neck=None,
    head=dict(in_channels=1024))

# Gradient clipping at 5.0 as the paper states for its advanced strategy
# (method page, section 5).
optim_wrapper = dict(clip_grad=dict(max_norm=5.0))
