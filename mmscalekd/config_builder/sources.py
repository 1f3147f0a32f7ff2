"""Teacher, student and recipe sources: what ``--teacher``, ``--student``
and ``--recipe`` name, resolved to configs and inspected networks."""
import functools
import os.path as osp
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

import torch
from mmengine.config import Config
from torch import nn

from mmpretrain.registry import MODELS

__all__ = [
    'BuilderError', 'Source', 'resolve_source', 'load_source_config',
    'teacher_model', 'student_model', 'TeacherInfo', 'StudentInfo',
    'inspect_teacher', 'inspect_student'
]

_FORMS = ("an mmpretrain config ('mmpretrain::resnet/resnet18_8xb32_in1k"
          ".py'), a config file, or 'timm/<model name>'")


class BuilderError(ValueError):
    """A choice of the pair builder that cannot work; names the flag."""


@dataclass(frozen=True)
class Source:
    """A resolved source.

    Attributes:
        flag (str): the flag it came from, e.g. ``'--teacher'``.
        kind (str): ``'mmpretrain'``, ``'file'`` or ``'timm'``.
        reference (str): what a config names it by: the
            ``'mmpretrain::...'`` string, the file's absolute path, or the
            timm model name.
        name (str): a short name for file stems, e.g. ``'swin-large'``.
    """
    flag: str
    kind: str
    reference: str
    name: str


def resolve_source(text: str, flag: str, timm_allowed: bool = True
                   ) -> Source:
    """``--teacher`` / ``--student`` / ``--recipe`` -> :class:`Source`."""
    if not isinstance(text, str) or not text:
        raise BuilderError(f'`{flag}` is empty; give {_FORMS}.')
    if text.startswith('timm/'):
        import timm
        name = text[len('timm/'):]
        if not timm_allowed:
            raise BuilderError(
                f'`{flag} {text}`: a timm model is no training recipe; give '
                'an mmpretrain config or a config file.')
        if not timm.is_model(name):
            close = timm.list_models(f'*{name.split("_")[0]}*')[:8]
            raise BuilderError(
                f'`{flag} {text}`: timm has no model {name!r}; use one of '
                f'`timm.list_models()` (e.g. {close}).')
        return Source(flag, 'timm', name, name)
    if '::' in text:
        from mmengine.hub import get_config
        try:
            get_config(text)
        except Exception as error:  # mmengine raises several kinds here
            raise BuilderError(
                f'`{flag} {text}`: mmpretrain has no such config ({error}); '
                'the path after `mmpretrain::` is relative to mmpretrain\'s '
                'configs/, e.g. `mmpretrain::resnet/resnet18_8xb32_in1k.py`.'
            ) from None
        return Source(flag, 'mmpretrain', text, _stem(text))
    if osp.isfile(text):
        path = osp.abspath(text)
        return Source(flag, 'file', path, _stem(path))
    raise BuilderError(f'`{flag} {text}` is no file, no `mmpretrain::` '
                       f'config and no `timm/` model; give {_FORMS}.')


def _stem(path: str) -> str:
    """``'.../student_resnet50_8xb32_in1k.py'`` -> ``'resnet50'``."""
    stem = osp.splitext(osp.basename(path))[0]
    for prefix in ('student_', 'teacher_'):
        if stem.startswith(prefix):
            stem = stem[len(prefix):]
    return stem.split('_')[0]


@functools.lru_cache(maxsize=None)
def _load(reference: str) -> Config:
    if '::' in reference:
        from mmengine.hub import get_config
        return get_config(reference)
    return Config.fromfile(reference)


def load_source_config(source: Source) -> Config:
    """The config a non-timm source names (read once per process)."""
    return _load(source.reference)


def _timm_kwargs(name: str, input_size: int) -> dict:
    """``img_size`` for a timm model whose size is fixed at build time (ViTs,
    Mixers, Swins) when the chosen input size is not its default."""
    import timm
    default = timm.get_pretrained_cfg_value(name, 'input_size')
    if default is not None and default[-1] == input_size:
        return {}
    try:
        timm.create_model(name, pretrained=False, num_classes=0,
                          img_size=input_size)
    except TypeError:  # a convolutional model takes any size
        return {}
    return dict(img_size=input_size)


def teacher_model(source: Source, input_size: int):
    """``model.teacher.config``: the config reference, or for a timm model
    the ``TimmClassifier`` dict (random weights unless a checkpoint is
    given; nothing is downloaded)."""
    if source.kind == 'timm':
        return dict(type='TimmClassifier', model_name=source.reference,
                    **_timm_kwargs(source.reference, input_size))
    return source.reference


def student_model(source: Source, recipe: Config, input_size: int,
                  num_classes: Optional[int]) -> dict:
    """The student classifier's model dict, as the written config merges
    it (the recipe's model updated by the student)."""
    import timm
    model = recipe.model.to_dict()
    if source.kind == 'timm':
        backbone = dict(type='TimmStudentBackbone',
                        model_name=source.reference)
        kwargs = _timm_kwargs(source.reference, input_size)
        if kwargs:
            backbone['model_kwargs'] = kwargs
        features = timm.create_model(source.reference, pretrained=False,
                                     num_classes=0, **kwargs).num_features
        model.update(backbone=backbone, neck=None)
        model['head'] = dict(model.get('head') or {}, in_channels=features)
        if 'type' not in model['head']:
            model['head'].update(type='LinearClsHead',
                                 loss=dict(type='CrossEntropyLoss'))
    elif load_source_config(source).filename != recipe.filename:
        model = load_source_config(source).model.to_dict()
    if num_classes is not None:
        model['head'] = dict(model.get('head') or {}, num_classes=num_classes)
    return model


@dataclass
class TeacherInfo:
    """What the rules read off the teacher (one forward at the input size).

    Attributes:
        family (str): the adapter's family, e.g. ``'SwinTransformer'``.
        unit (str): ``'stage'`` or ``'block'``.
        num_units (int): stages / blocks.
        split (int): the split point the shapes were read at.
        split_shape (tuple): (C, H, W) of the tokens at the split.
        final_shape (tuple): (C, H, W) of the final feature.
        num_classes (int): classes the teacher predicts.
    """
    family: str
    unit: str
    num_units: int
    split: int
    split_shape: Tuple[int, int, int]
    final_shape: Tuple[int, int, int]
    num_classes: int


# Built networks by their model dict, so that one process inspecting many
# pairs (the tests, a sweep) builds each large teacher once.
_NETWORKS: Dict[str, nn.Module] = {}


def _network(model: dict) -> nn.Module:
    key = repr(model)
    if key not in _NETWORKS:
        torch.manual_seed(0)
        _NETWORKS[key] = MODELS.build(model).eval()
    return _NETWORKS[key]


def _model_dict(config) -> dict:
    from mmscalekd.models.teachers import load_teacher_model_config
    return load_teacher_model_config(config)


def inspect_teacher(config, input_size: int,
                    split: Optional[int] = None) -> TeacherInfo:
    """Build the teacher (random weights) and read its split-point and final
    shapes; ``split`` None: the family's rule (see ``rules.teacher_split``).
    """
    from mmscalekd.models.teachers import (PlainViTTeacherAdapter,
                                           build_teacher_adapter)

    from .rules import teacher_split
    model = _model_dict(config)
    network = _network(model)
    try:
        adapter = build_teacher_adapter(network, 0)
    except TypeError as error:
        raise BuilderError(f'`--teacher`: {error}') from None
    unit = 'block' if isinstance(adapter, PlainViTTeacherAdapter) \
        else 'stage'
    count = adapter.num_split_units
    if split is None:
        split = teacher_split(unit, count).value
    try:
        adapter = build_teacher_adapter(network, split)
    except ValueError as error:
        raise BuilderError(
            str(error).replace('`model.perception_stage.teacher_split=',
                               '`--teacher-split ')) from None
    try:
        with torch.no_grad():
            out = adapter(torch.zeros(1, 3, input_size, input_size))
    except (AssertionError, RuntimeError, ValueError) as error:
        raise BuilderError(
            f'`--input-size {input_size}`: the {adapter.family} teacher does '
            f'not run at {input_size} px ({error}); choose the size it was '
            'built for (224 for the ImageNet configs).') from None
    split_shape = (out.split_tokens.shape[-1], *out.split_size)
    return TeacherInfo(adapter.family, unit, count, split, split_shape,
                       tuple(out.final_feature.shape[1:]),
                       out.logits.shape[-1])


@dataclass
class StudentInfo:
    """What the rules read off the student (one forward at the input size).

    Attributes:
        family (str): the backbone's class or timm model name.
        candidates (list): ``(module name, (C, H, W), gives tokens)`` of
            every stage / block a tap may name, in order.
        num_classes (int): classes the student predicts.
        num_parameters (int): the student's parameters.
    """
    family: str
    candidates: List[Tuple[str, Tuple[int, int, int], bool]]
    num_classes: int
    num_parameters: int


def _candidate_names(student: nn.Module) -> List[str]:
    """The stages or blocks of a student backbone, as tap names."""
    backbone = student.backbone
    if hasattr(backbone, 'model') and hasattr(backbone.model,
                                              'feature_info'):
        return [f'backbone.model.{info["module"]}'
                for info in backbone.model.feature_info]
    for attribute in ('res_layers', 'stages', 'layers'):
        value = getattr(backbone, attribute, None)
        if isinstance(value, (list, tuple)) and value and all(
                isinstance(v, str) for v in value):
            return [f'backbone.{v}' for v in value]
        if isinstance(value, nn.ModuleList) and len(value):
            return [f'backbone.{attribute}.{i}' for i in range(len(value))]
    return []


def inspect_student(model: dict, input_size: int) -> StudentInfo:
    """Build the student (random weights) and read the shape of every stage
    or block a tap may name."""
    from mmscalekd.models.utils import (ModuleOutputsRecorder,
                                        StudentFeatureReader)
    student = _network(model)
    names = _candidate_names(student)
    backbone = student.backbone
    family = getattr(backbone, 'model_name', type(backbone).__name__)
    if not names:
        raise BuilderError(
            f'`--student`: the {family} backbone has no stages or blocks to '
            'tap (no `res_layers`, `stages` or `layers`, no timm '
            '`feature_info`); ScaleKD taps two of them. Choose a student '
            'with stages or blocks (a ResNet, ConvNeXt, ViT, Mixer or timm '
            'model).')
    recorder = ModuleOutputsRecorder({name: name for name in names})
    images = torch.zeros(1, 3, input_size, input_size)
    with torch.no_grad(), recorder.record(student) as outputs:
        logits = student(images, mode='tensor')
    reader = StudentFeatureReader.from_student(student)
    candidates = []
    for name in names:
        output = outputs.get(name)
        try:
            feature = reader(output, images.shape[-2:], 'perception')
        except ValueError:
            continue  # not a map or tokens: no tap
        tokens = isinstance(output, torch.Tensor) and output.dim() == 3
        candidates.append((name, tuple(feature.shape[1:]), tokens))
    return StudentInfo(family, candidates, logits.shape[-1],
                       sum(p.numel() for p in student.parameters()))

