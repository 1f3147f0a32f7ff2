"""One distilled stage of ScaleKD: its projectors and its loss."""
import inspect
from typing import Dict, Optional, Sequence, Tuple

import torch
from torch import nn

from mmpretrain.registry import MODELS

from mmscalekd.models.interfaces import FeatureLoss, Projector
from mmscalekd.models.teachers import FrozenTeacher, TeacherOutputs
from mmscalekd.models.utils import (build_at, check_flag, map_to_tokens,
                                    tokens_to_map)

__all__ = ['ScaleKDStage', 'build_stage']

# Read off the networks; a config never gives them.
_INFERRED = {
    'student_channels', 'student_size', 'teacher_channels', 'query_size'
}


@MODELS.register_module()
class ScaleKDStage(nn.Module):
    """One student feature, projected and compared with the teacher.

    One projector per view (spatial, frequency; method sections 1-2)
    projects the student feature onto teacher tokens, and ``loss`` compares
    each projection with its target:

    - a stage at the teacher's split point (``teacher_split`` set) with
      teacher parameter perception (method section 3) runs the frozen rest
      of the teacher on each projection, giving ``P_sp`` / ``P_fr``, which
      mimic the teacher's final feature ``T_last``;
    - the same stage without perception (the paper's ablation) compares
      each projection with the teacher's own tokens at the split point;
    - a final stage (no ``teacher_split``) projects onto the teacher's last
      grid and mimics ``T_last``, with the projections of another stage as
      queries when its projector takes queries
      (``CrossAttentionProjector(self_query=False)``).

    Args:
        name (str): ``'perception'`` or ``'final'``, the stage's config key
            ``model.<name>_stage`` and the prefix of its loss names.
        student_tap (str): the student module whose output is distilled,
            e.g. ``'backbone.layer3'``.
        projector (dict): a :class:`Projector` config, e.g.
            ``dict(type='CrossAttentionProjector', num_heads=16)``; its
            shapes are inferred. One is built per view of the loss.
        loss (dict): a :class:`FeatureLoss` config, e.g.
            ``dict(type='DualViewFeatureLoss', spatial_weight=0.08,
            frequency_weight=0.06)``; a view of weight 0 is off.
        student_shape (tuple): (Cs, Hs, Ws) of the student feature
            (inferred by the distiller).
        target_shape (tuple): (Ct, Hq, Wq) of the teacher tokens projected
            onto (inferred by the distiller).
        teacher_split (int, optional): the teacher's split point, for the
            stage at it (read by the distiller to build the teacher).
        teacher_perception (bool): run the teacher's rest on the
            projections (default) or compare them at the split point.
        query_views (sequence): views whose projections another stage takes
            as queries: their projectors exist even when their loss is off.
    """

    def __init__(self,
                 name: str,
                 student_tap: str,
                 projector: dict,
                 loss: dict,
                 student_shape: Tuple[int, int, int],
                 target_shape: Tuple[int, int, int],
                 teacher_split: Optional[int] = None,
                 teacher_perception: bool = True,
                 query_views: Sequence[str] = ()) -> None:
        super().__init__()
        self.name = name
        self.student_tap = student_tap
        self.teacher_split = teacher_split
        self.teacher_perception = check_flag(
            teacher_perception, f'model.{name}_stage.teacher_perception')
        self.loss = build_at(loss, f'model.{name}_stage.loss', FeatureLoss,
                             'DualViewFeatureLoss')
        self.views = tuple(self.loss.views)
        # The loss's views, then those only another stage's queries need.
        built_views = list(dict.fromkeys((*self.views, *query_views)))
        if not built_views:
            raise ValueError(
                f'`model.{name}_stage.loss` switches both views off '
                '(e.g. spatial_weight and frequency_weight are 0), so the '
                'stage computes nothing. Give one view a weight > 0' +
                (', or set `model.final_stage.projector.self_query=False` '
                 'to use this stage only as the source of the final queries'
                 if teacher_split is not None else '') +
                '; or leave out both stages for logit distillation only.')
        if query_views and not teacher_perception:
            raise ValueError(
                '`model.final_stage.projector.self_query=False` takes its '
                'queries from teacher parameter perception, which '
                f'`model.{name}_stage.teacher_perception=False` switches '
                'off; set `final_stage.projector.self_query=True`.')
        student_channels, *student_size = student_shape
        teacher_channels, *query_size = target_shape
        self.projectors = nn.ModuleDict({
            view: build_at(
                dict(
                    projector,
                    student_channels=student_channels,
                    student_size=tuple(student_size),
                    teacher_channels=teacher_channels,
                    query_size=tuple(query_size)),
                f'model.{name}_stage.projector', Projector,
                'CrossAttentionProjector')
            for view in built_views
        })
        self.takes_queries = any(
            p.takes_queries for p in self.projectors.values())
        if self.takes_queries and teacher_split is not None:
            raise ValueError(
                f'`model.{name}_stage.projector` takes queries from outside '
                '(self_query=False), but only the final stage has a source '
                'of queries (teacher parameter perception); set '
                '`self_query=True`.')
        projector_module = self.projectors[built_views[0]]
        #: What the weights' names and shapes do not show.
        self.architecture = {
            'student_tap': student_tap,
            'projector.type': type(projector_module).__name__,
            'projector.num_heads': getattr(projector_module, 'num_heads',
                                           None),
            'projector.self_query': not self.takes_queries,
        }
        if teacher_split is not None:
            self.architecture.update(
                teacher_split=teacher_split,
                teacher_perception=teacher_perception)

    def projector_inputs(
        self,
        student_feature: torch.Tensor,
        queries: Optional[Dict[str, torch.Tensor]] = None
    ) -> Dict[str, Tuple[torch.Tensor, Optional[torch.Tensor]]]:
        """View -> what its projector receives: the student feature (N, Cs,
        Hs, Ws) and its queries as tokens (N, Hq*Wq, Ct), or None for
        learned ones."""
        return {
            view: (student_feature, map_to_tokens(queries[view])
                   if self.takes_queries else None)
            for view in self.projectors
        }

    def forward(self,
                student_feature: torch.Tensor,
                teacher: FrozenTeacher,
                outputs: TeacherOutputs,
                queries: Optional[Dict[str, torch.Tensor]] = None
                ) -> Tuple[Dict[str, torch.Tensor], Dict[str, torch.Tensor]]:
        """Losses of one stage.

        Args:
            student_feature (Tensor): (N, Cs, Hs, Ws) at ``student_tap``.
            teacher (FrozenTeacher): for the rest of the teacher.
            outputs (TeacherOutputs): the teacher's forward on the batch.
            queries (dict, optional): view -> map (N, Ct, Hq, Wq), the
                projections of another stage, for a projector that takes
                queries.

        Returns:
            tuple: ``loss_<name>_<term>`` losses, and view -> the projected
            map each view's loss compared (N, C, H, W): ``P_sp`` / ``P_fr``
            at a stage with teacher parameter perception.
        """
        projected = {}
        for view, received in self.projector_inputs(student_feature,
                                                    queries).items():
            tokens = self.projectors[view](*received)
            if self.teacher_split is None:
                projected[view] = tokens_to_map(
                    tokens, outputs.final_feature.shape[2:])
            elif self.teacher_perception:
                projected[view] = teacher.forward_rest(
                    tokens, outputs.split_size, outputs.split_extra_tokens)
            else:
                projected[view] = tokens_to_map(tokens, outputs.split_size)
        losses = self.loss(projected, self.target(outputs))
        return {
            key.replace('loss', f'loss_{self.name}', 1): value
            for key, value in losses.items()
        }, projected

    def target(self, outputs: TeacherOutputs) -> torch.Tensor:
        """The teacher feature (N, C, H, W) the projections mimic."""
        if self.teacher_split is not None and not self.teacher_perception:
            return tokens_to_map(outputs.split_tokens, outputs.split_size)
        return outputs.final_feature


def build_stage(name: str, cfg: dict, **inferred) -> ScaleKDStage:
    """Build ``model.<name>_stage`` from its config, naming the key at
    fault: shapes given, unknown keys, a ``type`` that is no stage."""
    where = f'model.{name}_stage'
    cfg = dict(cfg)
    stage_type = cfg.pop('type', 'ScaleKDStage')
    stage_cls = MODELS.get(stage_type) if isinstance(stage_type, str) \
        else stage_type
    if not (isinstance(stage_cls, type) and
            issubclass(stage_cls, ScaleKDStage)):
        raise KeyError(
            f'`{where}.type={stage_type!r}` is not a stage: leave it out '
            "or set it to 'ScaleKDStage' (or a registered subclass).")
    given = sorted(_INFERRED & (set(cfg) | set(cfg.get('projector') or {})))
    if given:
        raise KeyError(f'`{where}`: {given} are read off the networks; '
                       'remove them.')
    for key in ('student_tap', 'projector', 'loss'):
        if key not in cfg:
            raise KeyError(f'`{where}.{key}` is required.')
    allowed = set(inspect.signature(stage_cls).parameters)
    allowed -= {'name', *inferred}
    unknown = sorted(set(cfg) - allowed)
    if unknown:
        raise KeyError(f'Unknown key(s) {unknown} in `{where}`; allowed keys '
                       f'are {sorted(allowed | {"type"})}.')
    return stage_cls(name=name, **cfg, **inferred)
