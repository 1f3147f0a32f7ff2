# Plain feature distillation (FD), the baseline the paper compares ScaleKD
# with: the released Swin-L -> ResNet-50 run (traditional strategy) with
# each stage's dual-view loss replaced by the mean squared error between
# the projected student feature and the teacher's. Projectors, teacher
# parameter perception and logit distillation stay as they are.
# Paper top-1: not reported on the method page.
_base_ = ['./scalekd_swin-l_resnet50_8xb32_in1k.py']

model = dict(
    perception_stage=dict(
        loss=dict(_delete_=True, type='FeatureL2Loss', loss_weight=1.0)),
    final_stage=dict(
        loss=dict(_delete_=True, type='FeatureL2Loss', loss_weight=1.0)))
