import pytest
import torch

from mmpretrain.registry import MODELS

from mmscalekd.models.teachers import (ConvNeXtTeacherAdapter,
                                       build_teacher_adapter)
from tests.test_models.test_teachers.contract import StagedAdapterContract

# A tiny 4-stage ConvNeXt on 64 px images: 16, 8, 4, 2 pixels a side and
# 16, 32, 48, 64 channels.
IMAGE_SIZE = 64
CHANNELS = [16, 32, 48, 64]
NUM_CLASSES = 5


def convnext_teacher(**backbone):
    # mmpretrain's ConvNeXt recipe: with the default
    # gap_before_final_norm=True the backbone pools itself, so no neck.
    neck = None
    if not backbone.get('gap_before_final_norm', True):
        neck = dict(type='GlobalAveragePooling')
    return dict(
        type='ImageClassifier',
        backbone=dict(
            type='ConvNeXt',
            arch=dict(depths=[1, 1, 2, 1], channels=CHANNELS),
            **backbone),
        neck=neck,
        head=dict(
            type='LinearClsHead',
            num_classes=NUM_CLASSES,
            in_channels=CHANNELS[-1]))


def build_teacher(**backbone):
    torch.manual_seed(0)
    teacher = MODELS.build(convnext_teacher(**backbone))
    teacher.init_weights()
    return teacher.eval()


@pytest.mark.parametrize('split_index', [0, 1, 2])
@pytest.mark.parametrize('backbone', [
    dict(),
    dict(out_indices=(1, 3)),
    dict(gap_before_final_norm=False),
    dict(gap_before_final_norm=False, out_indices=(2, 3)),
    dict(use_grn=True, linear_pw_conv=False),
])
@torch.no_grad()
def test_rest_of_teacher_reproduces_its_output(split_index, backbone):
    teacher = build_teacher(**backbone)
    adapter = build_teacher_adapter(teacher, split_index)
    assert isinstance(adapter, ConvNeXtTeacherAdapter)
    inputs = torch.randn(2, 3, IMAGE_SIZE, IMAGE_SIZE)
    outputs = adapter(inputs)

    assert torch.equal(outputs.logits, teacher(inputs, mode='tensor'))
    rest = adapter.forward_rest(outputs.split_tokens, outputs.split_size,
                                outputs.split_extra_tokens)
    assert torch.equal(rest, outputs.final_feature)
    if not teacher.backbone.gap_before_final_norm:
        assert torch.equal(outputs.final_feature,
                           teacher.backbone(inputs)[-1])

    side = IMAGE_SIZE // 4 // 2**split_index
    assert outputs.split_size == (side, side)
    assert outputs.split_tokens.shape == (2, side * side,
                                          CHANNELS[split_index])
    assert outputs.split_extra_tokens is None
    assert outputs.final_feature.shape == (2, CHANNELS[-1], 2, 2)


@torch.no_grad()
def test_split_tokens_are_the_stage_output_row_major():
    """Token h * W + w is pixel (h, w) of the stage's output map, checked
    against the backbone's own (normalised) output of that stage."""
    teacher = build_teacher(gap_before_final_norm=False, out_indices=(1, 3))
    inputs = torch.randn(2, 3, IMAGE_SIZE, IMAGE_SIZE)
    outputs = build_teacher_adapter(teacher, 1)(inputs)
    stage_map = outputs.split_tokens.view(2, 8, 8, CHANNELS[1]).permute(
        0, 3, 1, 2).contiguous()
    assert torch.equal(
        teacher.backbone.norm1(stage_map),
        teacher.backbone(inputs)[0])


@torch.no_grad()
def test_final_feature_is_raw_when_only_the_pooled_vector_is_normalised():
    """With the released default ``gap_before_final_norm=True`` the backbone
    normalises only the pooled vector, so the final feature is the last
    stage's raw map; the same weights with the flag off normalise every
    position, and the final feature is that normalised map."""
    pooled = build_teacher()
    mapped = build_teacher(gap_before_final_norm=False)
    mapped.backbone.load_state_dict(pooled.backbone.state_dict())
    last_stage = []
    hook = pooled.backbone.stages[-1].register_forward_hook(
        lambda module, args, output: last_stage.append(output))
    inputs = torch.randn(2, 3, IMAGE_SIZE, IMAGE_SIZE)
    raw = build_teacher_adapter(pooled, 2)(inputs).final_feature
    hook.remove()
    assert torch.equal(raw, last_stage[0])
    normed = build_teacher_adapter(mapped, 2)(inputs).final_feature
    assert torch.equal(normed, mapped.backbone.norm3(raw))
    assert not torch.allclose(raw, normed)


class TestContract(StagedAdapterContract):
    build_teacher = staticmethod(build_teacher)
    image_size = IMAGE_SIZE
