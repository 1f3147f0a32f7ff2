# The digits pair's networks (README, "Your own teacher, student and data"),
# defined once for the configs beside it (pool_models.py puts them on 2x2
# patches). Sizes: the teacher is a plain ViT
# (64 wide, 4 blocks, 4x4 patches of the 16 px image -> 4x4 tokens); the
# student is an MLP-Mixer half as wide (32, 4 blocks, the same 4x4 tokens),
# which trained alone stays clearly below the teacher.
teacher_model = dict(
    type='ImageClassifier',
    backbone=dict(
        type='VisionTransformer',
        arch=dict(
            embed_dims=64, num_layers=4, num_heads=4,
            feedforward_channels=256),
        img_size=16,
        patch_size=4,
        drop_path_rate=0.1,
        out_type='avg_featmap'),
    neck=None,
    head=dict(
        type='LinearClsHead',
        num_classes=10,
        in_channels=64,
        loss=dict(type='LabelSmoothLoss', label_smooth_val=0.1)))

student_model = dict(
    type='ImageClassifier',
    backbone=dict(
        type='MlpMixer',
        arch=dict(
            embed_dims=32, num_layers=4, tokens_mlp_dims=32,
            channels_mlp_dims=128),
        img_size=16,
        patch_size=4),
    neck=dict(type='GlobalAveragePooling', dim=1),
    head=dict(
        type='LinearClsHead',
        num_classes=10,
        in_channels=32,
        loss=dict(type='CrossEntropyLoss'),
        topk=(1, )))
