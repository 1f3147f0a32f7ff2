"""The multiply-add counter against hand counts."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mmscalekd.analysis.cost import count_macs, split_convolution


def test_counts_conv2d_by_hand():
    conv = nn.Conv2d(3, 8, 3, padding=1)
    x = torch.randn(2, 3, 10, 10, requires_grad=True)
    with torch.no_grad():
        forward = count_macs(lambda: conv(x))
    both = count_macs(lambda: conv(x).sum().backward())
    # N * Cout * Hout * Wout * Cin * k * k
    per_pass = 2 * 8 * 10 * 10 * 3 * 3 * 3
    assert forward == {'aten.convolution': per_pass}
    assert sum(both.values()) == 3 * per_pass
    # Without an input gradient (the first layer) the backward is one pass.
    x.requires_grad_(False)
    first_layer = count_macs(lambda: conv(x).sum().backward())
    assert sum(first_layer.values()) == 2 * per_pass


def test_counts_cpu_attention_by_hand():
    # torch counts its CUDA attention kernels only; the counter adds the CPU
    # one, which F.scaled_dot_product_attention runs in the projectors.
    q = torch.randn(1, 2, 5, 8, requires_grad=True)
    k = torch.randn(1, 2, 7, 8, requires_grad=True)
    v = torch.randn(1, 2, 7, 8, requires_grad=True)
    with torch.no_grad():
        forward = count_macs(lambda: F.scaled_dot_product_attention(q, k, v))
    both = count_macs(
        lambda: F.scaled_dot_product_attention(q, k, v).sum().backward())
    # Q K^T and A V per head: 2 * Lq * Lk * d. The fused backward
    # recomputes Q K^T, then forms dV, dP, dQ and dK: five such matmuls.
    per_matmul = 1 * 2 * 5 * 7 * 8
    assert sum(forward.values()) == 2 * per_matmul
    assert sum(both.values()) == 7 * per_matmul


def test_by_module_names_the_modules():
    model = nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 2))
    x = torch.randn(3, 4)
    with torch.no_grad():
        macs = count_macs(lambda: model(x), by_module=True)
    assert macs['Global'] == 3 * 4 * 6 + 3 * 6 * 2
    assert macs['Sequential.0'] == 3 * 4 * 6
    assert macs['Sequential.2'] == 3 * 6 * 2


@pytest.mark.parametrize('impl', ['native', 'gemm'])
def test_projector_split_names_the_convolution_either_way(impl):
    """Its 3x3 convolution is found by module, also as a matrix product."""
    from mmscalekd.models.necks import CrossAttentionProjector
    channels, height, width, batch = 16, 5, 3, 2
    projector = CrossAttentionProjector(
        channels, 8, (height, width), (2, 2), 2, conv_impl=impl)
    x = torch.randn(batch, channels, height, width, requires_grad=True)
    macs = count_macs(lambda: projector(x).sum().backward(), by_module=True)
    split = split_convolution(macs)
    # forward, gradient of the input, gradient of the weight
    assert split['convolution'] == 3 * batch * height * width * (
        channels * channels * 9)
    assert split['other'] > 0
    assert sum(split.values()) == sum(
        count_macs(lambda: projector(x).sum().backward()).values())
