# Baseline: ResNet-50 (mmpretrain, SGD, 100 epochs), trained alone with the
# same recipe as its ScaleKD configs (the reference point of the paper's
# gains).
# Paper top-1: not reported on the method page.
_base_ = ['mmpretrain::resnet/resnet50_8xb32_in1k.py']
custom_imports = dict(imports=['mmscalekd'], allow_failed_imports=False)
runner_type = 'ScaleKDRunner'

# The optimizer update as one fused kernel: the same update, measured
# faster (docs/benchmarks.md).
optim_wrapper = dict(optimizer=dict(fused=True))
