"""The ScaleKD loss of a fixed batch and fixed weights under the settings
tools/analysis/benchmark.py offers: repeated fp32, CPU bf16 autocast and
channels-last memory layout (smoke config's tiny Swin -> ResNet-18)."""
import pytest
import torch

from tests.conftest import build_distiller, make_batch

# Each loss term under CPU autocast bf16 against fp32, relative. Measured on
# the smoke networks over batch seeds 0-2: largest error 1.3e-2 (loss_cls,
# seed 0; bf16 keeps 8 mantissa bits, ~0.4% per rounding), the feature terms
# at most 7.4e-3. 3e-2 leaves a 2x margin for other CPUs' bf16 kernels.
BF16_RTOL = 3e-2
# Channels-last only reorders the convolutions' reductions (measured <= 7e-7).
CHANNELS_LAST_RTOL = 1e-5
# The projectors' 3x3 convolution as one matrix product (conv_impl='gemm')
# instead of the native kernel: another summation order, fp32 rounding only.
GEMM_CONV_RTOL = 1e-5


def loss_terms(model, inputs, samples):
    losses = model.loss(inputs, samples)
    return {k: v.detach() for k, v in losses.items() if 'loss' in k}


@pytest.fixture(scope='module')
def model_and_batch():
    model = build_distiller()  # seeded weights
    model.train()
    data = model.data_preprocessor(make_batch(batch_size=4, seed=0))
    return model, data['inputs'], data['data_samples']


@pytest.fixture(scope='module')
def fp32_losses(model_and_batch):
    return loss_terms(*model_and_batch)


def test_every_term_is_checked(fp32_losses):
    assert set(fp32_losses) == {
        'loss_cls', 'loss_kd', 'loss_perception_spatial',
        'loss_perception_frequency', 'loss_final_spatial',
        'loss_final_frequency'
    }
    assert all(v.dtype == torch.float32 for v in fp32_losses.values())


def test_fp32_is_bit_reproducible(model_and_batch, fp32_losses):
    again = loss_terms(*model_and_batch)
    for key, value in fp32_losses.items():
        assert torch.equal(again[key], value), key


def test_bf16_autocast_is_close_to_fp32(model_and_batch, fp32_losses):
    with torch.autocast('cpu', dtype=torch.bfloat16):
        bf16 = loss_terms(*model_and_batch)
    for key, value in fp32_losses.items():
        assert bf16[key].float().item() == pytest.approx(
            value.item(), rel=BF16_RTOL), key
    # bf16 must actually have run: the results are not the fp32 ones.
    assert any(not torch.equal(bf16[k].float(), v)
               for k, v in fp32_losses.items())


def test_channels_last_matches_fp32(model_and_batch, fp32_losses):
    model, inputs, samples = model_and_batch
    model.to(memory_format=torch.channels_last)
    try:
        assert model.student.backbone.conv1.weight.is_contiguous(
            memory_format=torch.channels_last)
        channels_last = loss_terms(
            model, inputs.contiguous(memory_format=torch.channels_last),
            samples)
    finally:
        model.to(memory_format=torch.contiguous_format)
    for key, value in fp32_losses.items():
        assert channels_last[key].item() == pytest.approx(
            value.item(), rel=CHANNELS_LAST_RTOL), key


def test_gemm_convolution_matches_native(model_and_batch, fp32_losses):
    """The projectors' 3x3 convolution as a matrix product gives the loss of
    the plain implementation (the fixture's tiny projectors run natively)."""
    model, inputs, samples = model_and_batch
    projectors = list(model.projectors.values())
    assert not any(p.student_conv.use_gemm(torch.empty(
        1, p.student_channels, *p.student_size)) for p in projectors)
    for projector in projectors:
        projector.student_conv.impl = 'gemm'
    try:
        gemm = loss_terms(model, inputs, samples)
    finally:
        for projector in projectors:
            projector.student_conv.impl = 'auto'
    for key, value in fp32_losses.items():
        assert gemm[key].item() == pytest.approx(
            value.item(), rel=GEMM_CONV_RTOL), key
    feature_terms = [k for k in fp32_losses if 'perception' in k
                     or 'final' in k]
    assert any(not torch.equal(gemm[k], fp32_losses[k])
               for k in feature_terms)


def test_gemm_convolution_under_bf16_autocast(model_and_batch, fp32_losses):
    """Under CPU autocast the matrix-product convolution stays within the
    bf16 tolerance of the plain fp32 loss, as the native one does."""
    model, inputs, samples = model_and_batch
    projectors = list(model.projectors.values())
    for projector in projectors:
        projector.student_conv.impl = 'gemm'
    try:
        with torch.autocast('cpu', dtype=torch.bfloat16):
            bf16 = loss_terms(model, inputs, samples)
    finally:
        for projector in projectors:
            projector.student_conv.impl = 'auto'
    for key, value in fp32_losses.items():
        assert bf16[key].float().item() == pytest.approx(
            value.item(), rel=BF16_RTOL), key
