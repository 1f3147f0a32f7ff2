"""FeatureL2Loss: plain feature distillation, the FD baseline."""
import pytest
import torch

from mmscalekd.models.losses import FeatureL2Loss
from tests.conftest import build_distiller, make_batch

L2 = dict(type='FeatureL2Loss', loss_weight=2.0)


def test_loss_is_the_mean_squared_error_in_float64():
    """loss_weight * sum((S - T)^2) / (N * C * H * W), summed here term by
    term."""
    generator = torch.Generator().manual_seed(0)
    student = torch.randn(2, 3, 4, 5, dtype=torch.float64,
                          generator=generator, requires_grad=True)
    teacher = torch.randn(2, 3, 4, 5, dtype=torch.float64,
                          generator=generator)
    loss = FeatureL2Loss(loss_weight=0.5)(dict(spatial=student),
                                          teacher)['loss_l2']
    total = sum((s - t)**2 for s, t in zip(student.detach().flatten().tolist(),
                                            teacher.flatten().tolist()))
    assert loss.dtype == torch.float64
    assert loss.item() == pytest.approx(0.5 * total / 120, rel=1e-14)
    loss.backward()
    torch.testing.assert_close(student.grad,
                               0.5 * 2 * (student.detach() - teacher) / 120,
                               rtol=1e-14, atol=0)


def test_known_value_by_hand():
    # Two positions, one channel: (1 - 0)^2 and (2 - 0)^2 over 2 elements.
    student = torch.tensor([[[[1.0, 2.0]]]], dtype=torch.float64)
    out = FeatureL2Loss()(dict(spatial=student), torch.zeros_like(student))
    assert out == dict(loss_l2=pytest.approx(2.5))
    assert FeatureL2Loss.views == ('spatial', )


def test_shapes_and_weight_are_checked():
    with pytest.raises(ValueError, match=r'FeatureL2Loss got student '
                       r'\(2, 3, 4, 4\) and teacher \(2, 3, 2, 2\)'):
        FeatureL2Loss()(dict(spatial=torch.randn(2, 3, 4, 4)),
                        torch.randn(2, 3, 2, 2))
    with pytest.raises(ValueError, match='loss_weight'):
        FeatureL2Loss(loss_weight=0)


def test_as_stage_loss_it_compares_what_the_projectors_give():
    """A stage with this loss: one projector (its one view), one term,
    computed on the perceived projection and the teacher's final feature."""
    distiller = build_distiller(perception_stage=dict(loss=L2),
                                final_stage=dict(loss=L2)).eval()
    assert set(distiller.projectors) == {'perception_spatial',
                                         'final_spatial'}
    data = distiller.data_preprocessor(make_batch(), True)
    with torch.no_grad():
        losses = distiller.loss(data['inputs'], data['data_samples'])
        teacher = distiller.teacher(data['inputs'])
        feature, queries = distiller.projector_inputs(
            data['inputs'])['perception_spatial']
        perceived = distiller.teacher.forward_rest(
            distiller.projectors['perception_spatial'](feature, queries),
            teacher.split_size, teacher.split_extra_tokens)
    assert {k for k in losses if k.startswith(('loss_perception',
                                               'loss_final'))} == {
        'loss_perception_l2', 'loss_final_l2'}
    expected = 2.0 * (perceived - teacher.final_feature).pow(2).mean()
    torch.testing.assert_close(losses['loss_perception_l2'], expected)
