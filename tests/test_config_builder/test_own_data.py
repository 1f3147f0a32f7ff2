"""The user's own image folder: its data values, the teacher fine-tune
(route a), feature-only distillation from a teacher of other classes (route
b) and image sizes other than 224."""
import copy
import glob
import json
import os.path as osp
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from mmengine.config import Config
from mmengine.hooks import Hook
from mmengine.runner import Runner
from PIL import Image

import mmpretrain
from mmpretrain.registry import DATASETS, MODELS
from mmpretrain.structures import DataSample

from mmscalekd.config_builder.own_data import (image_folder_data,
                                               teacher_finetune_config)
from mmscalekd.models.teachers import load_frozen_teacher, load_teacher_weights
from tests.conftest import REPO_ROOT, run_command, tiny_resnet_student

CLASSES = ('cat', 'dog', 'fox')


def write_image_folder(root, classes=CLASSES, splits=('train', 'val'),
                       per_class=4, size=32):
    """PNG images, ``root/<split>/<class>/<i>.png``; each class its own
    colour (plus noise), so that a few steps can tell them apart."""
    rng = np.random.default_rng(0)
    for split in splits:
        for label, name in enumerate(classes):
            folder = root / split / name
            folder.mkdir(parents=True)
            colour = np.array([80 * label % 256, 255 - 90 * label, 60])
            for index in range(per_class):
                pixels = colour + rng.integers(-20, 20, (size, size, 3))
                Image.fromarray(pixels.clip(0, 255).astype(np.uint8)).save(
                    folder / f'{index}.png')
    return str(root)


def vit_teacher(num_classes=1000, img_size=224, patch_size=16):
    """A tiny mmpretrain ViT classifier (64 wide, 4 blocks)."""
    return dict(
        type='ImageClassifier',
        backbone=dict(
            type='VisionTransformer',
            arch=dict(embed_dims=64, num_layers=4, num_heads=4,
                      feedforward_channels=128),
            img_size=img_size, patch_size=patch_size),
        neck=None,
        head=dict(type='VisionTransformerClsHead', num_classes=num_classes,
                  in_channels=64))


def swin_teacher(num_classes=1000, window_size=7):
    """A tiny mmpretrain Swin classifier (4 stages, 32 to 256 wide)."""
    return dict(
        type='ImageClassifier',
        backbone=dict(
            type='SwinTransformer',
            arch=dict(embed_dims=32, depths=[1, 1, 2, 1],
                      num_heads=[1, 2, 4, 8]),
            window_size=window_size),
        neck=dict(type='GlobalAveragePooling'),
        head=dict(type='LinearClsHead', num_classes=num_classes,
                  in_channels=256))


def student(num_classes=3):
    """A tiny ResNet-18 (stage 3: 64 channels, stage 4: 128)."""
    cfg = tiny_resnet_student()
    cfg['head']['num_classes'] = num_classes
    return cfg


def feature_distiller(teacher, input_size, split, num_classes=3,
                      teacher_input_size=None):
    """Feature-only ScaleKD (``logit_kd=None``): student stage 3 to the
    teacher's tokens after ``split``, stage 4 to its final tokens."""
    return dict(
        type='ScaleKDDistiller',
        student=student(num_classes),
        teacher=dict(config=teacher, checkpoint=None,
                     input_size=teacher_input_size),
        perception_stage=dict(
            student_tap='backbone.layer3', teacher_split=split,
            projector=dict(type='CrossAttentionProjector', num_heads=2),
            loss=dict(type='DualViewFeatureLoss')),
        final_stage=dict(
            student_tap='backbone.layer4',
            projector=dict(type='CrossAttentionProjector', num_heads=4,
                           self_query=False),
            loss=dict(type='DualViewFeatureLoss')),
        logit_kd=None,
        input_size=input_size,
        data_preprocessor=dict(num_classes=num_classes, mean=[127.5] * 3,
                               std=[64.0] * 3))


def training_step(distiller, size, num_classes=3):
    """The losses of one batch of two random images."""
    images = torch.randint(0, 256, (2, 3, size, size), dtype=torch.uint8,
                           generator=torch.Generator().manual_seed(0))
    samples = [DataSample().set_gt_label(i % num_classes) for i in range(2)]
    data = distiller.data_preprocessor(
        dict(inputs=list(images), data_samples=samples), training=True)
    return data['inputs'], distiller(**data, mode='loss')


def finetune_run(tmp_path, cfg, name):
    """mmengine's Runner for a fine-tune config dict (mmpretrain alone)."""
    cfg = Config(copy.deepcopy(cfg))
    cfg.work_dir = str(tmp_path / name)
    cfg.experiment_name = f'finetune_{name}'
    cfg.default_hooks.logger = dict(type='LoggerHook', interval=1)
    return Runner.from_cfg(cfg)


class StartWeights(Hook):
    """The model's weights when training starts (after their init)."""

    def before_train(self, runner):
        self.weights = {
            k: v.clone()
            for k, v in runner.model.state_dict().items()
        }


@pytest.fixture
def teacher_file(tmp_path):
    """A ViT classifier of 10 classes, as if pre-trained, and its file."""
    torch.manual_seed(0)
    network = MODELS.build(vit_teacher(num_classes=10, img_size=32,
                                       patch_size=8))
    path = tmp_path / 'teacher_10_classes.pth'
    torch.save(dict(state_dict=network.state_dict()), path)
    return str(path), network.state_dict()


# ------------------------------------------------------ image_folder_data
def test_image_folder_data_reads_each_split(tmp_path):
    root = write_image_folder(tmp_path / 'images', per_class=3, size=40)
    data = image_folder_data(root, input_size=24, batch_size=4,
                             num_workers=0)
    assert data['num_classes'] == 3
    assert data['classes'] == list(CLASSES)
    assert data['train_dataloader']['batch_size'] == 4
    assert data['val_evaluator'] == dict(type='Accuracy', topk=(1, ))
    for key, split in (('train_dataloader', 'train'),
                       ('val_dataloader', 'val'),
                       ('test_dataloader', 'val')):
        dataset = DATASETS.build(data[key]['dataset'])
        assert len(dataset) == 9
        assert dataset.metainfo['classes'] == CLASSES
        assert sorted(dataset.get_gt_labels().tolist()) == [0] * 3 + [
            1
        ] * 3 + [2] * 3
        assert all(f'/{split}/' in dataset.get_data_info(i)['img_path']
                   for i in range(len(dataset)))
        # random resized crop (train) or resize + centre crop: input_size
        assert tuple(dataset[0]['inputs'].shape) == (3, 24, 24)
    assert data['train_dataloader']['sampler']['shuffle'] is True
    assert data['val_dataloader']['sampler']['shuffle'] is False


def test_image_folder_data_uses_the_test_split(tmp_path):
    root = write_image_folder(tmp_path / 'images', per_class=2)
    write_image_folder(tmp_path / 'images', splits=('test', ), per_class=1)
    data = image_folder_data(root, input_size=16)
    dataset = DATASETS.build(data['test_dataloader']['dataset'])
    assert len(dataset) == 3
    assert all('/test/' in dataset.get_data_info(i)['img_path']
               for i in range(3))


def test_image_folder_data_top5_from_five_classes(tmp_path):
    classes = [f'class_{i}' for i in range(5)]
    root = write_image_folder(tmp_path / 'images', classes=classes,
                              per_class=1, size=8)
    data = image_folder_data(root)
    assert data['num_classes'] == 5
    assert data['val_evaluator'] == dict(type='Accuracy', topk=(1, 5))
    assert data['test_evaluator'] == dict(type='Accuracy', topk=(1, 5))


# ------------------------------------------- route (a): fine-tune a teacher
def test_head_finetune_trains_only_the_new_head(tmp_path, teacher_file):
    path, weights = teacher_file
    data = image_folder_data(write_image_folder(tmp_path / 'images'),
                             input_size=32, batch_size=4, num_workers=0)
    cfg = teacher_finetune_config(vit_teacher(10, 32, 8), path, data,
                                  mode='head', epochs=1)
    assert cfg['model']['head']['num_classes'] == 3
    assert cfg['model']['backbone']['init_cfg'] == dict(
        type='Pretrained', checkpoint=path, prefix='backbone.')
    runner = finetune_run(tmp_path, cfg, 'head')
    start = StartWeights()
    runner.register_hook(start)
    runner.train()
    trained = runner.model.state_dict()
    backbone = [k for k in weights if k.startswith('backbone.')]
    # the run started from the file's backbone and kept it
    assert backbone and all(torch.equal(start.weights[k], weights[k])
                            for k in backbone)
    assert all(torch.equal(trained[k], weights[k]) for k in backbone)
    # the new head trained from its own initialisation
    head = 'head.layers.head.weight'
    assert tuple(trained[head].shape) == (3, 64)
    assert not torch.equal(trained[head], start.weights[head])
    # the result is a teacher for a distillation config, loaded strictly
    config_file = str(tmp_path / 'teacher-finetune.py')
    Config(cfg).dump(config_file)
    checkpoint = osp.join(runner.work_dir, 'epoch_1.pth')
    load_teacher_weights(MODELS.build(Config.fromfile(config_file).model),
                         checkpoint)
    teacher = load_frozen_teacher(config_file, checkpoint)
    assert tuple(teacher.logits(torch.zeros(2, 3, 32, 32)).shape) == (2, 3)


def test_full_finetune_trains_the_backbone_at_a_tenth_of_the_lr(
        tmp_path, teacher_file):
    path, weights = teacher_file
    data = image_folder_data(write_image_folder(tmp_path / 'images'),
                             input_size=32, batch_size=4, num_workers=0)
    head = teacher_finetune_config(vit_teacher(10, 32, 8), path, data)
    cfg = teacher_finetune_config(vit_teacher(10, 32, 8), path, data,
                                  mode='full', epochs=1)
    assert 'paramwise_cfg' not in cfg['optim_wrapper']
    assert cfg['optim_wrapper']['optimizer']['lr'] == pytest.approx(
        head['optim_wrapper']['optimizer']['lr'] / 10)
    runner = finetune_run(tmp_path, cfg, 'full')
    runner.train()
    trained = runner.model.state_dict()
    key = 'backbone.layers.0.ffn.layers.0.0.weight'
    assert not torch.equal(trained[key], weights[key])


def test_finetune_of_an_mmpretrain_config_keeps_its_recipe(tmp_path):
    source = 'mmpretrain::swin_transformer/swin-tiny_16xb64_in1k.py'
    torch.manual_seed(0)
    from mmengine.hub import get_config
    network = MODELS.build(get_config(source).model)
    path = tmp_path / 'swin-tiny.pth'
    torch.save(dict(state_dict=network.state_dict()), path)
    data = image_folder_data(write_image_folder(tmp_path / 'images',
                                                per_class=1, size=8))
    cfg = teacher_finetune_config(source, str(path), data, epochs=3)
    # the recipe's optimizer at its lr, the model's head for 3 classes
    assert cfg['optim_wrapper']['optimizer']['type'] == 'AdamW'
    assert cfg['optim_wrapper']['optimizer']['lr'] == 1e-3
    assert cfg['optim_wrapper']['paramwise_cfg'] == dict(custom_keys=dict(
        backbone=dict(lr_mult=0.0, decay_mult=0.0),
        neck=dict(lr_mult=0.0, decay_mult=0.0)))
    assert cfg['model']['head']['num_classes'] == 3
    assert cfg['data_preprocessor']['num_classes'] == 3
    assert cfg['train_cfg']['max_epochs'] == 3
    assert [s['type'] for s in cfg['param_scheduler']] == [
        'LinearLR', 'CosineAnnealingLR'
    ]
    assert cfg['param_scheduler'][1]['end'] == 3
    assert cfg['train_dataloader'] == data['train_dataloader']
    assert cfg['auto_scale_lr'] == dict(base_batch_size=32)


# ------------------------------ route (b): a teacher of other classes, no KD
@pytest.mark.parametrize('teacher_classes', [1000, 10])
def test_feature_only_distils_a_teacher_of_other_classes(teacher_classes):
    torch.manual_seed(0)
    distiller = MODELS.build(
        feature_distiller(vit_teacher(teacher_classes), 64, split=1))
    assert tuple(distiller.teacher.logits(
        torch.zeros(1, 3, 64, 64)).shape) == (1, teacher_classes)
    _, losses = training_step(distiller, 64)
    assert sorted(k for k in losses if k.startswith('loss')) == [
        'loss_cls', 'loss_final_frequency', 'loss_final_spatial',
        'loss_perception_frequency', 'loss_perception_spatial'
    ]
    # without logit KD the student's own loss keeps weight 1
    assert tuple(distiller.student.head.fc.weight.shape) == (3, 128)
    inputs, losses = training_step(distiller, 64)
    logits = distiller.student(inputs, mode='tensor')
    assert losses['loss_cls'].item() == pytest.approx(
        F.cross_entropy(logits, torch.tensor([0, 1])).item(), rel=1e-5)
    feature = sum(v for k, v in losses.items() if 'perception' in k)
    feature.backward()
    projector = distiller.perception_stage.projectors['spatial']
    assert all(p.grad is not None and bool(p.grad.abs().sum() > 0)
               for p in projector.parameters() if p.requires_grad)


# ------------------------------------------------------- other image sizes
@pytest.mark.parametrize('size', [64, 96])
def test_vit_teacher_at_other_sizes_interpolates_its_position_embedding(
        size):
    torch.manual_seed(0)
    # position embedding for 224 px (14 x 14 patches of 16 px)
    distiller = MODELS.build(feature_distiller(vit_teacher(), size, split=1))
    assert tuple(distiller.teacher.network.backbone.pos_embed.shape) == (
        1, 1 + 14 * 14, 64)
    inputs, losses = training_step(distiller, size)
    outputs = distiller.teacher(inputs)
    grid = size // 16
    assert tuple(outputs.split_tokens.shape) == (2, grid * grid, 64)
    assert tuple(outputs.final_feature.shape) == (2, 64, grid, grid)
    assert all(bool(torch.isfinite(v)) for k, v in losses.items()
               if k.startswith('loss'))


@pytest.mark.parametrize('size', [64, 96])
def test_swin_teacher_at_other_sizes(size):
    """A Swin whose window fits the small maps sees the images at their
    size; one with the released 7 x 7 window sees them resized to 224
    (``model.teacher.input_size``)."""
    torch.manual_seed(0)
    small_window = MODELS.build(
        feature_distiller(swin_teacher(window_size=2), size, split=2))
    inputs, losses = training_step(small_window, size)
    outputs = small_window.teacher(inputs)
    # stage 3 tokens: 4 px patches merged twice
    assert tuple(outputs.split_tokens.shape) == (2, (size // 16)**2, 128)
    assert tuple(outputs.final_feature.shape) == (2, 256, size // 32,
                                                   size // 32)
    assert all(bool(torch.isfinite(v)) for k, v in losses.items()
               if k.startswith('loss'))

    released_window = MODELS.build(
        feature_distiller(swin_teacher(), size, split=2,
                          teacher_input_size=224))
    inputs, losses = training_step(released_window, size)
    outputs = released_window.teacher(inputs)
    assert tuple(outputs.split_tokens.shape) == (2, 14 * 14, 128)
    assert tuple(outputs.final_feature.shape) == (2, 256, 7, 7)
    assert all(bool(torch.isfinite(v)) for k, v in losses.items()
               if k.startswith('loss'))


@pytest.mark.parametrize('size, options, key, smallest', [
    (64, {}, r'model\.input_size=\(64, 64\)', 193),
    (224, dict(teacher_input_size=96),
     r'model\.teacher\.input_size=\(96, 96\)', 193),
])
def test_swin_refuses_images_smaller_than_its_windows(size, options, key,
                                                      smallest):
    with pytest.raises(ValueError, match=(
            key + r'.* token map in stage 3, smaller than its window_size=7'
            rf'.*{smallest} px a side and more.*model\.teacher\.input_size'
            r'.*pad_small_map=True')):
        MODELS.build(feature_distiller(swin_teacher(), size, split=2,
                                       **options))


def test_smallest_swin_size_named_in_the_message_works():
    torch.manual_seed(0)
    distiller = MODELS.build(feature_distiller(swin_teacher(), 64, split=2,
                                               teacher_input_size=193))
    outputs = distiller.teacher(torch.zeros(1, 3, 64, 64))
    assert tuple(outputs.final_feature.shape) == (1, 256, 7, 7)


# ------------------------------------------------------------ end to end
MMPRETRAIN_TRAIN = osp.join(osp.dirname(mmpretrain.__file__), '.mim', 'tools',
                            'train.py')

# The tiny teacher and student at 32 px as the builder takes them: config
# files (the student's with its recipe). ViT patches of 8 (4 x 4 tokens),
# ResNet stage 3 at 2 x 2, stage 4 at 1 x 1.
_TEACHER = '''model = {model!r}
'''
_STUDENT = '''_base_ = ['mmpretrain::_base_/default_runtime.py']
model = {model!r}
data_preprocessor = dict(num_classes=3, mean=[123.675, 116.28, 103.53],
                         std=[58.395, 57.12, 57.375], to_rgb=True)
optim_wrapper = dict(optimizer=dict(type='AdamW', lr=1e-3))
param_scheduler = []
train_cfg = dict(by_epoch=True, max_epochs=1, val_interval=1)
val_cfg = dict()
test_cfg = dict()
default_hooks = dict(checkpoint=dict(type='CheckpointHook', interval=1))
'''

# Inference with mmpretrain alone: mmscalekd must not even be importable
# in this process for the student to count as standalone.
_INFERENCE = '''
import json, sys
sys.modules['mmscalekd'] = None
from mmpretrain.apis import ImageClassificationInferencer
config, weights, images = sys.argv[1], sys.argv[2], sys.argv[3:]
inferencer = ImageClassificationInferencer(config, pretrained=weights,
                                           device='cpu')
results = inferencer(images)
# on a line of its own: the progress bar may end without a newline
print('\\n' + json.dumps([dict(scores=len(r['pred_scores']),
                              label=r['pred_label']) for r in results]))
'''


@pytest.mark.slow
def test_finetune_config_trains_with_mmpretrains_own_tool(
        tmp_path, teacher_file):
    path, _ = teacher_file
    data = image_folder_data(write_image_folder(tmp_path / 'images'),
                             input_size=32, batch_size=4, num_workers=0)
    config = str(tmp_path / 'teacher-finetune.py')
    Config(teacher_finetune_config(vit_teacher(10, 32, 8), path, data,
                                   epochs=1)).dump(config)
    run_command([sys.executable, MMPRETRAIN_TRAIN, config, '--work-dir',
                 str(tmp_path / 'run')])
    checkpoint = tmp_path / 'run' / 'epoch_1.pth'
    load_teacher_weights(MODELS.build(Config.fromfile(config).model),
                         str(checkpoint))


@pytest.mark.slow
def test_own_images_from_teacher_finetune_to_standalone_student(
        tmp_path, teacher_file):
    """Route (a) on an image folder: fine-tune a teacher of 10 classes on 3,
    distil a student from it, extract the student, predict with mmpretrain
    alone."""
    path, _ = teacher_file
    root = write_image_folder(tmp_path / 'images', per_class=8)
    teacher = tmp_path / 'vit.py'
    teacher.write_text(_TEACHER.format(model=vit_teacher(10, 32, 8)))
    resnet = tmp_path / 'resnet.py'
    resnet.write_text(_STUDENT.format(model=student(3)))
    tools = osp.join(REPO_ROOT, 'tools')
    run_command([
        sys.executable, osp.join(tools, 'misc', 'scalekd_config.py'),
        '--teacher', str(teacher), '--teacher-checkpoint', path,
        '--student', str(resnet), '--data-root', root, '--input-size',
        '32', '--batch-size', '8', '--finetune-teacher', 'head',
        '--finetune-epochs', '2', '--out-dir', 'own'], cwd=str(tmp_path))
    own = tmp_path / 'own'
    scalekd = Config.fromfile(str(own / 'scalekd_vit_resnet.py'))
    # the distillation takes the fine-tuned teacher, with the user's classes
    assert scalekd.model.teacher == dict(
        config=str(own / 'teacher-finetune_vit_resnet.py'),
        checkpoint='work_dirs/teacher-finetune_vit_resnet/epoch_2.pth')
    assert scalekd.model.logit_kd.type == 'LogitKDLoss'
    assert scalekd.train_dataloader.dataset.data_root == root

    train = osp.join(tools, 'train.py')
    run_command([sys.executable, train,
                 'own/teacher-finetune_vit_resnet.py'], cwd=str(tmp_path))
    run_command([sys.executable, train, 'own/scalekd_vit_resnet.py'],
                cwd=str(tmp_path))
    student_run = tmp_path / 'work_dirs' / 'scalekd_vit_resnet'
    run_command([
        sys.executable,
        osp.join(tools, 'model_converters', 'extract_student.py'),
        'own/scalekd_vit_resnet.py', str(student_run / 'epoch_1.pth'),
        str(tmp_path / 'extracted')
    ], cwd=str(tmp_path))

    images = sorted(glob.glob(osp.join(root, 'val', '*', '*.png')))
    result = subprocess.run(
        [sys.executable, '-c', _INFERENCE,
         str(tmp_path / 'extracted' / 'student_config.py'),
         str(tmp_path / 'extracted' / 'student.pth'), *images],
        cwd=str(tmp_path), capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    predictions = json.loads(result.stdout.strip().splitlines()[-1])
    assert len(predictions) == len(images) == 24
    assert all(p['scores'] == 3 and p['label'] in (0, 1, 2)
               for p in predictions)
