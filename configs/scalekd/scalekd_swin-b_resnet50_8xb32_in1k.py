# ScaleKD, traditional strategy: Swin-B -> ResNet-50 with mmpretrain's standard
# ResNet-50 recipe (SGD, 100 epochs, total batch 256) and SyncBN, inherited
# from the student baseline config below, as the authors' config for this
# pair names it (docs/recipes.md). Method page, section 5,
# row "traditional, swin-b -> res50".
# Teacher: Swin-B (IN-22K pre-trained, IN-1K fine-tuned, 224 px).
# Teacher checkpoint expected (`model.teacher.checkpoint`; download it once and
# point at the local file on clusters without internet):
#   https://download.openmmlab.com/mmclassification/v0/swin-transformer/convert/swin_base_patch4_window7_224_22kto1k-f967f799.pth
# Paper top-1 (method page, section 6): not reported on the method page.
_base_ = ['./student_resnet50_8xb32_in1k.py']
custom_imports = dict(imports=['mmscalekd'], allow_failed_imports=False)
runner_type = 'ScaleKDRunner'

model = dict(
    _delete_=True,
    type='ScaleKDDistiller',
    student={{_base_.model}},
    teacher=dict(
        config='mmpretrain::swin_transformer/swin-base_16xb64_in1k.py',
        checkpoint='https://download.openmmlab.com/mmclassification/v0/'
        'swin-transformer/convert/'
        'swin_base_patch4_window7_224_22kto1k-f967f799.pth'),
    # -> teacher stage 3 (512 @ 14x14), then the rest of the teacher (teacher
    # parameter perception) up to stage 4 (1024 @ 7x7).
    perception_stage=dict(
        student_tap='backbone.layer3',
        teacher_split=2,
        projector=dict(
            type='CrossAttentionProjector',
            num_heads=8,
            self_query=True,
            softmax_scale=5.0),
        loss=dict(
            type='DualViewFeatureLoss',
            spatial_weight=0.08,
            frequency_weight=0.06)),
    final_stage=dict(
        student_tap='backbone.layer4',
        projector=dict(
            type='CrossAttentionProjector',
            num_heads=16,
            self_query=False,
            softmax_scale=5.0),
        loss=dict(
            type='DualViewFeatureLoss',
            spatial_weight=0.08,
            frequency_weight=0.06)),
    logit_kd=dict(type='LogitKDLoss', tau=1.0, alpha=0.5),
    input_size=224)
