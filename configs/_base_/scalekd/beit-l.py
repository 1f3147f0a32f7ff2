# What the ScaleKD configs with the BEiT-L teacher
# (configs/scalekd/scalekd_beit-l_*) share; each places these in its
# distiller (`{{_base_.beit_l_family.<key>}}`). They are read when a config
# is parsed: to change a run, set the distiller's keys (e.g.
# `model.teacher.checkpoint`), not these.
beit_l_family = dict(
    # The paper's BEiT-L is EVA-L/14. mmpretrain's 224 px model of it
    # (16x16 patches) sees the students' 224 px images, as the authors'
    # teacher does; the 196 px checkpoint loads into it strictly (`BEiTViT`
    # resizes its position embedding). `model.teacher.input_size=196`
    # would show it its own resolution instead.
    eva_large=dict(
        config='mmpretrain::_base_/models/eva/eva-l.py',
        checkpoint='https://download.openmmlab.com/mmclassification/v0/eva/'
        'eva-l-p14_mim-in21k-pre_3rdparty_in1k-196px_20221213-b730c7e7.pth',
        # CLIP's, which EVA-L was trained with (docs/recipes.md)
        mean=[122.7709383, 116.7460125, 104.09373615],
        std=[68.5005327, 66.6321579, 70.32316305]),
    # After block 22 of 24: the perception stage is compared there and runs
    # blocks 23-24 on the student's projections (teacher parameter
    # perception), which the final stage is compared with.
    teacher_split=21,
    feature_loss=dict(
        type='DualViewFeatureLoss', spatial_weight=0.016,
        frequency_weight=0.008),
    logit_kd=dict(type='LogitKDLoss', tau=1.0, alpha=0.5))
