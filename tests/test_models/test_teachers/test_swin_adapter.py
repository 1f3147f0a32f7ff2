import pytest
import torch

from mmpretrain.registry import MODELS

from mmscalekd.models.teachers import (SwinTeacherAdapter,
                                       build_teacher_adapter)
from tests.conftest import IMAGE_SIZE, tiny_resnet_student, tiny_swin_teacher
from tests.test_models.test_teachers.contract import StagedAdapterContract


def build_teacher(**backbone):
    torch.manual_seed(0)
    teacher = MODELS.build(tiny_swin_teacher(**backbone))
    teacher.init_weights()
    return teacher.eval()


@pytest.mark.parametrize('split_index', [0, 1, 2])
@pytest.mark.parametrize('backbone', [
    dict(),
    dict(out_indices=(1, 2, 3)),
    dict(use_abs_pos_embed=True),
])
@torch.no_grad()
def test_rest_of_teacher_reproduces_its_output(split_index, backbone):
    teacher = build_teacher(**backbone)
    adapter = build_teacher_adapter(teacher, split_index)
    assert isinstance(adapter, SwinTeacherAdapter)
    inputs = torch.randn(2, 3, IMAGE_SIZE, IMAGE_SIZE)
    outputs = adapter(inputs)

    # The adapter's walk is the classifier's own forward ...
    assert torch.equal(outputs.final_feature, teacher.backbone(inputs)[-1])
    assert torch.equal(outputs.logits, teacher(inputs, mode='tensor'))
    # ... and the rest of the teacher on its own split-point tokens gives
    # exactly its final feature.
    rest = adapter.forward_rest(outputs.split_tokens, outputs.split_size)
    assert torch.equal(rest, outputs.final_feature)

    side = IMAGE_SIZE // 4 // 2**split_index
    assert outputs.split_size == (side, side)
    assert outputs.split_tokens.shape == (2, side * side,
                                          32 * 2**split_index)
    assert outputs.final_feature.shape == (2, 256, 2, 2)


class TestContract(StagedAdapterContract):
    build_teacher = staticmethod(build_teacher)
    image_size = IMAGE_SIZE
    gradient_split = 2


def test_unsupported_family_names_supported_ones_and_interface():
    teacher = MODELS.build(tiny_resnet_student())
    with pytest.raises(TypeError) as error:
        build_teacher_adapter(teacher, 2)
    message = str(error.value)
    assert 'ResNet' in message and 'SwinTransformer' in message
    assert 'TeacherAdapter' in message and 'forward_rest' in message


def test_unknown_adapter_name():
    with pytest.raises(KeyError, match='model.teacher.adapter'):
        build_teacher_adapter(build_teacher(), 2, 'NoSuchAdapter')
