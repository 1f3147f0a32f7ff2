# The one recipe every model of the digits pair trains with: the bundled digits
# (real 8x8 scans, written by tools/dataset_converters/prepare_digits.py),
# upsampled to 16 px, with a light random translation; AdamW, cosine schedule.
# Teacher, student alone, logit KD and ScaleKD differ only in `model`.
_base_ = [
    'mmpretrain::_base_/default_runtime.py',
    '../../_base_/scalekd_runtime.py'
]

data_root = 'data/digits'
num_classes = 10
image_size = 16

data_preprocessor = dict(
    num_classes=num_classes,
    mean=[127.5, 127.5, 127.5],
    std=[127.5, 127.5, 127.5],
    to_rgb=False)

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=image_size, interpolation='bicubic'),
    # a shift of up to 1 px (half an original pixel): handwriting is not
    # always centred
    dict(type='RandomCrop', crop_size=image_size, padding=1),
    dict(type='PackInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=image_size, interpolation='bicubic'),
    dict(type='PackInputs'),
]

# Data loaded in the main process (num_workers=0): no worker processes to
# keep, so persistent_workers is off (mmpretrain's tools/train.py and ours
# turn it on where the config does not say).
train_dataloader = dict(
    batch_size=64,
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
    batch_size=128,
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
test_dataloader = val_dataloader
test_evaluator = val_evaluator

max_epochs = 15
optim_wrapper = dict(
    optimizer=dict(type='AdamW', lr=2e-3, weight_decay=0.05),
    clip_grad=dict(max_norm=5.0))
# The global batch the lr is meant for: one process x 64 images
# (`--auto-scale-lr` scales it to another).
auto_scale_lr = dict(base_batch_size=64)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=True, begin=0, end=1,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', by_epoch=True, begin=1, end=max_epochs,
         eta_min=1e-5, convert_to_iter_based=True),
]
train_cfg = dict(by_epoch=True, max_epochs=max_epochs, val_interval=5)
val_cfg = dict()
test_cfg = dict()

default_hooks = dict(
    logger=dict(type='LoggerHook', interval=10),
    checkpoint=dict(type='CheckpointHook', interval=-1, save_last=True,
                    max_keep_ckpts=1))
randomness = dict(seed=0, deterministic=False)
