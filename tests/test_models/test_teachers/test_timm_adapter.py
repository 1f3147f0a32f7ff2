"""timm teachers in mmpretrain's TimmClassifier: where the split is, and
which models are served (the contract of every family is checked in
test_adapter_contract.py)."""
import pytest
import torch

from mmpretrain.registry import MODELS

from mmscalekd.models.teachers import build_teacher_adapter
from tests.test_models.test_teachers.families import (CASES, TIMM_SIZE,
                                                      timm_teacher)


def build_teacher(cfg):
    torch.manual_seed(0)
    teacher = MODELS.build(cfg)
    teacher.init_weights()
    return teacher.eval()


@torch.no_grad()
def test_vit_split_tokens_are_the_blocks_output():
    teacher = build_teacher(CASES['timm_deit-distilled'].config)
    inputs = torch.randn(2, 3, TIMM_SIZE, TIMM_SIZE)
    outputs = build_teacher_adapter(teacher, 1)(inputs)
    # timm's own intermediate output of block 1, with its prefix tokens.
    patch, prefix = teacher.model.forward_intermediates(
        inputs, indices=[1], return_prefix_tokens=True, output_fmt='NLC',
        intermediates_only=True)[0]
    assert torch.equal(outputs.split_tokens, patch)
    assert torch.equal(outputs.split_extra_tokens, prefix)


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
