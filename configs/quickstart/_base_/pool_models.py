# The networks of the quick start's study of the paper's setting. Both cut
# the 16 px digits into 2x2 patches: 8x8 tokens, so that a feature map has
# 64 positions and the frequency view (the map without its mean) differs
# from the spatial one. The teacher is a plain ViT (64 wide, 4 blocks); the
# student an MLP-Mixer half as wide, the family with the paper's largest
# gains (Mixer-S/16 +4.61, Mixer-B/16 +5.52 points).
teacher_model = dict(
    type='ImageClassifier',
    backbone=dict(
        type='VisionTransformer',
        arch=dict(
            embed_dims=64, num_layers=4, num_heads=4,
            feedforward_channels=256),
        img_size=16,
        patch_size=2,
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
        patch_size=2),
    neck=dict(type='GlobalAveragePooling', dim=1),
    head=dict(
        type='LinearClsHead',
        num_classes=10,
        in_channels=32,
        loss=dict(type='CrossEntropyLoss'),
        topk=(1, )))
