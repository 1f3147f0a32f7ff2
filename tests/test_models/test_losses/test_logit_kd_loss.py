import math

import numpy as np
import pytest
import torch
from scipy import special, stats

from mmscalekd.models.losses import LogitKDLoss


def reference(student, teacher, tau, alpha):
    """alpha tau^2 mean_n H(p_n, q_n) as entropy plus KL divergence, by
    scipy (another route to the cross entropy than the loss takes)."""
    p = special.softmax(teacher.double().numpy() / tau, axis=1)
    q = special.softmax(student.double().numpy() / tau, axis=1)
    cross_entropy = [stats.entropy(pn) + stats.entropy(pn, qn)
                     for pn, qn in zip(p, q)]
    return alpha * tau**2 * float(np.mean(cross_entropy))


@pytest.mark.parametrize('tau,alpha', [(1.0, 0.5), (2.0, 0.5), (4.0, 0.9),
                                       (1.0, 0.0)])
def test_matches_entropy_plus_kl_divergence(tau, alpha):
    torch.manual_seed(0)
    student, teacher = torch.randn(5, 7) * 3, torch.randn(5, 7) * 3
    loss = LogitKDLoss(tau=tau, alpha=alpha)(student, teacher)
    assert loss.item() == pytest.approx(
        reference(student, teacher, tau, alpha), rel=1e-5, abs=1e-7)


@pytest.mark.parametrize('tau', [1.0, 2.0])
def test_known_value_two_classes(tau):
    # Softened teacher (3/4, 1/4), softened student (1/4, 3/4):
    # H(p, q) = -(3/4 log 1/4 + 1/4 log 3/4) = log 4 - 1/4 log 3.
    log3 = math.log(3)
    teacher = torch.tensor([[tau * log3, 0.0]])
    student = torch.tensor([[0.0, tau * log3]])
    loss = LogitKDLoss(tau=tau, alpha=0.5)(student, teacher)
    assert loss.item() == pytest.approx(
        0.5 * tau**2 * (math.log(4) - log3 / 4), rel=1e-6)


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


def test_gradient_pulls_the_student_towards_the_teacher():
    """d loss / d s = alpha tau (softmax(s / tau) - softmax(t / tau)) / N:
    the student's softened distribution is moved towards the teacher's, and
    a student that already predicts the teacher's distribution (its logits
    shifted by a constant) gets no gradient."""
    torch.manual_seed(0)
    tau, alpha = 2.0, 0.5
    student = torch.randn(3, 4, requires_grad=True)
    teacher = torch.randn(3, 4) * 2
    LogitKDLoss(tau=tau, alpha=alpha)(student, teacher).backward()
    p, q = (torch.softmax(x.detach() / tau, 1) for x in (teacher, student))
    torch.testing.assert_close(student.grad, alpha * tau * (q - p) / 3)
    assert ((student.grad < 0) == (p > q)).all()

    matching = (teacher + 5.0).requires_grad_()
    LogitKDLoss(tau=tau, alpha=alpha)(matching, teacher).backward()
    torch.testing.assert_close(matching.grad, torch.zeros(3, 4),
                               atol=1e-7, rtol=0)


@pytest.mark.parametrize('kwargs,key', [(dict(tau=0.0), 'tau'),
                                        (dict(tau=-1.0), 'tau'),
                                        (dict(alpha=1.5), 'alpha'),
                                        (dict(alpha=-0.1), 'alpha')])
def test_bad_hyper_parameters(kwargs, key):
    with pytest.raises(ValueError, match=key):
        LogitKDLoss(**kwargs)


@pytest.mark.parametrize('kwargs,message', [
    (dict(alpha=None), r'`alpha=None` must be a number in \[0, 1\]'),
    (dict(alpha='0.5'), r"`alpha='0\.5'` must be a number in \[0, 1\], not "
     'a string'),
    (dict(alpha=True), r'`alpha=True` must be a number'),
    (dict(tau=None), r'`tau=None` must be a number > 0'),
    (dict(tau='1.0'), r"`tau='1\.0'` must be a number > 0, not a string"),
])
def test_non_numeric_hyper_parameters(kwargs, message):
    with pytest.raises(TypeError, match=message):
        LogitKDLoss(**kwargs)
