# The recipe of the quick start's study of the paper's setting
# (tools/quickstart.py): the digits pair's recipe (digits_recipe.py) on the
# digits split by source image (mmscalekd/datasets/digits_pool.py, written
# to data/digits_pool), whose images are already 16 px. Students train on
# the small labelled `train` split (150 images, 5 steps an epoch); settings
# are chosen on `val`; the verdict is given on `test`. The teachers'
# pre-training pools are in vit-tiny-p2_digits-pool_teacher.py.
_base_ = ['./digits_recipe.py']

data_root = 'data/digits_pool'
image_size = 16

train_pipeline = [
    dict(type='LoadImageFromFile'),
    # a shift of up to 1 px: handwriting is not always centred
    dict(type='RandomCrop', crop_size=image_size, padding=1),
    dict(type='PackInputs'),
]
test_pipeline = [dict(type='LoadImageFromFile'), dict(type='PackInputs')]

train_dataloader = dict(
    batch_size=30,
    dataset=dict(
        data_root=data_root,
        classes=data_root + '/meta/classes.txt',
        pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=250,
    dataset=dict(
        data_root=data_root,
        classes=data_root + '/meta/classes.txt',
        pipeline=test_pipeline))
test_dataloader = dict(
    batch_size=250,
    dataset=dict(
        data_root=data_root,
        ann_file='meta/test.txt',
        classes=data_root + '/meta/classes.txt',
        pipeline=test_pipeline))

max_epochs = 60
# The global batch the lr is meant for: one process x 30 images.
auto_scale_lr = dict(base_batch_size=30)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=True, begin=0, end=5,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', by_epoch=True, begin=5, end=max_epochs,
         eta_min=1e-5, convert_to_iter_based=True),
]
train_cfg = dict(max_epochs=max_epochs, val_interval=1000)
default_hooks = dict(logger=dict(interval=50))
