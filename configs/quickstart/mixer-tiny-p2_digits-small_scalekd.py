# The quick start's student with ScaleKD from a teacher tools/quickstart.py
# pre-trained: the released recipe's structure and the Swin teachers' loss
# weights at toy size (tools/quickstart.py also tries the weights at a fifth
# and keeps the better on val). Same student, data and recipe as the
# baselines.
_base_ = ['./_base_/pool_recipe.py', './_base_/pool_models.py']
model = dict(
    type='ScaleKDDistiller',
    student={{_base_.student_model}},
    teacher=dict(config={{_base_.teacher_model}}, checkpoint=None),
    # Student block 2 (32 ch @ 8x8 tokens) -> the ViT's tokens after block 1
    # (of 0..3); the ViT's blocks 2-3 and final norm then run on the
    # projected student tokens (teacher parameter perception).
    perception_stage=dict(
        student_tap='backbone.layers.2',
        teacher_split=1,
        projector=dict(type='CrossAttentionProjector', num_heads=8),
        loss=dict(
            type='DualViewFeatureLoss',
            spatial_weight=0.08,
            frequency_weight=0.06)),
    # Student's last block (32 ch @ 8x8) -> the ViT's final 8x8 tokens,
    # queried by the perception outputs.
    final_stage=dict(
        student_tap='backbone.layers.3',
        projector=dict(
            type='CrossAttentionProjector', num_heads=8, self_query=False),
        loss=dict(
            type='DualViewFeatureLoss',
            spatial_weight=0.08,
            frequency_weight=0.06)),
    logit_kd=dict(type='LogitKDLoss', tau=1.0, alpha=0.5),
    input_size=16)
