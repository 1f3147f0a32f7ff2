# The digits pair's student with ScaleKD from its teacher: the released
# recipe's structure and weights (section 5 of docs/method.md) at toy size.
# Same student and recipe as the baseline and the logit-KD student.
_base_ = ['./_base_/digits_recipe.py', './_base_/digits_models.py']
model = dict(
    type='ScaleKDDistiller',
    student={{_base_.student_model}},
    teacher=dict(config={{_base_.teacher_model}}, checkpoint=None),
    # Student block 1 (32 ch @ 4x4 tokens) -> the ViT's tokens after block 1
    # (of 0..3), then its blocks 2-3 and final norm (teacher parameter
    # perception).
    perception_stage=dict(
        student_tap='backbone.layers.1',
        teacher_split=1,
        projector=dict(
            type='CrossAttentionProjector', num_heads=4),
        loss=dict(
            type='DualViewFeatureLoss',
            spatial_weight=0.08,
            frequency_weight=0.06)),
    # Student's last block (32 ch @ 4x4) -> the ViT's final 4x4 tokens,
    # queried by the perception outputs.
    final_stage=dict(
        student_tap='backbone.layers.3',
        projector=dict(
            type='CrossAttentionProjector', num_heads=4, self_query=False),
        loss=dict(
            type='DualViewFeatureLoss',
            spatial_weight=0.08,
            frequency_weight=0.06)),
    logit_kd=dict(type='LogitKDLoss', tau=1.0, alpha=0.5),
    input_size=16)
