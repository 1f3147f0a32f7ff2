"""What a stage and the distiller ask of a projector, a feature loss and a
logit loss.

A new one is one registered module with these members; nothing that wires
them changes. :class:`ScaleKDStage` builds a projector per view of its
feature loss, with the shapes read off the networks, and hands the loss
what each view's projector made of the student feature.
"""
from typing import Dict, Mapping, Optional, Protocol, Tuple, \
    runtime_checkable

import torch

__all__ = ['Projector', 'FeatureLoss', 'LogitLoss']


@runtime_checkable
class Projector(Protocol):
    """Maps a student feature onto teacher tokens.

    Built from its config with four more keys, read off the networks:
    ``student_channels`` (Cs), ``student_size`` ((Hs, Ws)),
    ``teacher_channels`` (Ct) and ``query_size`` ((Hq, Wq), the teacher's
    token grid).
    """

    #: Whether ``queries`` come from outside (the final stage then passes
    #: the projections of teacher parameter perception).
    takes_queries: bool

    def __call__(self, student: torch.Tensor,
                 queries: Optional[torch.Tensor]) -> torch.Tensor:
        """Student feature (N, Cs, Hs, Ws) and queries (N, Hq*Wq, Ct) or
        None -> tokens (N, Hq*Wq, Ct)."""


@runtime_checkable
class FeatureLoss(Protocol):
    """Compares projected student features with a teacher feature."""

    #: The views it compares, each fed by its own projector (e.g.
    #: ``('spatial', 'frequency')``); a view switched off is left out.
    views: Tuple[str, ...]

    def __call__(self, projections: Mapping[str, torch.Tensor],
                 target: torch.Tensor) -> Dict[str, torch.Tensor]:
        """View -> projected student map (N, C, H, W), for at least the
        ``views``, and the teacher map (N, C, H, W) -> scalar terms named
        ``loss_<term>``."""


@runtime_checkable
class LogitLoss(Protocol):
    """Compares student with teacher logits."""

    #: Its share of the classification loss: the student's own loss is
    #: weighted ``1 - alpha``.
    alpha: float

    def __call__(self, student_logits: torch.Tensor,
                 teacher_logits: torch.Tensor) -> torch.Tensor:
        """Logits (N, K) of both -> scalar loss."""
