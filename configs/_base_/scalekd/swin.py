# What the ScaleKD configs with a Swin teacher (configs/scalekd/scalekd_swin-*)
# share; each places these in its distiller (`{{_base_.swin_family.<key>}}`).
# They are read when a config is parsed: to change a run, set the
# distiller's keys (e.g. `model.teacher.checkpoint`), not these.
swin_family = dict(
    swin_small=dict(
        config='mmpretrain::swin_transformer/swin-small_16xb64_in1k.py',
        checkpoint='https://download.openmmlab.com/mmclassification/v0/'
        'swin-transformer/convert/swin_small_patch4_window7_224-cc7a01c9.pth'),
    swin_base=dict(
        config='mmpretrain::swin_transformer/swin-base_16xb64_in1k.py',
        checkpoint='https://download.openmmlab.com/mmclassification/v0/'
        'swin-transformer/convert/'
        'swin_base_patch4_window7_224_22kto1k-f967f799.pth'),
    swin_large=dict(
        config='mmpretrain::swin_transformer/swin-large_16xb64_in1k.py',
        checkpoint='https://download.openmmlab.com/mmclassification/v0/'
        'swin-transformer/convert/'
        'swin_large_patch4_window7_224_22kto1k-5f0996db.pth'),
    # After stage 3 (14x14 tokens at 224 px): the perception stage is
    # compared there and runs stage 4 on the student's projections (teacher
    # parameter perception), which the final stage is compared with.
    teacher_split=2,
    feature_loss=dict(
        type='DualViewFeatureLoss', spatial_weight=0.08,
        frequency_weight=0.06),
    logit_kd=dict(type='LogitKDLoss', tau=1.0, alpha=0.5))
