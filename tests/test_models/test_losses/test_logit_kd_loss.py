import numpy as np
import pytest
import torch

from mmscalekd.models.losses import LogitKDLoss


def reference(student, teacher, tau, alpha):
    s, t = student.double().numpy() / tau, teacher.double().numpy() / tau
    p = np.exp(t - t.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    log_q = s - s.max(1, keepdims=True)
    log_q -= np.log(np.exp(log_q).sum(1, keepdims=True))
    return -alpha * tau**2 * (p * log_q).sum(1).mean()


@pytest.mark.parametrize('tau,alpha', [(1.0, 0.5), (2.0, 0.5), (4.0, 0.9),
                                       (1.0, 0.0)])
def test_matches_equation(tau, alpha):
    torch.manual_seed(0)
    student, teacher = torch.randn(5, 7) * 3, torch.randn(5, 7) * 3
    loss = LogitKDLoss(tau=tau, alpha=alpha)(student, teacher)
    assert loss.item() == pytest.approx(
        reference(student, teacher, tau, alpha), rel=1e-5, abs=1e-7)


def test_known_value_uniform_teacher():
    # Uniform teacher over K classes, uniform student: loss = alpha * log K.
    loss = LogitKDLoss(tau=1.0, alpha=0.5)(torch.zeros(2, 10),
                                           torch.zeros(2, 10))
    assert loss.item() == pytest.approx(0.5 * np.log(10), rel=1e-6)


def test_large_logits_stay_finite():
    student = torch.tensor([[1000.0, 0.0, -1000.0]])
    teacher = torch.tensor([[0.0, 1000.0, 0.0]])
    loss = LogitKDLoss()(student, teacher)
    assert torch.isfinite(loss)
    # -0.5 * log_softmax(s)[1] = 0.5 * 1000
    assert loss.item() == pytest.approx(500.0, rel=1e-6)


def test_gradient_reaches_student_only():
    student = torch.randn(3, 4, requires_grad=True)
    teacher = torch.randn(3, 4, requires_grad=True)
    LogitKDLoss()(student, teacher).backward()
    assert student.grad is not None and student.grad.abs().sum() > 0


@pytest.mark.parametrize('kwargs,key', [(dict(tau=0.0), 'tau'),
                                        (dict(tau=-1.0), 'tau'),
                                        (dict(alpha=1.5), 'alpha'),
                                        (dict(alpha=-0.1), 'alpha')])
def test_bad_hyper_parameters(kwargs, key):
    with pytest.raises(ValueError, match=key):
        LogitKDLoss(**kwargs)
