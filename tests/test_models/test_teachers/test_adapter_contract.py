"""The TeacherAdapter contract, checked once for every family.

For any input, with ``out = adapter(x)``: ``out.logits`` are the
classifier's own, ``forward_rest(out.split_tokens, out.split_size,
out.split_extra_tokens)`` is exactly ``out.final_feature``, the rest reads
its tokens and passes gradients to them through frozen weights, and a split
outside ``[0, units - 2]`` is refused naming ``teacher_split``.
"""
import pytest
import torch

from mmscalekd.models.teachers import (StagedTeacherAdapter,
                                       build_teacher_adapter)
from tests.test_models.test_teachers.families import CASES, ONE_PER_ADAPTER

WITH_EXTRA_TOKENS = sorted(n for n, c in CASES.items() if c.num_extra)
STAGED_MMPRETRAIN = sorted(
    name for name in ONE_PER_ADAPTER
    if issubclass(CASES[name].adapter, StagedTeacherAdapter)
    and CASES[name].family != 'timm')


def images(case, batch=2):
    return torch.randn(batch, 3, case.image_size, case.image_size)


@pytest.mark.parametrize('split_index', [0, 1, 2])
@pytest.mark.parametrize('name', sorted(CASES))
@torch.no_grad()
def test_rest_of_teacher_reproduces_its_output(name, split_index):
    case = CASES[name]
    teacher = case.build()
    adapter = build_teacher_adapter(teacher, split_index)
    assert type(adapter) is case.adapter
    inputs = images(case)
    outputs = adapter(inputs)

    # The logits are the classifier's own ...
    assert torch.equal(outputs.logits, teacher(inputs, mode='tensor'))
    assert outputs.logits.abs().max() > 0
    # ... and the rest of the teacher on its own split-point tokens gives
    # exactly its final feature.
    rest = adapter.forward_rest(outputs.split_tokens, outputs.split_size,
                                outputs.split_extra_tokens)
    assert torch.equal(rest, outputs.final_feature)
    if case.own_final is not None:
        assert torch.equal(outputs.final_feature,
                           case.own_final(teacher, inputs))

    grid, channels = case.split_shape(split_index)
    assert outputs.split_size == grid
    assert outputs.split_tokens.shape == (2, grid[0] * grid[1], channels)
    if case.num_extra:
        assert outputs.split_extra_tokens.shape == (2, case.num_extra,
                                                    channels)
    else:
        assert outputs.split_extra_tokens is None
    assert outputs.final_feature.shape == (2, *case.final_shape)


@pytest.mark.parametrize('name', sorted(CASES))
@torch.no_grad()
def test_rest_depends_on_the_tokens(name):
    case = CASES[name]
    adapter = build_teacher_adapter(case.build(), 1)
    outputs = adapter(images(case, 1))
    other = adapter.forward_rest(
        torch.randn_like(outputs.split_tokens), outputs.split_size,
        outputs.split_extra_tokens)
    assert not torch.allclose(other, outputs.final_feature)
    if case.num_extra:
        # The extra tokens are mixed into the patch tokens by attention
        # (by little where a layer scale starts near 0: DeiT III).
        other = adapter.forward_rest(
            outputs.split_tokens, outputs.split_size,
            torch.randn_like(outputs.split_extra_tokens))
        assert not torch.equal(other, outputs.final_feature)


@pytest.mark.parametrize('split_index', [1, 2])
@pytest.mark.parametrize('name', sorted(CASES))
def test_gradient_flows_through_frozen_rest(name, split_index):
    """Gradients reach the split tokens; the frozen teacher gets none."""
    case = CASES[name]
    teacher = case.build().requires_grad_(False)
    adapter = build_teacher_adapter(teacher, split_index)
    with torch.no_grad():
        outputs = adapter(images(case, 1))
    tokens = outputs.split_tokens.clone().requires_grad_(True)
    rest = adapter.forward_rest(tokens, outputs.split_size,
                                outputs.split_extra_tokens)
    # A random weighting: the plain sum of a LayerNorm output has a zero
    # gradient (each position's normalised channels sum to a constant),
    # which would make this check vacuous.
    (rest * torch.randn_like(rest)).sum().backward()
    assert tokens.grad.abs().sum() > 0
    assert all(p.grad is None for p in teacher.parameters())


@pytest.mark.parametrize('split_index', [-1, 3, 4, 7, 8, 9])
@pytest.mark.parametrize('name', ONE_PER_ADAPTER)
def test_split_out_of_range(name, split_index):
    # One message for every family: the key, the unit and the range.
    case = CASES[name]
    family = 'timm .*' if case.family == 'timm' else ''
    with pytest.raises(
            ValueError,
            match=rf'teacher_split={split_index}`.*{family} 4 {case.unit}s'
            r'.*\[0, 2\]'):
        build_teacher_adapter(case.build(), split_index)


@pytest.mark.parametrize('name', WITH_EXTRA_TOKENS)
def test_rest_needs_the_extra_tokens(name):
    case = CASES[name]
    adapter = build_teacher_adapter(case.build(), 1)
    (grid, channels) = case.split_shape(1)
    tokens = torch.randn(1, grid[0] * grid[1], channels)
    with pytest.raises(ValueError, match='split_extra_tokens'):
        adapter.forward_rest(tokens, grid)
    with pytest.raises(ValueError, match='split_extra_tokens'):
        adapter.forward_rest(tokens, grid,
                             torch.randn(1, case.num_extra + 1, channels))


@pytest.mark.parametrize('name', STAGED_MMPRETRAIN)
def test_last_stage_must_be_an_output(name):
    case = CASES[name]
    config = dict(case.config,
                  backbone=dict(case.config['backbone'], out_indices=(2, )))
    with pytest.raises(ValueError, match=r'backbone\.out_indices.* 3'):
        build_teacher_adapter(
            case._replace(config=config).build(), 1)
