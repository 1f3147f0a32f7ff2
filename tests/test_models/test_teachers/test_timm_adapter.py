import pytest
import torch

from mmpretrain.registry import MODELS

from mmscalekd.models.teachers import (TimmSwinTeacherAdapter,
                                       TimmVisionTransformerTeacherAdapter,
                                       build_teacher_adapter)
from tests.test_models.test_teachers.contract import (
    assert_gradient_flows_through_frozen_rest, assert_rest_depends_on_the_tokens)

# Tiny timm models with random weights (``pretrained`` stays False: nothing
# is downloaded), wrapped in mmpretrain's TimmClassifier.
NUM_CLASSES = 5
VIT_IMAGE_SIZE = 64  # 16 px patches: a 4x4 grid
VIT_GRID = 4
SWIN_IMAGE_SIZE = 64  # 4 px patches: 16, 8, 4, 2 tokens a side


def timm_teacher(model_name, **kwargs):
    return dict(
        type='TimmClassifier',
        model_name=model_name,
        num_classes=NUM_CLASSES,
        **kwargs)


def tiny_vit(model_name, **kwargs):
    kwargs = dict(
        img_size=VIT_IMAGE_SIZE,
        patch_size=VIT_IMAGE_SIZE // VIT_GRID,
        embed_dim=32,
        depth=4,
        num_heads=2,
        **kwargs)
    return timm_teacher(model_name, **kwargs)


def build_teacher(cfg):
    torch.manual_seed(0)
    teacher = MODELS.build(cfg)
    teacher.init_weights()
    return teacher.eval()


# name: (config, number of prefix tokens)
VITS = {
    'vit-class_token': (tiny_vit('vit_tiny_patch16_224'), 1),
    # Average pooling over patches, fc_norm, register tokens, any image
    # size (the patch embedding gives channels-last maps).
    'vit-avg-registers-dynamic_size': (tiny_vit(
        'vit_tiny_patch16_224',
        global_pool='avg',
        fc_norm=True,
        reg_tokens=2,
        dynamic_img_size=True), 3),
    # No prefix token at all, attention-pooling head, layer scale.
    'vit-map_pool-no_class_token': (tiny_vit(
        'test_vit3', class_token=False, reg_tokens=0), 0),
    'deit-distilled': (tiny_vit('deit_tiny_distilled_patch16_224'), 2),
    # DeiT III: the position embedding skips the class token.
    'deit3': (tiny_vit('deit3_small_patch16_224'), 1),
}


def tiny_swin(**kwargs):
    return timm_teacher(
        'swin_tiny_patch4_window7_224',
        img_size=SWIN_IMAGE_SIZE,
        embed_dim=16,
        depths=(1, 1, 2, 1),
        num_heads=(1, 2, 4, 8),
        window_size=2,
        **kwargs)


@pytest.mark.parametrize('split_index', [0, 1, 2])
@pytest.mark.parametrize('name', sorted(VITS))
@torch.no_grad()
def test_vit_rest_reproduces_its_output(name, split_index):
    cfg, num_prefix = VITS[name]
    teacher = build_teacher(cfg)
    adapter = build_teacher_adapter(teacher, split_index)
    assert type(adapter) is TimmVisionTransformerTeacherAdapter
    inputs = torch.randn(2, 3, VIT_IMAGE_SIZE, VIT_IMAGE_SIZE)
    outputs = adapter(inputs)

    assert torch.equal(outputs.logits, teacher(inputs, mode='tensor'))
    assert outputs.logits.shape == (2, NUM_CLASSES)
    assert outputs.logits.abs().max() > 0
    rest = adapter.forward_rest(outputs.split_tokens, outputs.split_size,
                                outputs.split_extra_tokens)
    assert torch.equal(rest, outputs.final_feature)

    # The final feature is timm's own normed patch tokens as a map.
    features = teacher.model.forward_features(inputs)
    assert torch.equal(
        outputs.final_feature.flatten(2).transpose(1, 2),
        features[:, num_prefix:])

    assert outputs.split_size == (VIT_GRID, VIT_GRID)
    assert outputs.split_tokens.shape == (2, VIT_GRID * VIT_GRID, 32)
    if num_prefix:
        assert outputs.split_extra_tokens.shape == (2, num_prefix, 32)
    else:
        assert outputs.split_extra_tokens is None
    assert outputs.final_feature.shape == (2, 32, VIT_GRID, VIT_GRID)


@torch.no_grad()
def test_vit_split_tokens_are_the_blocks_output():
    teacher = build_teacher(VITS['deit-distilled'][0])
    inputs = torch.randn(2, 3, VIT_IMAGE_SIZE, VIT_IMAGE_SIZE)
    outputs = build_teacher_adapter(teacher, 1)(inputs)
    # timm's own intermediate output of block 1, with its prefix tokens.
    patch, prefix = teacher.model.forward_intermediates(
        inputs, indices=[1], return_prefix_tokens=True, output_fmt='NLC',
        intermediates_only=True)[0]
    assert torch.equal(outputs.split_tokens, patch)
    assert torch.equal(outputs.split_extra_tokens, prefix)


@pytest.mark.parametrize('split_index', [0, 1, 2])
@pytest.mark.parametrize('kwargs', [dict(), dict(global_pool='')])
@torch.no_grad()
def test_swin_rest_reproduces_its_output(split_index, kwargs):
    teacher = build_teacher(tiny_swin(**kwargs))
    adapter = build_teacher_adapter(teacher, split_index)
    assert type(adapter) is TimmSwinTeacherAdapter
    inputs = torch.randn(2, 3, SWIN_IMAGE_SIZE, SWIN_IMAGE_SIZE)
    outputs = adapter(inputs)

    assert torch.equal(outputs.logits, teacher(inputs, mode='tensor'))
    rest = adapter.forward_rest(outputs.split_tokens, outputs.split_size,
                                outputs.split_extra_tokens)
    assert torch.equal(rest, outputs.final_feature)
    assert torch.equal(
        outputs.final_feature,
        teacher.model.forward_features(inputs).permute(0, 3, 1, 2))

    side = SWIN_IMAGE_SIZE // 4 // 2**split_index
    assert outputs.split_size == (side, side)
    assert outputs.split_tokens.shape == (2, side * side,
                                          16 * 2**split_index)
    assert outputs.split_extra_tokens is None
    assert outputs.final_feature.shape == (2, 128, 2, 2)


@pytest.mark.parametrize('cfg', [VITS['vit-class_token'][0], tiny_swin()])
@torch.no_grad()
def test_rest_depends_on_the_tokens(cfg):
    assert_rest_depends_on_the_tokens(
        build_teacher_adapter(build_teacher(cfg), 1), 64)


@pytest.mark.parametrize('cfg', [VITS['deit-distilled'][0], tiny_swin()])
def test_gradient_flows_through_frozen_rest(cfg):
    assert_gradient_flows_through_frozen_rest(
        build_teacher_adapter(build_teacher(cfg), 1), 64)


def test_vit_rest_needs_the_prefix_tokens():
    adapter = build_teacher_adapter(build_teacher(VITS['deit3'][0]), 1)
    with pytest.raises(ValueError, match='split_extra_tokens'):
        adapter.forward_rest(
            torch.randn(1, VIT_GRID * VIT_GRID, 32), (VIT_GRID, VIT_GRID))


@pytest.mark.parametrize('split_index', [-1, 3, 8])
@pytest.mark.parametrize('cfg,unit', [(VITS['vit-class_token'][0], 'block'),
                                      (tiny_swin(), 'stage')])
def test_split_out_of_range(cfg, unit, split_index):
    message = rf'teacher_split={split_index}`.*timm .* 4 {unit}s.*\[0, 2\]'
    with pytest.raises(ValueError, match=message):
        build_teacher_adapter(build_teacher(cfg), split_index)


def test_unsupported_timm_model_names_supported_families():
    teacher = build_teacher(timm_teacher('test_resnet'))
    with pytest.raises(TypeError) as error:
        build_teacher_adapter(teacher, 1)
    message = str(error.value)
    assert 'TimmClassifier model ResNet' in message
    for name in ('timm.VisionTransformer', 'timm.VisionTransformerDistilled',
                 'timm.SwinTransformer', 'SwinTransformer',
                 'SwinTransformerV2', 'ConvNeXt', 'BEiTViT'):
        assert f"'{name}'" in message
    assert 'TeacherAdapter' in message and 'forward_rest' in message
