# The networks of the quick start's study of the paper's setting: the digits
# pair's (digits_models.py) on 2x2 patches of the 16 px digits, so 8x8
# tokens: a feature map has 64 positions, and the frequency view (the map
# without its mean) differs from the spatial one. The teacher is a plain ViT
# (64 wide, 4 blocks); the student an MLP-Mixer half as wide, the family
# with the paper's largest gains (Mixer-S/16 +4.61, Mixer-B/16 +5.52 points).
_base_ = ['./digits_models.py']
teacher_model = dict(backbone=dict(patch_size=2))
student_model = dict(backbone=dict(patch_size=2))
