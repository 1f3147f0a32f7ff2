# Ablation of teacher parameter perception (method section 3): the released
# Swin-L -> ResNet-50 run without it. The stage-3 projections are compared
# with the teacher's own stage-3 tokens instead of going through its stage 4,
# so there are no P_sp / P_fr to query the final stage with: its projectors
# learn their queries.
_base_ = ['./scalekd_swin-l_resnet50_8xb32_in1k.py']

model = dict(
    perception_stage=dict(teacher_perception=False),
    final_stage=dict(projector=dict(self_query=True)))
