# Baseline: Swin-L -> ConvNeXt-T with logit distillation only (tau 1.0, alpha
# 0.5), the same teacher, teacher checkpoint and student recipe as
# `scalekd_swin-l_convnext-tiny_32xb32_in1k.py`, without the ScaleKD feature
# stages. Train it beside that config and `student_*` to measure what the
# feature stages add.
# Paper top-1: not reported on the method page (the paper compares with other
# KD methods).
_base_ = ['./scalekd_swin-l_convnext-tiny_32xb32_in1k.py']

model = dict(
    perception_stage=None,
    final_stage=None,
    logit_kd=dict(_delete_=True, type='LogitKDLoss', tau=1.0, alpha=0.5))
