"""The automatic choice of a teacher adapter (the contract of every family
is checked in test_adapter_contract.py)."""
import pytest

from mmpretrain.registry import MODELS

from mmscalekd.models.teachers import build_teacher_adapter
from tests.conftest import tiny_resnet_student
from tests.test_models.test_teachers.families import CASES


def test_unsupported_family_names_supported_ones_and_interface():
    teacher = MODELS.build(tiny_resnet_student())
    with pytest.raises(TypeError) as error:
        build_teacher_adapter(teacher, 2)
    message = str(error.value)
    assert 'ResNet' in message and 'SwinTransformer' in message
    assert 'TeacherAdapter' in message and 'forward_rest' in message


def test_unknown_adapter_name():
    with pytest.raises(KeyError, match='model.teacher.adapter'):
        build_teacher_adapter(CASES['swin'].build(), 2, 'NoSuchAdapter')
