# The digits pair's teacher: a small plain ViT trained from scratch on the
# digits.
# Same data and optimizer as the students; a longer schedule, since a ViT
# without pre-training needs more epochs than a CNN to fit.
_base_ = ['./_base_/digits_recipe.py', './_base_/digits_models.py']
model = {{_base_.teacher_model}}

teacher_epochs = 40
param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=True, begin=0, end=2,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', by_epoch=True, begin=2,
         end=teacher_epochs, eta_min=1e-5, convert_to_iter_based=True),
]
train_cfg = dict(max_epochs=teacher_epochs, val_interval=10)
