"""The fast paths: ``model.compile``, ``model.teacher.dtype``
and ``model.channels_last`` compute the function of the eager float32 model.

On CPU, compilation is checked with dynamo's ``'eager'`` backend (the
wiring: what is compiled, graph breaks, recompiles; results bit-identical).
The default inductor backend takes about 170 s per batch size to compile
the smoke config on a 2-core CPU, so its tests run on CUDA only.
"""
import logging
import re

import pytest
import torch
from mmengine.logging import MMLogger
from torch._dynamo.testing import CompileCounter

from tests.conftest import build_distiller, make_batch

# torch.compile and bfloat16 runs of the distiller: tens of seconds each.
pytestmark = pytest.mark.slow

requires_cuda = pytest.mark.skipif(not torch.cuda.is_available(),
                                   reason='needs CUDA')

# One dynamo frame per compiled region of the smoke config's loss: the
# teacher's forward, the student, the teacher's rest (one graph for both
# views), the perception projectors (learned queries; both views share the
# graph) and the final projectors (queries from perception). A graph break
# would add frames.
REGIONS = 5


@pytest.fixture(autouse=True)
def fresh_compiler():
    """Each test counts its own compilations: dynamo's caches (and their
    per-function recompile limit) start empty."""
    torch.compiler.reset()
    yield
    torch.compiler.reset()


def batch(model, size=4, device='cpu'):
    data = model.data_preprocessor(make_batch(size), True)
    return data['inputs'].to(device), data['data_samples']


def loss_and_grads(model, inputs, samples):
    """Loss terms and the gradient of their sum for every trainable
    parameter (zeroed first)."""
    model.zero_grad(set_to_none=True)
    losses = model.loss(inputs, samples)
    sum(v for k, v in losses.items() if 'loss' in k).backward()
    grads = {n: p.grad.detach().clone()
             for n, p in model.named_parameters() if p.requires_grad}
    return {k: v.detach() for k, v in losses.items() if 'loss' in k}, grads


def test_compile_covers_the_hot_path_and_computes_the_same():
    eager = build_distiller().train()
    compiled = build_distiller(compile=dict(backend=CompileCounter())).train()
    counter = compiled.compile_options['backend']
    assert compiled.compile_options['dynamic'] is False
    assert eager.compile_options is None
    # Compiled callables, not replaced modules: the same state dict.
    assert compiled.state_dict().keys() == eager.state_dict().keys()
    assert all(type(projector) is type(eager.projectors[name])
               for name, projector in compiled.projectors.items())

    inputs, samples = batch(eager)
    want_losses, want_grads = loss_and_grads(eager, inputs, samples)
    got_losses, got_grads = loss_and_grads(compiled, inputs, samples)
    # Every region of the hot path went through the compiler, each in one
    # graph (no graph break of ours).
    assert counter.frame_count == REGIONS
    assert got_losses.keys() == want_losses.keys()
    for key, value in want_losses.items():
        assert torch.equal(got_losses[key], value), key
    assert got_grads.keys() == want_grads.keys()
    for name, value in want_grads.items():
        assert torch.equal(got_grads[name], value), name


def test_a_copy_runs_its_own_compiled_student():
    import copy
    model = build_distiller(compile=dict(backend=CompileCounter())).train()
    inputs, samples = batch(model)
    model.loss(inputs, samples)
    duplicate = copy.deepcopy(model)  # as mmengine's EMA hook copies it
    assert duplicate.teacher is model.teacher
    counter = duplicate.compile_options['backend']
    frames = counter.frame_count
    # Its loss runs its own student and projectors, compiled for it: other
    # weights, other logits.
    with torch.no_grad():
        duplicate.student.head.fc.bias[0] += 1.0
    theirs = duplicate.loss(inputs, samples)
    assert counter.frame_count > frames
    assert not torch.equal(theirs['loss_cls'],
                           model.loss(inputs, samples)['loss_cls'])


def test_the_last_smaller_batch_compiles_once_and_never_again():
    model = build_distiller(compile=dict(backend=CompileCounter())).train()
    counter = model.compile_options['backend']
    inputs, samples = batch(model, 4)
    frames = []
    # Two epochs of "full batch, last smaller batch".
    for size in (4, 3, 4, 3):
        model.loss(inputs[:size], samples[:size])
        frames.append(counter.frame_count)
    # A static graph per region for each batch size (dynamic=False).
    assert frames == [REGIONS, 2 * REGIONS, 2 * REGIONS, 2 * REGIONS]


def test_compile_options_are_torch_compile_arguments():
    model = build_distiller(compile=dict(dynamic=True, backend='eager'))
    assert model.compile_options == dict(dynamic=True, backend='eager')
    with pytest.raises(TypeError, match='model.compile'):
        build_distiller(compile=True)


def test_bfloat16_teacher_holds_half_the_memory_and_gives_float32():
    fp32 = build_distiller().train()
    bf16 = build_distiller(teacher=dict(dtype='bfloat16')).train()
    network = bf16.teacher.network
    assert {p.dtype for p in network.parameters()} == {torch.bfloat16}
    assert {p.dtype for p in bf16.parameters()} == {torch.float32}
    assert sum(p.numel() * p.element_size()
               for p in network.parameters()) * 2 == sum(
                   p.numel() * p.element_size()
                   for p in fp32.teacher.network.parameters())
    assert not any(k.startswith('teacher.') for k in bf16.state_dict())

    inputs, samples = batch(fp32)
    outputs = bf16.teacher(inputs)
    for value in (outputs.split_tokens, outputs.final_feature,
                  outputs.logits):
        assert value.dtype == torch.float32
    assert bf16.teacher.logits(inputs).dtype == torch.float32
    # The teacher's rest: bfloat16 inside, float32 out, gradients back.
    tokens = outputs.split_tokens.clone().requires_grad_()
    rest = bf16.teacher.forward_rest(tokens, outputs.split_size)
    assert rest.dtype == torch.float32
    rest.square().sum().backward()
    assert tokens.grad.dtype == torch.float32
    assert tokens.grad.abs().sum() > 0
    # The adapter contract holds through the casts: the rest on the
    # teacher's own split tokens gives its final feature.
    torch.testing.assert_close(rest.detach(), outputs.final_feature,
                               rtol=2e-2, atol=2e-2)

    want_losses, want_grads = loss_and_grads(fp32, inputs, samples)
    got_losses, got_grads = loss_and_grads(bf16, inputs, samples)
    # Stated tolerance: loss terms within rtol 1e-2 of the float32
    # teacher's (measured: at most 6e-4 on the smoke config).
    for key, value in want_losses.items():
        assert got_losses[key].dtype == torch.float32
        torch.testing.assert_close(got_losses[key], value, rtol=1e-2,
                                   atol=0, msg=key)
    # Gradients reach every projector and the student, and point where the
    # float32 teacher's do (cosine > 0.99 over all trainable parameters).
    for name, grad in got_grads.items():
        assert grad.abs().sum() > 0, name
    got = torch.cat([g.flatten() for g in got_grads.values()])
    want = torch.cat([want_grads[n].flatten() for n in got_grads])
    assert torch.nn.functional.cosine_similarity(got, want, dim=0) > 0.99


def test_teacher_dtype_survives_moves_but_not_double():
    model = build_distiller(teacher=dict(dtype='bfloat16'))
    network = model.teacher.network

    def dtypes():
        return {p.dtype for p in network.parameters()}

    before = {n: p.clone() for n, p in network.named_parameters()}
    model.to('cpu')
    assert dtypes() == {torch.bfloat16}
    model.float()
    assert dtypes() == {torch.bfloat16}
    # No round trip through float16 (whose range is smaller): untouched.
    model.half()
    assert dtypes() == {torch.bfloat16}
    for name, value in network.named_parameters():
        assert torch.equal(value, before[name]), name
    model.float()
    # float64 reference runs take the whole model, teacher included ...
    model.double()
    assert dtypes() == {torch.float64}
    images = torch.zeros(1, 3, 64, 64, dtype=torch.float64)
    assert model.teacher(images).final_feature.dtype == torch.float64
    # ... and back to the configured dtype.
    model.float()
    assert dtypes() == {torch.bfloat16}
    assert model.teacher.logits(images.float()).dtype == torch.float32


def test_unknown_teacher_dtype_names_the_key():
    with pytest.raises(ValueError, match='model.teacher.dtype'):
        build_distiller(teacher=dict(dtype='int8'))


def test_channels_last_stays_off_on_cpu_and_says_so():
    eager = build_distiller().train()
    model = build_distiller(channels_last=True).train()
    logger = MMLogger.get_current_instance()
    records = []
    handler = logging.Handler()
    handler.emit = records.append
    logger.addHandler(handler)
    inputs, samples = batch(model)
    try:
        losses = model.loss(inputs, samples)
        model.loss(inputs, samples)
    finally:
        logger.removeHandler(handler)
    said = [r for r in records if 'channels_last' in r.getMessage()]
    assert len(said) == 1 and said[0].levelno == logging.INFO
    assert 'CPU' in said[0].getMessage()
    conv = model.student.backbone.conv1.weight
    assert conv.is_contiguous()
    assert not conv.is_contiguous(memory_format=torch.channels_last)
    want = eager.loss(inputs, samples)
    for key, value in want.items():
        assert torch.equal(losses[key], value), key


# CUDA only (skipped in CI, which has no GPU).


@pytest.fixture
def true_float32():
    """float32 reference numbers: no TF32 in matmuls and convolutions
    (on by default for cuDNN), whose 10-bit mantissa would hide the
    differences the tolerances below are about."""
    saved = (torch.backends.cuda.matmul.allow_tf32,
             torch.backends.cudnn.allow_tf32)
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    yield
    (torch.backends.cuda.matmul.allow_tf32,
     torch.backends.cudnn.allow_tf32) = saved


def cuda_pair(**overrides):
    """(float32 eager model, model with ``overrides``) on CUDA, same
    weights."""
    reference = build_distiller().cuda().train()
    model = build_distiller(**overrides).cuda().train()
    return reference, model


# Parameters whose gradient is zero in exact arithmetic, so that a computed
# one is round-off (about 1e-10 on CUDA) and its direction means nothing:
# the key projections' biases (a bias b adds the same q.b to every score of
# a query, which the softmax over keys removes) and the last bias of the
# final frequency projector (a constant over positions, which the centred
# frequency view removes). test_exactly_zero_gradients pins the list.
ZERO_GRADIENT = re.compile(
    r'projectors\.\w+\.k\.bias$|'
    r'^final_stage\.projectors\.frequency\.mlp\.2\.bias$')


def test_exactly_zero_gradients():
    model = build_distiller().double().train()
    inputs, samples = batch(model)
    _, grads = loss_and_grads(model, inputs.double(), samples)
    total = torch.stack([g.norm() for g in grads.values()]).norm()
    zero = {name for name, g in grads.items() if g.norm() < 1e-12 * total}
    assert zero == {name for name in grads if ZERO_GRADIENT.search(name)}
    assert len(zero) == 5  # four key biases, one final frequency bias


def assert_grads_close(got, want, cosine, rtol):
    """Every gradient points where the reference's does (``cosine``) and
    has its size to ``rtol`` (relative error of the norm); those that are
    zero in exact arithmetic (``ZERO_GRADIENT``) stay round-off small."""
    assert got.keys() == want.keys()
    total = torch.stack([w.float().norm() for w in want.values()]).norm()
    for name, value in want.items():
        g, w = got[name].float().flatten(), value.float().flatten()
        if ZERO_GRADIENT.search(name):
            assert max(g.norm(), w.norm()) <= 1e-5 * total, name
            continue
        assert g.abs().sum() > 0, name
        assert torch.nn.functional.cosine_similarity(g, w, dim=0) > cosine, \
            name
        assert (g - w).norm() <= rtol * w.norm() + 1e-6, name


@requires_cuda
def test_compiled_inductor_matches_eager_on_cuda(true_float32):
    """Tolerance: loss terms rtol 1e-4, gradients within 1e-3 (relative
    norm) of eager; inductor only reorders float32 reductions."""
    reference, model = cuda_pair(compile=dict())
    inputs, samples = batch(reference, 4, 'cuda')
    for size in (4, 3):  # the last smaller batch too
        want_losses, want_grads = loss_and_grads(reference, inputs[:size],
                                                 samples[:size])
        got_losses, got_grads = loss_and_grads(model, inputs[:size],
                                               samples[:size])
        for key, value in want_losses.items():
            torch.testing.assert_close(got_losses[key], value, rtol=1e-4,
                                       atol=1e-6, msg=key)
        assert_grads_close(got_grads, want_grads, cosine=0.9999, rtol=1e-3)


@requires_cuda
def test_bfloat16_teacher_compiled_matches_float32_eager_on_cuda(
        true_float32):
    """Tolerance: loss terms rtol 2e-2, gradients cosine > 0.99 and within
    10 % (relative norm) of the float32 eager model's."""
    reference, model = cuda_pair(teacher=dict(dtype='bfloat16'),
                                 compile=dict())
    assert {p.dtype for p in model.teacher.network.parameters()} == {
        torch.bfloat16}
    inputs, samples = batch(reference, 4, 'cuda')
    for size in (4, 3):
        want_losses, want_grads = loss_and_grads(reference, inputs[:size],
                                                 samples[:size])
        got_losses, got_grads = loss_and_grads(model, inputs[:size],
                                               samples[:size])
        for key, value in want_losses.items():
            assert got_losses[key].dtype == torch.float32
            torch.testing.assert_close(got_losses[key], value, rtol=2e-2,
                                       atol=1e-5, msg=key)
        assert_grads_close(got_grads, want_grads, cosine=0.99, rtol=0.1)


@requires_cuda
def test_channels_last_on_cuda_gives_the_same_losses(true_float32):
    """Tolerance: loss terms rtol 1e-4, gradients within 1e-2 (relative
    norm): cuDNN picks other algorithms for channels-last. Measured on an
    H200 (2026-11-26, TF32 off): the loss terms agreed within 1e-4 and the
    stem convolution's gradient differed by 4.3e-3 of its norm (a first
    layer's gradient sums terms that cancel, which magnifies float32
    reordering); a layout error would be of the order of 1."""
    reference, model = cuda_pair(channels_last=True)
    conv = model.student.backbone.conv1.weight
    assert conv.is_contiguous(memory_format=torch.channels_last)
    assert not conv.is_contiguous()
    for projector in model.projectors.values():
        assert projector.pos_embed.is_contiguous(
            memory_format=torch.channels_last)
    inputs, samples = batch(reference, 4, 'cuda')
    want_losses, want_grads = loss_and_grads(reference, inputs, samples)
    got_losses, got_grads = loss_and_grads(model, inputs, samples)
    for key, value in want_losses.items():
        torch.testing.assert_close(got_losses[key], value, rtol=1e-4,
                                   atol=1e-6, msg=key)
    assert_grads_close(got_grads, want_grads, cosine=0.9999, rtol=1e-2)
