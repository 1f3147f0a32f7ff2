"""The student of a ScaleKD (or logit-KD) checkpoint as files of its own.

The library of ``tools/model_converters/extract_student.py`` (see its
docstring for the files it writes) and of
:class:`~mmscalekd.engine.hooks.StudentCheckpointHook`, which writes the same
student file beside every checkpoint a distillation run saves.
"""
import copy
import inspect
import os
import os.path as osp
from typing import Dict, List, Optional

import mmengine.registry as engine_registries
import torch
from mmengine.config import Config
from mmengine.model import BaseModel
from mmengine.registry import init_default_scope
from mmengine.runner import Runner

import mmpretrain.registry as registries
from mmpretrain.registry import MODELS

from mmscalekd.utils.checkpoint import CheckpointError, non_finite_entries
from .training_checkpoint import check_model_weights, read_training_checkpoint

__all__ = [
    'RUNTIME_HOOKS', 'backbone_config', 'checked_student_state_dict',
    'config_header', 'extract_student', 'mmscalekd_types',
    'student_checkpoint', 'student_config', 'student_state_dict',
    'timm_classifier_config', 'timm_state_dict'
]

STUDENT_PREFIX = 'student.'


def student_state_dict(
        state_dict: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """Distiller state dict -> the student classifier's own."""
    student = {
        key[len(STUDENT_PREFIX):]: value
        for key, value in state_dict.items()
        if key.startswith(STUDENT_PREFIX)
    }
    if not student:
        raise ValueError(
            'The checkpoint holds no `student.*` weights: it is not a '
            'ScaleKDDistiller checkpoint.')
    return student


def checked_student_state_dict(student_cfg: dict, checkpoint: str,
                               state_dict: Dict[str, torch.Tensor]
                               ) -> Dict[str, torch.Tensor]:
    """The student's weights, refused unless they fit the config's student
    and are finite.

    A checkpoint of another run (another student width or depth, a student
    trained alone) would otherwise be written out as if it were this
    student, and fail (or, worse, half-load) only where it is used; one of a
    diverged run would give a student that predicts nothing.
    """
    student = student_state_dict(state_dict)
    init_default_scope('mmpretrain')
    model = MODELS.build(copy.deepcopy(student_cfg))
    check_model_weights(model, student,
                        f'CHECKPOINT {checkpoint!r} (its student.* weights)')
    bad = [STUDENT_PREFIX + name for name in non_finite_entries(student)]
    if bad:
        raise CheckpointError(
            f'CHECKPOINT {checkpoint!r} holds NaN or Inf values in '
            f'{len(bad)} student tensor(s) (e.g. {bad[:5]}): it was saved '
            'from a diverged run. Extract a checkpoint from before the '
            'divergence.')
    return student


def timm_state_dict(student_cfg: dict,
                    student: Dict[str, torch.Tensor]
                    ) -> Optional[Dict[str, torch.Tensor]]:
    """The timm model's state dict of a ``TimmStudentBackbone`` student.

    ``backbone.model.*`` are timm's own names; the mmpretrain
    ``LinearClsHead`` (``head.fc``) becomes timm's classifier (``head`` for
    MLP-Mixer, ``classifier`` for MobileNet, as the model's
    ``pretrained_cfg`` names it). None for other students.
    """
    backbone_cfg = student_cfg.get('backbone') or {}
    if backbone_cfg.get('type') != 'TimmStudentBackbone':
        return None
    backbone = MODELS.build(dict(backbone_cfg))
    head_type = (student_cfg.get('head') or {}).get('type')
    if head_type != 'LinearClsHead' or student_cfg.get('neck') is not None:
        raise ValueError(
            'A timm student exports to timm with `neck=None` and a '
            f'`LinearClsHead`; this one has neck={student_cfg.get("neck")!r} '
            f'and head {head_type!r}.')
    prefix = 'backbone.model.'
    weights = {
        key[len(prefix):]: value.contiguous()
        for key, value in student.items() if key.startswith(prefix)
    }
    classifier = backbone.classifier_name
    for name in ('weight', 'bias'):
        weights[f'{classifier}.{name}'] = student[f'head.fc.{name}']
    return weights


def timm_classifier_config(student_cfg: dict) -> Optional[dict]:
    """mmpretrain's ``TimmClassifier`` for a ``TimmStudentBackbone`` student.

    The student (timm network without its classifier, then a
    ``LinearClsHead``) is timm's whole network with the head as its
    classifier: ``TimmClassifier`` builds exactly that, with timm's own
    parameter names (the :func:`timm_state_dict` weights), and needs no
    mmscalekd. None for other students.
    """
    backbone_cfg = student_cfg.get('backbone') or {}
    if backbone_cfg.get('type') != 'TimmStudentBackbone':
        return None
    head = student_cfg.get('head') or {}
    model = dict(
        type='TimmClassifier',
        model_name=backbone_cfg['model_name'],
        pretrained=False,
        num_classes=head['num_classes'],
        **(backbone_cfg.get('model_kwargs') or {}))
    if 'loss' in head:
        model['loss'] = head['loss']
    for key in ('train_cfg', 'data_preprocessor'):
        if student_cfg.get(key) is not None:
            model[key] = student_cfg[key]
    return model


def _is_network(value) -> bool:
    """Whether a config value describes a network (a classifier or a
    distiller), e.g. the ``teacher`` / ``student`` building blocks that
    distillation configs keep at the top level."""
    if not isinstance(value, dict) or not isinstance(value.get('type'), str):
        return False
    cls = MODELS.get(value['type'])
    return isinstance(cls, type) and issubclass(cls, BaseModel)


def mmscalekd_types(cfg: dict) -> List[str]:
    """The ``type`` names in ``cfg`` that only mmscalekd registers."""
    names = set()

    def collect(value):
        if isinstance(value, dict):
            if isinstance(value.get('type'), str):
                names.add(value['type'].split('.')[-1])
            for item in value.values():
                collect(item)
        elif isinstance(value, (list, tuple)):
            for item in value:
                collect(item)

    collect(cfg)
    found = set()
    for module in (registries, engine_registries):
        for registry in vars(module).values():
            if not isinstance(registry, engine_registries.Registry):
                continue
            for name in names:
                cls = registry.module_dict.get(name)
                if cls is not None and getattr(
                        cls, '__module__', '').startswith('mmscalekd'):
                    found.add(name)
    return sorted(found)


# The hooks of configs/_base_/scalekd_runtime.py (mmscalekd's own).
RUNTIME_HOOKS = ('WorkDirHook', 'CheckpointCheckHook', 'FiniteCheckHook',
                 'DataCheckHook', 'TeacherValHook', 'GlobalBatchHook',
                 'StudentCheckpointHook')


def student_config(cfg: Config) -> Config:
    """The distillation config as the student\'s own mmpretrain config.

    ``model`` becomes the student (with the distiller's data preprocessor;
    a timm student becomes :func:`timm_classifier_config`). What only
    distillation and mmscalekd need goes: ``mmscalekd`` in
    ``custom_imports``, the hooks of ``configs/_base_/scalekd_runtime.py``
    and its ``work_dir_lock``, top-level network dicts other than ``model``
    (the teacher / student building blocks) and top-level values that no
    runner reads but that name mmscalekd types. Data, schedule and runtime
    settings stay, so the student can be tested and fine-tuned with
    mmpretrain\'s own tools.
    """
    student_cfg = cfg.model.student.to_dict()
    data_preprocessor = cfg.model.get('data_preprocessor')
    if data_preprocessor is not None:
        student_cfg['data_preprocessor'] = data_preprocessor.to_dict()
    timm_model = timm_classifier_config(student_cfg)
    out = copy.deepcopy(cfg)
    out.model = timm_model if timm_model is not None else student_cfg
    custom_imports = out.get('custom_imports')
    if custom_imports is not None:
        imports = [name for name in custom_imports.get('imports', [])
                   if name.split('.')[0] != 'mmscalekd']
        if imports:
            out.custom_imports.imports = imports
        else:
            out.pop('custom_imports')
    hooks = [hook for hook in out.get('custom_hooks') or []
             if hook.get('type') not in RUNTIME_HOOKS]
    if hooks:
        out.custom_hooks = hooks
    else:
        out.pop('custom_hooks', None)
    out.pop('work_dir_lock', None)
    # Top-level values that no runner reads but that name mmscalekd types
    # are distillation building blocks too (the variables of the bases the
    # ScaleKD configs share, configs/_base_/scalekd/).
    runner_keys = set(inspect.signature(Runner.__init__).parameters)
    for key in [k for k in out.keys() if k != 'model']:
        if _is_network(out[key]) or (key not in runner_keys
                                     and mmscalekd_types(out[key])):
            out.pop(key)
    return out


def backbone_config(student_cfg: dict, backbone_file: str) -> Config:
    """The student's backbone as a config of its own, for ``backbone.pth``.

    ``backbone`` is the student's backbone dict as the distillation config
    gives it (type and every argument), with its type scoped to mmpretrain
    (mmdet and mmseg register backbones of the same names whose weights are
    named otherwise) and an ``init_cfg`` that loads ``backbone_file``;
    ``custom_imports`` registers the type (mmscalekd too for its own
    backbones, e.g. ``TimmStudentBackbone``).
    """
    backbone = copy.deepcopy(dict(student_cfg['backbone']))
    imports = ['mmpretrain.models']
    if mmscalekd_types(dict(type=backbone['type'])):
        imports.append('mmscalekd')
    if '.' not in backbone['type']:
        backbone['type'] = f'mmpretrain.{backbone["type"]}'
    backbone['init_cfg'] = dict(
        type='Pretrained', checkpoint=osp.abspath(backbone_file),
        prefix='backbone.')
    return Config(dict(
        custom_imports=dict(imports=imports, allow_failed_imports=False),
        backbone=backbone))


def _backbone_header(config: str) -> str:
    return '\n'.join([
        f'# The student backbone of {config}, written by',
        '# tools/model_converters/extract_student.py beside backbone.pth:',
        '# its type and arguments, so that every weight of the file fits.',
        "# Use `backbone` as a downstream model's backbone (with",
        "# `_delete_=True` in place of that model's own); its init_cfg",
        '# loads backbone.pth.',
    ]) + '\n'


def config_header(cfg: Config, config: str,
                  weights: str = 'student.pth',
                  writer: str = 'tools/model_converters/extract_student.py',
                  config_file: str = 'student_config.py') -> str:
    """The comment that heads a written student config (``config_file``):
    how to load it with ``weights``, and what in it still needs mmscalekd."""
    lines = [
        f'# The student of {config}, written by',
        f'# {writer}: load with',
        f"# mmpretrain.get_model('{config_file}', "
        f"pretrained='{weights}').",
    ]
    if cfg.model.get('type') == 'TimmClassifier':
        lines += [
            '# The student was TimmStudentBackbone + LinearClsHead; it is',
            "# written as mmpretrain's TimmClassifier, the same network",
            "# with timm's parameter names (needs timm, not mmscalekd).",
        ]
    leftover = mmscalekd_types(cfg.to_dict())
    if leftover:
        lines += [
            f'# Only mmscalekd registers {", ".join(leftover)} (outside',
            '# `model`): loading the model does not need it; training or',
            '# testing with these settings does (add',
            "# custom_imports=dict(imports=['mmscalekd']) or replace them).",
        ]
    return '\n'.join(lines) + '\n'


def student_checkpoint(student_cfg: dict, student: Dict[str, torch.Tensor],
                       meta: Optional[dict], source: str) -> dict:
    """What ``student.pth`` holds: the student's weights as mmpretrain names
    them for the :func:`student_config` model (timm's names for a timm
    student, which is written as a ``TimmClassifier``) and the run's
    ``meta`` (``dataset_meta``, versions, seed, epoch, iter) with
    ``extracted_from``: the checkpoint ``source``."""
    meta = dict(meta or {})
    student_meta = {
        key: meta[key]
        for key in ('dataset_meta', 'mmengine_version', 'seed', 'epoch',
                    'iter') if key in meta
    }
    student_meta['extracted_from'] = osp.abspath(source)
    timm_weights = timm_state_dict(student_cfg, student)
    return dict(meta=student_meta,
                state_dict=student if timm_weights is None else timm_weights)


def extract_student(config: str, checkpoint: str, out_dir: str) -> dict:
    """Write the student files for ``checkpoint`` into ``out_dir``.

    Returns:
        dict: kind (``'student'``, ``'config'``, ``'backbone'``,
        ``'backbone_config'``, ``'timm'``) -> path written.
    """

    cfg = Config.fromfile(config)
    if cfg.model.get('type') != 'ScaleKDDistiller':
        raise ValueError(f'CONFIG {config!r} is not a distillation config '
                         '(model.type is not ScaleKDDistiller).')
    student_cfg = cfg.model.student.to_dict()
    training = read_training_checkpoint(checkpoint, 'CHECKPOINT')
    student = checked_student_state_dict(student_cfg, checkpoint,
                                         training['state_dict'])
    student_file = student_checkpoint(student_cfg, student,
                                      training.get('meta'), checkpoint)

    os.makedirs(out_dir, exist_ok=True)
    written = dict(
        student=osp.join(out_dir, 'student.pth'),
        config=osp.join(out_dir, 'student_config.py'),
        backbone=osp.join(out_dir, 'backbone.pth'),
        backbone_config=osp.join(out_dir, 'backbone_config.py'))
    out_cfg = student_config(cfg)
    torch.save(student_file, written['student'])
    with open(written['config'], 'w') as f:  # what Config.dump writes
        f.write(config_header(out_cfg, config) + out_cfg.pretty_text)
    backbone = {k: v for k, v in student.items() if k.startswith('backbone.')}
    torch.save(dict(meta=student_file['meta'], state_dict=backbone),
               written['backbone'])
    with open(written['backbone_config'], 'w') as f:
        f.write(_backbone_header(config) + backbone_config(
            student_cfg, written['backbone']).pretty_text)

    if student_cfg['backbone'].get('type') == 'TimmStudentBackbone':
        from safetensors.torch import save_file
        name = student_cfg['backbone']['model_name']
        written['timm'] = osp.join(out_dir, f'{name}.safetensors')
        save_file(student_file['state_dict'], written['timm'])
    return written
