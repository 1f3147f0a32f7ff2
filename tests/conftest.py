"""Tiny real models (mmpretrain Swin and ResNet) shared by the tests."""
import copy
import os.path as osp

import pytest
import torch

import mmscalekd  # noqa: F401  (registers the package)

REPO_ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
SMOKE_CONFIG = osp.join(REPO_ROOT, 'configs', 'smoke',
                        'scalekd_smoke_synthetic.py')

NUM_CLASSES = 4
IMAGE_SIZE = 64


def tiny_swin_teacher(drop_path_rate=0.1, **backbone):
    """Swin with 4 stages on 64 px: 16, 8, 4, 2 tokens a side."""
    backbone_cfg = dict(
        type='SwinTransformer',
        arch=dict(embed_dims=16, depths=[1, 1, 2, 1], num_heads=[1, 2, 2, 4]),
        img_size=IMAGE_SIZE,
        window_size=2,
        drop_path_rate=drop_path_rate)
    backbone_cfg.update(backbone)
    return dict(
        type='ImageClassifier',
        backbone=backbone_cfg,
        neck=dict(type='GlobalAveragePooling'),
        head=dict(
            type='LinearClsHead', num_classes=NUM_CLASSES, in_channels=128))


def tiny_resnet_student():
    return dict(
        type='ImageClassifier',
        backbone=dict(type='ResNet', depth=18, base_channels=8),
        neck=dict(type='GlobalAveragePooling'),
        head=dict(
            type='LinearClsHead',
            num_classes=NUM_CLASSES,
            in_channels=64,
            loss=dict(type='CrossEntropyLoss'),
            topk=(1, )))


def distiller_cfg(**overrides):
    cfg = dict(
        type='ScaleKDDistiller',
        student=tiny_resnet_student(),
        teacher=dict(config=tiny_swin_teacher(), checkpoint=None),
        perception_stage=dict(
            student_tap='backbone.layer3',
            teacher_split=2,
            num_heads=2,
            spatial_weight=0.08,
            frequency_weight=0.06),
        final_stage=dict(
            student_tap='backbone.layer4',
            num_heads=4,
            self_query=False,
            spatial_weight=0.08,
            frequency_weight=0.06),
        logit_kd=dict(type='LogitKDLoss', tau=1.0, alpha=0.5),
        input_size=IMAGE_SIZE,
        data_preprocessor=dict(
            num_classes=NUM_CLASSES, mean=[127.5] * 3, std=[64.0] * 3))
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(cfg.get(key), dict):
            cfg[key] = {**cfg[key], **value}
        else:
            cfg[key] = value
    return copy.deepcopy(cfg)


def build_distiller(**overrides):
    from mmpretrain.registry import MODELS
    torch.manual_seed(0)
    return MODELS.build(distiller_cfg(**overrides))


def make_batch(batch_size=4, seed=0):
    """A (data_preprocessor-ready) batch as mmengine data loaders give it."""
    from mmpretrain.structures import DataSample
    generator = torch.Generator().manual_seed(seed)
    images = torch.randint(
        0, 256, (batch_size, 3, IMAGE_SIZE, IMAGE_SIZE),
        generator=generator, dtype=torch.uint8)
    samples = [
        DataSample().set_gt_label(i % NUM_CLASSES) for i in range(batch_size)
    ]
    return dict(inputs=list(images), data_samples=samples)


@pytest.fixture
def distiller():
    return build_distiller()
