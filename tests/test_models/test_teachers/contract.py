"""Checks of the TeacherAdapter contract shared by the adapter tests."""
import pytest
import torch

from mmscalekd.models.teachers import build_teacher_adapter


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


class StagedAdapterContract:
    """The checks every stage-split adapter (Swin, Swin V2, ConvNeXt) passes.

    A test module subclasses it as ``TestContract`` with its own
    ``build_teacher(**backbone)`` (a 4-stage classifier whose backbone takes
    the keyword overrides) and ``image_size``.
    """

    image_size: int
    gradient_split = 1  # the split of the gradient check

    @staticmethod
    def build_teacher(**backbone):
        raise NotImplementedError

    def test_rest_depends_on_the_tokens(self):
        assert_rest_depends_on_the_tokens(
            build_teacher_adapter(self.build_teacher(), 2), self.image_size)

    def test_gradient_flows_through_frozen_rest(self):
        assert_gradient_flows_through_frozen_rest(
            build_teacher_adapter(self.build_teacher(), self.gradient_split),
            self.image_size)

    @pytest.mark.parametrize('split_index', [-1, 3, 7])
    def test_split_out_of_range(self, split_index):
        # One message for every family: the key, the unit and the range.
        with pytest.raises(
                ValueError,
                match=rf'teacher_split={split_index}`.* 4 stages.*\[0, 2\]'):
            build_teacher_adapter(self.build_teacher(), split_index)

    def test_last_stage_must_be_an_output(self):
        with pytest.raises(ValueError, match='out_indices'):
            build_teacher_adapter(self.build_teacher(out_indices=(2, )), 1)
