import pytest
import torch

from mmpretrain.registry import MODELS

from mmscalekd.models.teachers import (SwinV2TeacherAdapter,
                                       build_teacher_adapter)
from tests.test_models.test_teachers.contract import StagedAdapterContract

# A tiny 4-stage Swin V2 on 64 px images: 16, 8, 4, 2 tokens a side and
# 32, 64, 128, 256 channels, windows of 2.
IMAGE_SIZE = 64
NUM_CLASSES = 5


def build_teacher(extra_norm_every_n_blocks=0, **backbone):
    cfg = dict(
        type='ImageClassifier',
        backbone=dict(
            type='SwinTransformerV2',
            arch=dict(
                embed_dims=32,
                depths=[1, 1, 2, 1],
                num_heads=[1, 2, 4, 8],
                extra_norm_every_n_blocks=extra_norm_every_n_blocks),
            img_size=IMAGE_SIZE,
            window_size=[2, 2, 2, 2],
            **backbone),
        neck=dict(type='GlobalAveragePooling'),
        head=dict(
            type='LinearClsHead', num_classes=NUM_CLASSES, in_channels=256))
    torch.manual_seed(0)
    teacher = MODELS.build(cfg)
    teacher.init_weights()
    return teacher.eval()


@pytest.mark.parametrize('split_index', [0, 1, 2])
@pytest.mark.parametrize('backbone', [
    dict(),
    dict(out_indices=(1, 2, 3)),
    dict(use_abs_pos_embed=True),
    dict(extra_norm_every_n_blocks=1),
])
@torch.no_grad()
def test_rest_of_teacher_reproduces_its_output(split_index, backbone):
    teacher = build_teacher(**backbone)
    adapter = build_teacher_adapter(teacher, split_index)
    assert isinstance(adapter, SwinV2TeacherAdapter)
    inputs = torch.randn(2, 3, IMAGE_SIZE, IMAGE_SIZE)
    outputs = adapter(inputs)

    # The adapter's walk is the classifier's own forward ...
    assert torch.equal(outputs.final_feature, teacher.backbone(inputs)[-1])
    assert torch.equal(outputs.logits, teacher(inputs, mode='tensor'))
    # ... and the rest of the teacher on its own split-point tokens gives
    # exactly its final feature.
    rest = adapter.forward_rest(outputs.split_tokens, outputs.split_size,
                                outputs.split_extra_tokens)
    assert torch.equal(rest, outputs.final_feature)

    side = IMAGE_SIZE // 4 // 2**split_index
    assert outputs.split_size == (side, side)
    assert outputs.split_tokens.shape == (2, side * side,
                                          32 * 2**split_index)
    assert outputs.split_extra_tokens is None
    assert outputs.final_feature.shape == (2, 256, 2, 2)


class TestContract(StagedAdapterContract):
    build_teacher = staticmethod(build_teacher)
    image_size = IMAGE_SIZE
