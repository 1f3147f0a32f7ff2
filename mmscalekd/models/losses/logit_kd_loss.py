"""Logit distillation (method section 4)."""
import torch
import torch.nn.functional as F
from torch import nn

from mmpretrain.registry import MODELS

from mmscalekd.models.utils.config_values import check_number

__all__ = ['LogitKDLoss']


@MODELS.register_module()
class LogitKDLoss(nn.Module):
    """Soft-target cross entropy between teacher and student logits.

    ``loss = -alpha * tau^2 * mean_n sum_c softmax(t / tau) *
    log_softmax(s / tau)``. The distiller scales the student's own
    classification loss by ``1 - alpha``.

    Args:
        tau (float): temperature, > 0. Defaults to 1.0.
        alpha (float): weight in [0, 1]. Defaults to 0.5.
    """

    def __init__(self, tau: float = 1.0, alpha: float = 0.5) -> None:
        super().__init__()
        self.tau = check_number(tau, 'tau', greater_than=0,
                                note='released configs use 1.0')
        self.alpha = check_number(alpha, 'alpha', at_least=0, at_most=1,
                                  note='released configs use 0.5')

    def forward(self, student_logits: torch.Tensor,
                teacher_logits: torch.Tensor) -> torch.Tensor:
        """(N, K) student and teacher logits -> scalar loss."""
        if student_logits.shape != teacher_logits.shape:
            raise ValueError(
                f'LogitKDLoss got student logits {tuple(student_logits.shape)}'
                f' and teacher logits {tuple(teacher_logits.shape)}; teacher '
                'and student must predict the same classes.')
        target = F.softmax(teacher_logits.float() / self.tau, dim=1)
        log_prob = F.log_softmax(student_logits.float() / self.tau, dim=1)
        cross_entropy = -(target * log_prob).sum(dim=1).mean()
        return self.alpha * self.tau**2 * cross_entropy
