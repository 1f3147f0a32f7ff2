# Baseline: ResNet-50 (mmpretrain RSB-A2: LAMB, 300 epochs, strong
# augmentation), trained alone with the same recipe as its ScaleKD configs (the
# reference point of the paper's gains).
# The paper's ScaleKD result with a Swin-L teacher, 82.03, is +3.39 over
# this baseline (method page, section 6).
_base_ = ['mmpretrain::resnet/resnet50_8xb256-rsb-a2-300e_in1k.py']
custom_imports = dict(imports=['mmscalekd'], allow_failed_imports=False)
runner_type = 'ScaleKDRunner'
