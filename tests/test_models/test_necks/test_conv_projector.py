import pytest
import torch
import torch.nn.functional as F

from mmscalekd.models.necks import ConvProjector


def build(student_size, query_size):
    torch.manual_seed(0)
    projector = ConvProjector(8, 16, student_size, query_size)
    projector.eval()  # BatchNorm with its running statistics
    with torch.no_grad():
        projector.norm.running_mean.normal_()
        projector.norm.running_var.uniform_(0.5, 2.0)
    return projector


def bn_conv(projector, x):
    """BN(Conv3x3(x)) written out, eval-mode BatchNorm."""
    norm = projector.norm
    y = F.conv2d(x, projector.conv.weight, padding=1)
    scale = norm.weight / torch.sqrt(norm.running_var + norm.eps)
    return (y - norm.running_mean[:, None, None]) * scale[:, None, None] + \
        norm.bias[:, None, None]


def test_same_grid_gives_bn_conv_tokens_row_major():
    projector = build(4, 4)
    x = torch.randn(2, 8, 4, 4)
    tokens = projector(x)
    assert tokens.shape == (2, 16, 16)
    expected = bn_conv(projector, x)
    # Token 5 is row 1, column 1.
    torch.testing.assert_close(tokens[:, 5], expected[:, :, 1, 1])


def test_larger_student_grid_is_average_pooled_onto_the_teacher_grid():
    projector = build(8, 4)
    x = torch.randn(2, 8, 8, 8)
    tokens = projector(x)
    y = bn_conv(projector, x)
    # Teacher cell (0, 1) covers student rows 0-1, columns 2-3.
    torch.testing.assert_close(tokens[:, 1], y[:, :, 0:2, 2:4].mean((2, 3)))


def test_grid_that_does_not_divide_is_resampled_bilinearly():
    projector = build(6, 4)
    x = torch.randn(1, 8, 6, 6)
    tokens = projector(x)
    expected = F.interpolate(bn_conv(projector, x), (4, 4), mode='bilinear',
                             align_corners=False)
    torch.testing.assert_close(tokens, expected.flatten(2).transpose(1, 2))


def test_takes_no_queries():
    projector = build(4, 4)
    assert projector.takes_queries is False
    with pytest.raises(ValueError, match='no queries'):
        projector(torch.randn(1, 8, 4, 4), torch.randn(1, 16, 16))
