# Ablation of the projector (method section 1): the released Swin-L ->
# ResNet-50 run with a conventional projector, BN(Conv3x3) resampled to the
# teacher's grid, in both stages instead of the cross attention projector.
# Teacher parameter perception stays on; a ConvProjector takes no queries,
# so the final stage does not use P_sp / P_fr.
_base_ = ['./scalekd_swin-l_resnet50_8xb32_in1k.py']

model = dict(
    perception_stage=dict(projector=dict(_delete_=True, type='ConvProjector')),
    final_stage=dict(projector=dict(_delete_=True, type='ConvProjector')))
