"""Take the student out of a ScaleKD (or logit-KD) training checkpoint.

Writes, into OUT_DIR:

- ``student.pth``: an mmpretrain checkpoint of the student classifier alone
  (``state_dict`` without the ``student.`` prefix, ``meta.dataset_meta``
  when the run recorded it), and ``student_config.py``: the distillation
  config with ``model`` replaced by the student. Together::

      model = mmpretrain.get_model('OUT_DIR/student_config.py',
                                   pretrained='OUT_DIR/student.pth')
      ImageClassificationInferencer('OUT_DIR/student_config.py',
                                    pretrained='OUT_DIR/student.pth')

- ``backbone.pth``: the backbone alone (keys ``backbone.*``), for a
  downstream mmdet / mmseg model:
  ``init_cfg=dict(type='Pretrained', checkpoint='OUT_DIR/backbone.pth',
  prefix='backbone.')``.
- ``<timm model name>.safetensors`` for students built on
  ``TimmStudentBackbone``: the timm model with the student's head as its
  classifier, which ``timm.create_model(name, pretrained=True,
  pretrained_cfg_overlay=dict(file=..., num_classes=K), num_classes=K)``
  loads strictly.

Projectors and the frozen teacher are left behind (the teacher is never in
training checkpoints).

Usage::

    python tools/model_converters/extract_student.py CONFIG CHECKPOINT OUT_DIR
"""
import argparse
import copy
import os
import os.path as osp
from typing import Dict, Optional

import torch
from mmengine.config import Config

__all__ = [
    'checked_student_state_dict', 'extract_student', 'student_state_dict',
    'timm_state_dict'
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
    """The student's weights, refused unless they fit the config's student.

    A checkpoint of another run (another student width or depth, a student
    trained alone) would otherwise be written out as if it were this
    student, and fail (or, worse, half-load) only where it is used.
    """
    from mmengine.registry import init_default_scope

    from mmpretrain.registry import MODELS

    from mmscalekd.engine.training_checkpoint import check_model_weights
    student = student_state_dict(state_dict)
    init_default_scope('mmpretrain')
    model = MODELS.build(copy.deepcopy(student_cfg))
    check_model_weights(model, student,
                        f'CHECKPOINT {checkpoint!r} (its student.* weights)')
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
    from mmpretrain.registry import MODELS
    backbone = MODELS.build(dict(backbone_cfg))
    head_type = (student_cfg.get('head') or {}).get('type')
    if head_type != 'LinearClsHead' or student_cfg.get('neck') is not None:
        raise ValueError(
            'A timm student exports to timm with `neck=None` and a '
            f'`LinearClsHead`; this one has neck={student_cfg.get("neck")} '
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


def _student_config(cfg: Config, student_cfg: dict) -> Config:
    """The distillation config with the student as ``model``."""
    cfg = cfg.copy()
    data_preprocessor = cfg.model.get('data_preprocessor')
    cfg.model = student_cfg
    if data_preprocessor is not None:
        cfg.model['data_preprocessor'] = data_preprocessor
    return cfg


def extract_student(config: str, checkpoint: str, out_dir: str) -> dict:
    """Write the student files for ``checkpoint`` into ``out_dir``.

    Returns:
        dict: kind (``'student'``, ``'config'``, ``'backbone'``,
        ``'timm'``) -> path written.
    """
    from mmscalekd.engine.training_checkpoint import read_training_checkpoint
    cfg = Config.fromfile(config)
    if cfg.model.get('type') != 'ScaleKDDistiller':
        raise ValueError(f'CONFIG {config!r} is not a distillation config '
                         '(model.type is not ScaleKDDistiller).')
    student_cfg = cfg.model.student.to_dict()
    training = read_training_checkpoint(checkpoint, 'CHECKPOINT')
    student = checked_student_state_dict(student_cfg, checkpoint,
                                         training['state_dict'])
    meta = dict(training.get('meta') or {})
    student_meta = {
        key: meta[key]
        for key in ('dataset_meta', 'mmengine_version', 'seed', 'epoch',
                    'iter') if key in meta
    }
    student_meta['extracted_from'] = osp.abspath(checkpoint)

    os.makedirs(out_dir, exist_ok=True)
    written = dict(
        student=osp.join(out_dir, 'student.pth'),
        config=osp.join(out_dir, 'student_config.py'),
        backbone=osp.join(out_dir, 'backbone.pth'))
    torch.save(dict(meta=student_meta, state_dict=student),
               written['student'])
    _student_config(cfg, student_cfg).dump(written['config'])
    backbone = {k: v for k, v in student.items() if k.startswith('backbone.')}
    torch.save(dict(meta=student_meta, state_dict=backbone),
               written['backbone'])

    timm_weights = timm_state_dict(student_cfg, student)
    if timm_weights is not None:
        from safetensors.torch import save_file
        name = student_cfg['backbone']['model_name']
        written['timm'] = osp.join(out_dir, f'{name}.safetensors')
        save_file(timm_weights, written['timm'])
    return written


def parse_args():
    parser = argparse.ArgumentParser(
        description='Extract the student of a ScaleKD checkpoint as an '
        'mmpretrain checkpoint, a backbone checkpoint and (timm students) a '
        'timm safetensors file.')
    parser.add_argument('config', help='the distillation config')
    parser.add_argument('checkpoint', help='the distillation checkpoint')
    parser.add_argument('out_dir', help='folder for the student files')
    return parser.parse_args()


def main():
    args = parse_args()
    import mmscalekd  # noqa: F401  (registers TimmStudentBackbone)
    for kind, path in extract_student(args.config, args.checkpoint,
                                      args.out_dir).items():
        print(f'{kind}: {path}')


if __name__ == '__main__':
    main()
