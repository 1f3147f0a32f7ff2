# The recipe of the quick start's study of the paper's setting
# (tools/quickstart.py): the digits split by source image
# (mmscalekd/datasets/digits_pool.py, written to data/digits_pool), every
# image 16 px. Students train on the small labelled `train` split; settings
# are chosen on `val`; the verdict is given on `test`. The teachers'
# pre-training pools are in vit-tiny-p2_digits-pool_teacher.py.
_base_ = [
    'mmpretrain::_base_/default_runtime.py',
    '../../_base_/scalekd_runtime.py'
]

data_root = 'data/digits_pool'
num_classes = 10
image_size = 16

data_preprocessor = dict(
    num_classes=num_classes,
    mean=[127.5, 127.5, 127.5],
    std=[127.5, 127.5, 127.5],
    to_rgb=False)

train_pipeline = [
    dict(type='LoadImageFromFile'),
    # a shift of up to 1 px: handwriting is not always centred
    dict(type='RandomCrop', crop_size=image_size, padding=1),
    dict(type='PackInputs'),
]
test_pipeline = [dict(type='LoadImageFromFile'), dict(type='PackInputs')]


# Data loaded in the main process (num_workers=0): the images are tiny and
# a worker process would cost more than it saves on 2 cores.
train_dataloader = dict(
    batch_size=30,
    num_workers=0,
    persistent_workers=False,
    dataset=dict(
        type='CustomDataset',
        data_root=data_root,
        ann_file='meta/train.txt',
        data_prefix='images',
        classes=data_root + '/meta/classes.txt',
        pipeline=train_pipeline),
    sampler=dict(type='DefaultSampler', shuffle=True))
val_dataloader = dict(
    batch_size=250,
    num_workers=0,
    persistent_workers=False,
    dataset=dict(
        type='CustomDataset',
        data_root=data_root,
        ann_file='meta/val.txt',
        data_prefix='images',
        classes=data_root + '/meta/classes.txt',
        pipeline=test_pipeline),
    sampler=dict(type='DefaultSampler', shuffle=False))
val_evaluator = dict(type='Accuracy', topk=(1, ))
test_dataloader = dict(
    batch_size=250,
    num_workers=0,
    persistent_workers=False,
    dataset=dict(
        type='CustomDataset',
        data_root=data_root,
        ann_file='meta/test.txt',
        data_prefix='images',
        classes=data_root + '/meta/classes.txt',
        pipeline=test_pipeline),
    sampler=dict(type='DefaultSampler', shuffle=False))
test_evaluator = val_evaluator

# 150 images, 5 steps an epoch.
max_epochs = 60
optim_wrapper = dict(
    optimizer=dict(type='AdamW', lr=2e-3, weight_decay=0.05),
    clip_grad=dict(max_norm=5.0))
# The global batch the lr is meant for: one process x 30 images.
auto_scale_lr = dict(base_batch_size=30)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=True, begin=0, end=5,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', by_epoch=True, begin=5, end=max_epochs,
         eta_min=1e-5, convert_to_iter_based=True),
]
train_cfg = dict(by_epoch=True, max_epochs=max_epochs, val_interval=1000)
val_cfg = dict()
test_cfg = dict()

default_hooks = dict(
    logger=dict(type='LoggerHook', interval=50),
    checkpoint=dict(type='CheckpointHook', interval=-1, save_last=True,
                    max_keep_ckpts=1))
randomness = dict(seed=0, deterministic=False)
