"""Checks of the TeacherAdapter contract shared by the adapter tests."""
import torch


@torch.no_grad()
def assert_rest_depends_on_the_tokens(adapter, image_size):
    """forward_rest reads its input: other tokens give another feature."""
    outputs = adapter(torch.randn(1, 3, image_size, image_size))
    other = adapter.forward_rest(
        torch.randn_like(outputs.split_tokens), outputs.split_size,
        outputs.split_extra_tokens)
    assert not torch.allclose(other, outputs.final_feature)


def assert_gradient_flows_through_frozen_rest(adapter, image_size):
    """Gradients reach the split tokens; the frozen teacher gets none."""
    adapter.teacher.requires_grad_(False)
    with torch.no_grad():
        outputs = adapter(torch.randn(1, 3, image_size, image_size))
    tokens = outputs.split_tokens.clone().requires_grad_(True)
    rest = adapter.forward_rest(tokens, outputs.split_size,
                                outputs.split_extra_tokens)
    # A random weighting: the plain sum of a LayerNorm output has a zero
    # gradient (each position's normalised channels sum to a constant),
    # which would make this check vacuous.
    (rest * torch.randn_like(rest)).sum().backward()
    assert tokens.grad.abs().sum() > 0
    assert all(p.grad is None for p in adapter.teacher.parameters())
