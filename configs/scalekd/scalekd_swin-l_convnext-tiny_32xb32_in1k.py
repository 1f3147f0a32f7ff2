# ScaleKD, advanced strategy (300 epochs, strong augmentation, gradient
# clipping at 5.0): Swin-L -> ConvNeXt-T with mmpretrain's recipe and
# the authors' overrides of it (32 GPUs x 32; the student config inherited
# below lists what is theirs and what is unknown). Heads and
# softmax scale as in the authors' released config for this pair.
# Teacher: Swin-L (IN-22K pre-trained, IN-1K fine-tuned, 224 px).
# Teacher checkpoint expected (`model.teacher.checkpoint`; download it once and
# point at the local file on clusters without internet):
#   https://download.openmmlab.com/mmclassification/v0/swin-transformer/convert/swin_large_patch4_window7_224_22kto1k-5f0996db.pth
# Paper top-1 (method page, section 6): 84.16 (+2.02).
# Taps: ConvNeXt stage 3 (384 @ 14x14) and stage 4 (768 @ 7x7).
_base_ = ['./student_convnext-tiny_32xb32_in1k.py']
custom_imports = dict(imports=['mmscalekd'], allow_failed_imports=False)
runner_type = 'ScaleKDRunner'

model = dict(
    _delete_=True,
    type='ScaleKDDistiller',
    student={{_base_.model}},
    teacher=dict(
        config='mmpretrain::swin_transformer/swin-large_16xb64_in1k.py',
        checkpoint='https://download.openmmlab.com/mmclassification/v0/'
        'swin-transformer/convert/'
        'swin_large_patch4_window7_224_22kto1k-5f0996db.pth'),
    # -> teacher stage 3 (768 @ 14x14), then the rest of the teacher (teacher
    # parameter perception) up to stage 4 (1536 @ 7x7).
    perception_stage=dict(
        student_tap='backbone.stages.2',
        teacher_split=2,
        projector=dict(
            type='CrossAttentionProjector',
            num_heads=8,
            self_query=True,
            softmax_scale=1.0),
        loss=dict(
            type='DualViewFeatureLoss',
            spatial_weight=0.08,
            frequency_weight=0.06)),
    final_stage=dict(
        student_tap='backbone.stages.3',
        projector=dict(
            type='CrossAttentionProjector',
            num_heads=16,
            self_query=False,
            softmax_scale=1.0),
        loss=dict(
            type='DualViewFeatureLoss',
            spatial_weight=0.08,
            frequency_weight=0.06)),
    logit_kd=dict(type='LogitKDLoss', tau=1.0, alpha=0.5),
    input_size=224)
