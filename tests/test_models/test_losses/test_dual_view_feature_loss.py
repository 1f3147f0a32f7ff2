import math

import pytest
import torch
import torch.nn.functional as F

from mmscalekd.models.losses import DualViewFeatureLoss, remove_spatial_mean


def dct_matrix(n: int) -> torch.Tensor:
    """Orthonormal DCT-II matrix: row k is the k-th basis function."""
    d = torch.empty(n, n, dtype=torch.float64)
    for k in range(n):
        scale = math.sqrt(1 / n) if k == 0 else math.sqrt(2 / n)
        for i in range(n):
            d[k, i] = scale * math.cos(math.pi * (i + 0.5) * k / n)
    return d


def remove_dc_by_dct(x: torch.Tensor) -> torch.Tensor:
    """The method's route: 2-D DCT-II per channel, zero DC, inverse DCT."""
    dh = dct_matrix(x.shape[2]).to(x.dtype)
    dw = dct_matrix(x.shape[3]).to(x.dtype)
    coefficients = dh @ x @ dw.T
    coefficients[..., 0, 0] = 0
    return dh.T @ coefficients @ dw


def mimic_by_cosine(s: torch.Tensor, t: torch.Tensor) -> float:
    """sum((normC(S) - normC(T))^2) / N by another route: for unit vectors
    |a - b|^2 = 2 - 2 cos(a, b), summed over positions."""
    cosine = F.cosine_similarity(s.double(), t.double(), dim=1, eps=0)
    return float((2 - 2 * cosine).sum() / s.shape[0])


@pytest.mark.parametrize('shape', [(2, 3, 4, 4), (3, 5, 5, 7), (1, 8, 7, 7)])
def test_mean_subtraction_equals_dct_route(shape):
    x = torch.randn(*shape, dtype=torch.float64)
    torch.testing.assert_close(
        remove_spatial_mean(x), remove_dc_by_dct(x), rtol=0, atol=1e-12)
    # and in float32, as training computes it
    torch.testing.assert_close(
        remove_spatial_mean(x.float()),
        remove_dc_by_dct(x).float(), rtol=0, atol=1e-5)


def test_losses_match_cosine_and_dct_routes():
    torch.manual_seed(0)
    student = torch.randn(3, 6, 5, 4)
    student_frequency = torch.randn(3, 6, 5, 4)
    teacher = torch.randn(3, 6, 5, 4)
    loss = DualViewFeatureLoss(spatial_weight=0.08, frequency_weight=0.06)
    out = loss(dict(spatial=student, frequency=student_frequency), teacher)

    expected_spatial = 0.08 * mimic_by_cosine(student, teacher)
    expected_frequency = 0.06 * mimic_by_cosine(
        remove_dc_by_dct(student_frequency.double()),
        remove_dc_by_dct(teacher.double()))
    assert out['loss_spatial'].item() == pytest.approx(
        expected_spatial, rel=1e-5)
    assert out['loss_frequency'].item() == pytest.approx(
        expected_frequency, rel=1e-5)


def test_known_value_by_hand():
    # One sample, two channels, 1 x 2 positions. Position 0: student (3, 4),
    # teacher (1, 0): unit vectors (0.6, 0.8) and (1, 0), distance^2
    # 0.4^2 + 0.8^2 = 0.8. Position 1: student (0, 2), teacher (0, 5): the
    # same direction, 0. The channel means over positions are (1.5, 3) and
    # (0.5, 2.5): without them, student (1.5, 1) / (-1.5, -1) and teacher
    # (0.5, -2.5) / (-0.5, 2.5): at both positions a cosine of
    # (0.75 - 2.5) / sqrt(3.25 * 6.5).
    student = torch.tensor([[[[3.0, 0.0]], [[4.0, 2.0]]]])
    teacher = torch.tensor([[[[1.0, 0.0]], [[0.0, 5.0]]]])
    out = DualViewFeatureLoss(1.0, 1.0)(student, teacher)
    assert out['loss_spatial'].item() == pytest.approx(0.8, rel=1e-6)
    cosine = -1.75 / math.sqrt(3.25 * 6.5)
    assert out['loss_frequency'].item() == pytest.approx(
        2 * (2 - 2 * cosine), rel=1e-6)


def test_sum_is_divided_by_batch_size_only():
    torch.manual_seed(0)
    student, teacher = torch.randn(2, 4, 3, 3), torch.randn(2, 4, 3, 3)
    loss = DualViewFeatureLoss(1.0, 1.0)
    single = loss(student[:1].repeat(4, 1, 1, 1), teacher[:1].repeat(
        4, 1, 1, 1))
    # Four copies of one sample give that sample's loss, not four times it.
    one = loss(student[:1], teacher[:1])
    torch.testing.assert_close(single['loss_spatial'], one['loss_spatial'])
    # Identical features: zero; opposite features: 4 per position.
    same = loss(student, student)
    assert same['loss_spatial'].item() == pytest.approx(0, abs=1e-6)
    opposite = loss(student, -student)
    assert opposite['loss_spatial'].item() == pytest.approx(
        4 * 3 * 3, rel=1e-5)


def test_frequency_view_ignores_per_channel_offsets():
    torch.manual_seed(0)
    student, teacher = torch.randn(2, 4, 5, 5), torch.randn(2, 4, 5, 5)
    offset = torch.randn(2, 4, 1, 1) * 10
    loss = DualViewFeatureLoss(1.0, 1.0)
    base, shifted = loss(student, teacher), loss(student + offset, teacher)
    torch.testing.assert_close(base['loss_frequency'],
                               shifted['loss_frequency'])
    assert not torch.allclose(base['loss_spatial'], shifted['loss_spatial'])


def test_zero_weight_switches_view_off():
    x, y = torch.randn(2, 3, 4, 4), torch.randn(2, 3, 4, 4)
    assert set(DualViewFeatureLoss(0.08, 0.0)(x, y)) == {'loss_spatial'}
    assert set(DualViewFeatureLoss(0.0, 0.06)(x, y)) == {'loss_frequency'}


@pytest.mark.parametrize('key', ['spatial_weight', 'frequency_weight'])
def test_negative_weight_is_an_error(key):
    with pytest.raises(ValueError, match=key):
        DualViewFeatureLoss(**{key: -0.1})


def test_shape_mismatch_is_an_error():
    with pytest.raises(ValueError, match='same shape'):
        DualViewFeatureLoss()(torch.randn(2, 3, 4, 4), torch.randn(2, 3, 2, 2))


@pytest.mark.parametrize('value,error,message', [
    ('0.08', TypeError, r"='0\.08'` must be a number >= 0, not a string"),
    (True, TypeError, r'=True` must be a number'),
    (None, TypeError, r'=None` must be a number'),
])
@pytest.mark.parametrize('key', ['spatial_weight', 'frequency_weight'])
def test_non_numeric_weight_is_an_error(key, value, error, message):
    with pytest.raises(error, match=key + message):
        DualViewFeatureLoss(**{key: value})
