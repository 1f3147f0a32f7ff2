"""The pair builder: a teacher, a student, data and a recipe in, a ScaleKD
config and its two baselines out (``tools/misc/scalekd_config.py``)."""
from dataclasses import dataclass
from typing import Dict, Optional

from .rules import Choice, choose, describe, stage_settings
from .sources import (BuilderError, inspect_student, inspect_teacher,
                      load_source_config, resolve_source, student_model,
                      teacher_model)
from .writer import (data_settings, folder_settings, runtime_config,
                     write_configs)

__all__ = [
    'BuilderError', 'Choice', 'PairPlan', 'plan_pair', 'write_pair',
    'data_settings', 'folder_settings', 'runtime_config', 'resolve_source'
]


@dataclass
class PairPlan:
    """Everything the configs of a pair are written from.

    Attributes:
        name (str): the file stem, ``<teacher>_<student>`` by default.
        choices (dict): setting -> :class:`Choice`.
        model (dict): the ScaleKD distiller's model dict, with the student's
            merged model dict in ``student``.
        baseline_logit_kd (dict, optional): the logit-KD baseline's
            ``logit_kd``; None where the classes differ (no baseline).
        recipe_reference (str): the recipe config the student config
            inherits.
        student_override (dict): the student config's ``model`` keys over
            the recipe's.
        data (dict): the data part of the student config.
    """
    name: str
    choices: Dict[str, Choice]
    model: dict
    baseline_logit_kd: Optional[dict]
    recipe_reference: str
    student_override: dict
    data: dict

    def lines(self):
        return describe(self.choices)


def plan_pair(teacher: str,
              student: str,
              teacher_checkpoint: Optional[str] = None,
              recipe: Optional[str] = None,
              data: Optional[dict] = None,
              num_classes: Optional[int] = None,
              input_size: int = 224,
              feature_only: bool = False,
              name: Optional[str] = None,
              overrides: Optional[dict] = None,
              student_checkpoint: Optional[str] = None) -> PairPlan:
    """Choose every setting of the pair's ScaleKD config.

    Args:
        teacher, student (str): sources (``--teacher``, ``--student``): an
            mmpretrain config ``'mmpretrain::...'``, a config file, or
            ``'timm/<model name>'``.
        teacher_checkpoint (str, optional): ``--teacher-checkpoint``.
        recipe (str, optional): the training recipe (``--recipe``); by
            default the student's own config.
        data (dict, optional): the data part (:func:`data_settings`, or an
            image-folder data dict); its ``num_classes`` is used when
            ``num_classes`` is None.
        num_classes (int, optional): the student's classes
            (``--num-classes``); by default the recipe's.
        input_size (int): the training images' size (``--input-size``).
        feature_only (bool): no logit distillation (``--feature-only``).
        name (str, optional): the file stem (``--name``).
        overrides (dict, optional): see :func:`rules.choose`.
        student_checkpoint (str, optional): weights the student starts from
            (``--student-checkpoint``): ``model.init_cfg`` of the student
            config, which the distiller loads strictly.
    """
    data = dict(data or {})
    if num_classes is None:
        num_classes = data.pop('num_classes', None)
    data.pop('classes', None)
    teacher_source = resolve_source(teacher, '--teacher')
    student_source = resolve_source(student, '--student')
    if recipe is None:
        if student_source.kind == 'timm':
            raise BuilderError(
                f'`--student {student}` is a timm model, which brings no '
                'training recipe; give one with `--recipe` (e.g. `--recipe '
                'mmpretrain::resnet/resnet50_8xb32_in1k.py`).')
        recipe_source = student_source
    else:
        recipe_source = resolve_source(recipe, '--recipe',
                                       timm_allowed=False)
    recipe_cfg = load_source_config(recipe_source)
    if num_classes is not None and recipe_cfg.get('data_preprocessor'):
        # Batch augments (Mixup, CutMix) one-hot the labels with it.
        data.setdefault('data_preprocessor', dict(num_classes=num_classes))
    merged_student = student_model(student_source, recipe_cfg, input_size,
                                   num_classes)
    if student_source == recipe_source:
        override = {} if num_classes is None else dict(
            head=dict(num_classes=num_classes))
    else:
        override = dict(merged_student, _delete_=True)
    if student_checkpoint is not None:
        start = dict(type='Pretrained', checkpoint=student_checkpoint)
        merged_student['init_cfg'] = start
        override['init_cfg'] = start
    teacher_config = teacher_model(teacher_source, input_size)
    overrides = dict(overrides or {})
    teacher_info = inspect_teacher(teacher_config, input_size,
                                   overrides.get('teacher_split'))
    student_info = inspect_student(merged_student, input_size)
    choices = choose(teacher_config, teacher_info, merged_student,
                     student_info, input_size, feature_only, overrides)
    baseline = dict(type='LogitKDLoss', tau=choices['tau'].value,
                    alpha=choices['alpha'].value) \
        if 'tau' in choices else None
    logit_kd = baseline if choices['logit_kd'].value else None
    perception, final = stage_settings(choices)
    model = dict(
        type='ScaleKDDistiller', student=merged_student,
        teacher=dict(config=teacher_config, checkpoint=teacher_checkpoint),
        perception_stage=perception, final_stage=final, logit_kd=logit_kd,
        input_size=input_size)
    return PairPlan(name or f'{teacher_source.name}_{student_source.name}',
                    choices, model, baseline, recipe_source.reference,
                    override, data)


def write_pair(plan: PairPlan, out_dir: str) -> Dict[str, str]:
    """Write the plan's configs into ``out_dir``; returns their paths."""
    model = plan.model
    return write_configs(
        out_dir, plan.name, plan.recipe_reference,
        load_source_config(resolve_source(plan.recipe_reference,
                                          '--recipe', timm_allowed=False)),
        plan.student_override, plan.data, model['teacher'],
        (model['perception_stage'], model['final_stage']),
        model['logit_kd'], plan.baseline_logit_kd, model['input_size'],
        plan.lines())
