# Baseline: ViT-B/14 (DeiT-B with 14 px patches, 16x16 tokens at 224 px,
# matching the EVA-L/14 teacher grid) with the DeiT-B recipe, trained alone
# with the same recipe as its ScaleKD configs (the reference point of the
# paper's gains).
# Paper top-1 alone: not reported on the method page.
_base_ = ['mmpretrain::deit/deit-base_16xb64_in1k.py']
custom_imports = dict(imports=['mmscalekd'], allow_failed_imports=False)
runner_type = 'ScaleKDRunner'

model = dict(backbone=dict(patch_size=14))

# The optimizer update as one fused kernel: the same update, measured
# faster (docs/benchmarks.md).
optim_wrapper = dict(optimizer=dict(fused=True))
