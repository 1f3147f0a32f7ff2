"""One distilled stage of ScaleKD: its projectors and its loss."""
import inspect
from typing import Dict, Optional, Sequence, Tuple

import torch
from torch import nn

from mmpretrain.registry import MODELS

from mmscalekd.models.teachers import FrozenTeacher, TeacherOutputs
from mmscalekd.models.utils import (build_at, check_flag, map_to_tokens,
                                    tokens_to_map)

__all__ = ['ScaleKDStage', 'build_stage']

# Stage keys of the flat configs before the nested form, and where they went.
_MOVED_KEYS = {
    'num_heads': 'projector.num_heads',
    'self_query': 'projector.self_query',
    'softmax_scale': 'projector.softmax_scale',
    'norm_cfg': 'projector.norm_cfg',
    'conv_impl': 'projector.conv_impl',
    'spatial_weight': 'loss.spatial_weight',
    'frequency_weight': 'loss.frequency_weight',
}
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
        projector (dict): a projector config, e.g.
            ``dict(type='CrossAttentionProjector', num_heads=16)``; its
            shapes are inferred.
        loss (dict): a loss with ``views``, e.g.
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
        self.loss = build_at(loss, f'model.{name}_stage.loss')
        self.views = tuple(self.loss.views)
        built_views = [v for v in ('spatial', 'frequency')
                       if v in self.views or v in query_views]
        if not built_views:
            raise ValueError(
                f'`model.{name}_stage.loss` switches both views off '
                '(spatial_weight and frequency_weight are 0), so the stage '
                'computes nothing. Give one view a weight > 0' +
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
                f'model.{name}_stage.projector')
            for view in built_views
        })
        self.takes_queries = any(
            getattr(p, 'takes_queries', False)
            for p in self.projectors.values())
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
            tuple: ``loss_<name>_<view>`` losses, and view -> the projected
            map each view's loss compared (N, C, H, W): ``P_sp`` / ``P_fr``
            at a stage with teacher parameter perception.
        """
        projected = {}
        for view, projector in self.projectors.items():
            tokens = projector(
                student_feature,
                map_to_tokens(queries[view]) if self.takes_queries else None)
            if self.teacher_split is None:
                projected[view] = tokens_to_map(
                    tokens, outputs.final_feature.shape[2:])
            elif self.teacher_perception:
                projected[view] = teacher.forward_rest(
                    tokens, outputs.split_size, outputs.split_extra_tokens)
            else:
                projected[view] = tokens_to_map(tokens, outputs.split_size)
        spatial = projected.get('spatial')
        frequency = projected.get('frequency')
        losses = self.loss(spatial if spatial is not None else frequency,
                           self.target(outputs), frequency)
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
    fault: flat keys of the old form, shapes given, unknown keys."""
    where = f'model.{name}_stage'
    for key in cfg:
        if key in _MOVED_KEYS:
            raise KeyError(
                f'`{where}.{key}` is now `{where}.{_MOVED_KEYS[key]}`: the '
                'stage config is nested, e.g. perception_stage=dict('
                "student_tap='backbone.layer3', teacher_split=2, projector="
                "dict(type='CrossAttentionProjector', num_heads=16), loss="
                "dict(type='DualViewFeatureLoss', spatial_weight=0.08, "
                'frequency_weight=0.06)).')
    given = sorted(_INFERRED & (set(cfg) | set(cfg.get('projector') or {})))
    if given:
        raise KeyError(f'`{where}`: {given} are read off the networks; '
                       'remove them.')
    for key in ('student_tap', 'projector', 'loss'):
        if key not in cfg:
            raise KeyError(f'`{where}.{key}` is required.')
    stage = dict(type='ScaleKDStage', name=name, **cfg, **inferred)
    allowed = set(inspect.signature(MODELS.get(stage['type'])).parameters)
    allowed -= {'name', *inferred}
    unknown = sorted(set(cfg) - allowed - {'type'})
    if unknown:
        raise KeyError(f'Unknown key(s) {unknown} in `{where}`; allowed keys '
                       f'are {sorted(allowed)}.')
    return MODELS.build(stage)
