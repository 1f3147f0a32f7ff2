"""FrozenTeacher: the teacher sees its own normalisation and resolution."""
import pytest
import torch
import torch.nn.functional as F

from mmscalekd.models.teachers import load_frozen_teacher, teacher_normalization
from tests.conftest import tiny_swin_teacher

IMAGENET = dict(mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375])
CLIP = dict(mean=[122.7709383, 116.7460125, 104.09373615],
            std=[68.5005327, 66.6321579, 70.32316305])


def data_normalization(mean, std):
    return (torch.tensor(mean).view(3, 1, 1), torch.tensor(std).view(3, 1, 1))


def build(config=None, **kwargs):
    torch.manual_seed(0)
    return load_frozen_teacher(config or tiny_swin_teacher(), None, split=2,
                               **kwargs)


def test_eva_config_gives_clip_normalisation():
    """mmpretrain's EVA-L/14 196px config: CLIP mean/std, not ImageNet's
    (read from the config, no model built)."""
    trained = teacher_normalization(
        'mmpretrain::eva/eva-l-p14_8xb16_in1k-196px.py')
    torch.testing.assert_close(torch.tensor(trained['mean']),
                               torch.tensor(CLIP['mean']))
    torch.testing.assert_close(torch.tensor(trained['std']),
                               torch.tensor(CLIP['std']))
    swin = teacher_normalization(
        'mmpretrain::swin_transformer/swin-large_16xb64_in1k.py')
    assert swin == IMAGENET


def test_images_are_renormalised_for_a_teacher_trained_otherwise():
    config = dict(tiny_swin_teacher(),
                  data_preprocessor=dict(type='ClsDataPreprocessor', **CLIP))
    teacher = build(config, data_normalization=data_normalization(
        **IMAGENET))
    raw = torch.rand(2, 3, 64, 64) * 255
    student_view = (raw - torch.tensor(IMAGENET['mean']).view(3, 1, 1)) / \
        torch.tensor(IMAGENET['std']).view(3, 1, 1)
    teacher_view = (raw - torch.tensor(CLIP['mean']).view(3, 1, 1)) / \
        torch.tensor(CLIP['std']).view(3, 1, 1)
    torch.testing.assert_close(teacher.prepare(student_view), teacher_view)
    with torch.no_grad():
        expected = teacher.network(teacher_view, mode='tensor')
    torch.testing.assert_close(teacher.logits(student_view), expected)
    torch.testing.assert_close(teacher(student_view).logits, expected)
    # Constants of the run, not weights: in no checkpoint.
    assert teacher.state_dict() == {}


def test_same_normalisation_leaves_the_images_untouched():
    config = dict(tiny_swin_teacher(),
                  data_preprocessor=dict(type='ClsDataPreprocessor',
                                         **IMAGENET))
    teacher = build(config, data_normalization=data_normalization(
        **IMAGENET))
    assert teacher.input_scale is None
    images = torch.randn(2, 3, 64, 64)
    assert teacher.prepare(images) is images


def test_config_keys_override_and_must_come_in_pairs():
    teacher = build(mean=CLIP['mean'], std=CLIP['std'],
                    data_normalization=data_normalization(**IMAGENET))
    torch.testing.assert_close(
        teacher.input_scale.flatten(),
        torch.tensor(IMAGENET['std']) / torch.tensor(CLIP['std']))
    with pytest.raises(KeyError, match=r'model\.teacher\.mean.*std'):
        build(mean=CLIP['mean'])


def test_teacher_sees_its_own_resolution():
    """input_size: the images are resized for the teacher, so its grids
    are those of its own resolution."""
    config = tiny_swin_teacher(pad_small_map=True)
    teacher = build(config, input_size=32)
    images = torch.randn(2, 3, 64, 64)
    outputs = teacher(images)
    own = build(config)(F.interpolate(images, (32, 32), mode='bicubic',
                                align_corners=False, antialias=True))
    assert outputs.split_size == own.split_size == (2, 2)
    torch.testing.assert_close(outputs.logits, own.logits)
    torch.testing.assert_close(outputs.final_feature, own.final_feature)


@pytest.mark.parametrize('kwargs,error,message', [
    (dict(input_size=0), ValueError, r'model\.teacher\.input_size=0`'),
    (dict(input_size='196'), TypeError, r"model\.teacher\.input_size='196'"),
    (dict(input_size=196.0), TypeError, r'model\.teacher\.input_size=196\.0'),
    (dict(input_size=(196, )), ValueError,
     r'model\.teacher\.input_size=\(196,\)'),
    (dict(dtype=16), ValueError, r'model\.teacher\.dtype=16`'),
    (dict(mean='abc', std=CLIP['std']), TypeError,
     r"model\.teacher\.mean='abc'`"),
    (dict(mean=CLIP['mean'], std=[68.5, 0, 70.3]), ValueError,
     r'model\.teacher\.std=\[68\.5, 0, 70\.3\]`'),
    (dict(mean=[0, 0, 0], std=[1, 1]), ValueError,
     r'model\.teacher\.mean=.*model\.teacher\.std='),
])
def test_config_values_of_the_wrong_type_name_the_key(kwargs, error,
                                                       message):
    with pytest.raises(error, match=message):
        build(**kwargs)
