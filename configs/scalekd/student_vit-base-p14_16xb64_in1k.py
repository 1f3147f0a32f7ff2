# Baseline: ViT-B/14 (DeiT-B with 14 px patches, 16x16 tokens at 224 px,
# matching the EVA-L/14 teacher grid) with the DeiT-B recipe, trained alone
# with the same recipe as its ScaleKD configs (the reference point of the
# paper's gains).
# Paper top-1 alone: not reported on the method page.
_base_ = ['mmpretrain::deit/deit-base_16xb64_in1k.py']
# configs/_base_/scalekd_runtime.py, spelt out after the recipe's own
# custom_hooks (EMA): mmengine refuses a key that two bases both set.
custom_imports = dict(imports=['mmscalekd'], allow_failed_imports=False)
custom_hooks = [
    dict(type='EMAHook', momentum=4e-5, priority='ABOVE_NORMAL'),
    dict(type='WorkDirHook'),
    dict(type='CheckpointCheckHook'),
    dict(type='FiniteCheckHook'),
    dict(type='DataCheckHook'),
    dict(type='TeacherValHook'),
]
work_dir_lock = dict(stale_after=600, refresh_every=30)

model = dict(backbone=dict(patch_size=14))

# The optimizer update as one fused kernel: the same update, measured
# faster (docs/benchmarks.md).
optim_wrapper = dict(optimizer=dict(fused=True))
