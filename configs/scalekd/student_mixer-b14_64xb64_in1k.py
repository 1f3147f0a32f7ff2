# Baseline: MLP-Mixer B/14 (14 px patches, 16x16 tokens at 224 px) with the
# Mixer-B/16 recipe, trained alone with the same recipe as its
# ScaleKD configs (the reference point of the paper's gains).
# Paper top-1 alone: not reported on the method page.
_base_ = [
    'mmpretrain::mlp_mixer/mlp-mixer-base-p16_64xb64_in1k.py',
    '../_base_/scalekd_runtime.py'
]

model = dict(backbone=dict(patch_size=14))

# The optimizer update as one fused kernel: the same update, measured
# faster (docs/benchmarks.md).
optim_wrapper = dict(optimizer=dict(fused=True))
