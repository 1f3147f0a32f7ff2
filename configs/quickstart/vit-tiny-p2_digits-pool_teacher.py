# The quick start's teacher, pre-trained on a pool of digits the students
# never see: 6 variants of each pool image (mmscalekd/datasets/digits_pool.py).
# tools/quickstart.py trains it on the 25, 50 and 100% pools
# (`train_dataloader.dataset.ann_file`), each for the same number of steps,
# so that the teachers differ in what they saw, not in how long they
# trained.
_base_ = ['./_base_/pool_recipe.py', './_base_/pool_models.py']
model = {{_base_.teacher_model}}

train_dataloader = dict(
    batch_size=64, dataset=dict(ann_file='meta/pool_100.txt'))
# 80 steps an epoch on the 100% pool: 960 steps.
teacher_epochs = 12
auto_scale_lr = dict(base_batch_size=64)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=True, begin=0, end=1,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', by_epoch=True, begin=1,
         end=teacher_epochs, eta_min=1e-5, convert_to_iter_based=True),
]
train_cfg = dict(max_epochs=teacher_epochs)
