"""Student taps (maps, tokens, Swin stage tuples) -> (N, C, H, W) maps."""
import pytest
import torch
from torch import nn

from mmscalekd.models.utils import StudentFeatureReader, tokens_to_map


def test_tokens_to_map_is_row_major_and_drops_extra_tokens():
    n, extra, h, w, c = 2, 1, 3, 4, 5
    tokens = torch.randn(n, extra + h * w, c)
    feature = tokens_to_map(tokens, (h, w), extra)
    assert feature.shape == (n, c, h, w)
    for i, j in [(0, 0), (1, 2), (2, 3)]:
        torch.testing.assert_close(feature[:, :, i, j],
                                   tokens[:, extra + i * w + j])


def test_maps_pass_through():
    feature = torch.randn(2, 8, 4, 4)
    assert StudentFeatureReader()(feature, (64, 64), 'final') is feature


def test_grid_is_inferred_from_a_non_square_input():
    # 16 px patches on a 64 x 32 image: a 4 x 2 grid, after 2 extra tokens.
    tokens = torch.randn(1, 2 + 8, 6)
    feature = StudentFeatureReader(extra_tokens=2)(tokens, (64, 32),
                                                   'perception')
    assert feature.shape == (1, 6, 4, 2)
    torch.testing.assert_close(feature[0, :, 3, 1], tokens[0, -1])


def test_swin_stage_tuple_gives_its_own_grid():
    tokens = torch.randn(2, 12, 7)
    feature = StudentFeatureReader()((tokens, (3, 4)), (999, 999), 'final')
    assert feature.shape == (2, 7, 3, 4)


def test_explicit_grid_wins():
    tokens = torch.randn(1, 1 + 6, 3)
    reader = StudentFeatureReader(grid=(2, 3), extra_tokens=1)
    assert reader(tokens, (224, 224), 'final').shape == (1, 3, 2, 3)


def test_extra_tokens_are_read_off_the_student_backbone():
    student = nn.Module()
    student.backbone = nn.Module()
    student.backbone.num_extra_tokens = 2
    assert StudentFeatureReader.from_student(student).extra_tokens == 2
    assert StudentFeatureReader.from_student(
        student, dict(extra_tokens=0)).extra_tokens == 0
    student.backbone = nn.Identity()  # a CNN: no extra tokens
    assert StudentFeatureReader.from_student(student).extra_tokens == 0


def test_pooled_vector_is_refused_naming_the_tap():
    with pytest.raises(ValueError, match=r'final_stage\.student_tap.*'
                       r'feature map.*\(2, 8\)'):
        StudentFeatureReader()(torch.randn(2, 8), (64, 64), 'final')


def test_tokens_that_fit_no_grid_name_the_config_key():
    # 1 class token not declared: 17 tokens fit no grid of a 64 px image.
    with pytest.raises(ValueError, match=r'17 tokens.*extra_tokens=0.*'
                       r'model\.student_tokens=dict\(grid'):
        StudentFeatureReader()(torch.randn(1, 17, 4), (64, 64), 'perception')
    with pytest.raises(ValueError, match=r'grid \(3, 3\)'):
        StudentFeatureReader(grid=3)(torch.randn(1, 16, 4), (64, 64),
                                     'final')


def test_bad_config_values_name_the_key():
    with pytest.raises(KeyError, match=r'\[.grids.\].*student_tokens'):
        StudentFeatureReader.from_student(nn.Module(), dict(grids=(2, 2)))
    with pytest.raises(ValueError, match=r'student_tokens\.grid'):
        StudentFeatureReader(grid=(0, 4))
    with pytest.raises(ValueError, match=r'student_tokens\.extra_tokens=-1'):
        StudentFeatureReader(extra_tokens=-1)


@pytest.mark.parametrize('kwargs,error,message', [
    (dict(grid='14'), TypeError, r"student_tokens\.grid='14'` must be a "
     r'positive integer or an \(H, W\) pair'),
    (dict(grid=(14.5, 14)), TypeError, r'student_tokens\.grid=\(14\.5, 14\)'),
    (dict(grid=(14, )), ValueError, r'student_tokens\.grid=\(14,\)'),
    (dict(extra_tokens='1'), TypeError,
     r"student_tokens\.extra_tokens='1'` must be an integer >= 0"),
    (dict(extra_tokens=1.5), TypeError,
     r'student_tokens\.extra_tokens=1\.5` must be an integer'),
])
def test_config_values_of_the_wrong_type_name_the_key(kwargs, error, message):
    with pytest.raises(error, match=message):
        StudentFeatureReader(**kwargs)
