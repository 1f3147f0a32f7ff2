# Baseline: ViT-B/14 (DeiT-B with 14 px patches, 16x16 tokens at 224 px,
# matching the EVA-L/14 teacher grid) with the DeiT-B recipe, trained alone
# with the same recipe as its ScaleKD configs (the reference point of the
# paper's gains).
# Paper top-1 alone: not reported on the method page.
_base_ = ['./student_deit-base_16xb64_in1k.py']

model = dict(backbone=dict(patch_size=14))
