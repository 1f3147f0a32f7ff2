"""Feature taps of every student family, through the distiller.

Each student is a tiny member of its family on the 64 px smoke images (tiny
Swin teacher); the taps named in the config must reach the projectors as
(N, C, H, W) maps of the stage-3 / stage-4 (or block) shapes, tokens of ViT,
Mixer and Swin students included.
"""
import pytest
import torch

from tests.conftest import IMAGE_SIZE, NUM_CLASSES, build_distiller, make_batch

# Each builds several distillers: about 50 s a module on 2 cores.
pytestmark = pytest.mark.slow


def _classifier(backbone, channels, neck=dict(type='GlobalAveragePooling'),
                head='LinearClsHead'):
    return dict(
        type='ImageClassifier',
        backbone=backbone,
        neck=neck,
        head=dict(type=head, num_classes=NUM_CLASSES, in_channels=channels))


_VIT = dict(embed_dims=32, num_layers=2, num_heads=2, feedforward_channels=64)

# student, perception tap, final tap, perception (C, H, W), final (C, H, W)
STUDENTS = {
    'resnet': (_classifier(dict(type='ResNet', depth=18, base_channels=16),
                           128), 'backbone.layer3', 'backbone.layer4',
               (64, 4, 4), (128, 2, 2)),
    'resnet-d': (_classifier(
        dict(type='ResNetV1d', depth=18, base_channels=16), 128),
        'backbone.layer3', 'backbone.layer4', (64, 4, 4), (128, 2, 2)),
    'convnext': (_classifier(
        dict(type='ConvNeXt', arch=dict(depths=[1, 1, 1, 1],
                                        channels=[8, 16, 32, 64])), 64,
        neck=None), 'backbone.stages.2', 'backbone.stages.3', (32, 4, 4),
        (64, 2, 2)),
    'mobilenet-v2': (_classifier(
        dict(type='MobileNetV2', widen_factor=0.25), 1280),
        'backbone.layer5', 'backbone.layer7', (24, 4, 4), (80, 2, 2)),
    'mobilenet-v3': (_classifier(
        dict(type='MobileNetV3', arch='small'), 576),
        'backbone.layer8', 'backbone.layer11', (48, 4, 4), (96, 2, 2)),
    'timm-mobilenet-v1': (_classifier(
        dict(type='TimmStudentBackbone', model_name='mobilenetv1_100'), 1024,
        neck=None), 'backbone.model.blocks.3', 'backbone.model.blocks.4',
        (512, 4, 4), (1024, 2, 2)),
    'timm-mixer': (_classifier(
        dict(type='TimmStudentBackbone', model_name='mixer_s16_224',
             model_kwargs=dict(img_size=IMAGE_SIZE)), 512, neck=None),
        'backbone.model.blocks.5', 'backbone.model.blocks.7', (512, 4, 4),
        (512, 4, 4)),
    'mixer': (_classifier(
        dict(type='MlpMixer', img_size=IMAGE_SIZE, patch_size=16,
             arch=dict(embed_dims=32, num_layers=2, tokens_mlp_dims=16,
                       channels_mlp_dims=64)), 32,
        neck=dict(type='GlobalAveragePooling', dim=1)),
        'backbone.layers.0', 'backbone.layers.1', (32, 4, 4), (32, 4, 4)),
    'deit': (_classifier(
        dict(type='VisionTransformer', arch=_VIT, img_size=IMAGE_SIZE,
             patch_size=16), 32, neck=None,
        head='VisionTransformerClsHead'),
        'backbone.layers.0', 'backbone.layers.1', (32, 4, 4), (32, 4, 4)),
    'deit-distilled': (_classifier(
        dict(type='DistilledVisionTransformer', arch=_VIT,
             img_size=IMAGE_SIZE, patch_size=16), 32, neck=None,
        head='DeiTClsHead'),
        'backbone.layers.0', 'backbone.layers.1', (32, 4, 4), (32, 4, 4)),
    'swin': (_classifier(
        dict(type='SwinTransformer', img_size=IMAGE_SIZE, window_size=2,
             arch=dict(embed_dims=16, depths=[1, 1, 1, 1],
                       num_heads=[1, 1, 2, 2])), 128),
        'backbone.stages.2', 'backbone.stages.3', (64, 4, 4), (128, 2, 2)),
}


@pytest.mark.parametrize('name', list(STUDENTS))
def test_taps_reach_the_projectors_as_maps(name):
    student, tap3, tap4, shape3, shape4 = STUDENTS[name]
    distiller = build_distiller(
        student=student,
        perception_stage=dict(student_tap=tap3),
        final_stage=dict(student_tap=tap4))
    data = distiller.data_preprocessor(make_batch(2), True)
    inputs = distiller.projector_inputs(data['inputs'])
    assert inputs['perception_spatial'][0].shape == (2, *shape3)
    assert inputs['final_spatial'][0].shape == (2, *shape4)
    losses = distiller.loss(data['inputs'], data['data_samples'])
    assert all(torch.isfinite(v).all() for v in losses.values())
    assert losses['loss_perception_spatial'] > 0


def test_vit_tokens_drop_the_class_token_in_row_major_order():
    """The map is the patch tokens of the tapped block, class token out."""
    student = STUDENTS['deit'][0]
    distiller = build_distiller(
        student=student,
        perception_stage=dict(student_tap='backbone.layers.0'),
        final_stage=dict(student_tap='backbone.layers.1'))
    recorded = {}
    distiller.student.backbone.layers[0].register_forward_hook(
        lambda module, args, output: recorded.setdefault('tokens', output))
    data = distiller.data_preprocessor(make_batch(2), False)
    feature = distiller.projector_inputs(data['inputs'])[
        'perception_spatial'][0]
    tokens = recorded['tokens']  # (N, 1 + 16, C)
    assert tokens.shape == (2, 17, 32)
    torch.testing.assert_close(feature[:, :, 1, 2], tokens[:, 1 + 1 * 4 + 2])


def test_explicit_student_tokens_are_checked_against_the_taps():
    with pytest.raises(ValueError, match=r'student_tokens'):
        build_distiller(
            student=STUDENTS['deit'][0],
            perception_stage=dict(student_tap='backbone.layers.0'),
            final_stage=dict(student_tap='backbone.layers.1'),
            student_tokens=dict(extra_tokens=0))
