_base_ = [
    './student_resnet50_8xb32_in1k.py',
    '../_base_/scalekd/swin.py',
]

model = dict(
    _delete_=True,
    type='ScaleKDDistiller',
    student={{_base_.model}},
    teacher={{_base_.swin_family.swin_large}},
    perception_stage=dict(
        student_tap='backbone.layer3',
        teacher_split={{_base_.swin_family.teacher_split}},
        projector=dict(
            type='CrossAttentionProjector', num_heads=16, self_query=True),
        loss={{_base_.swin_family.feature_loss}}),
    final_stage=dict(
        student_tap='backbone.layer4',
        projector=dict(
            type='CrossAttentionProjector', num_heads=24, self_query=False),
        loss={{_base_.swin_family.feature_loss}}),
    logit_kd={{_base_.swin_family.logit_kd}},
    input_size=224)
