"""The student's start from pretrained weights, loaded strictly.

``model.student.init_cfg=dict(type='Pretrained', checkpoint=...)`` is how
mmpretrain starts a classifier from a file; mmengine's ``PretrainedInit``
loads it with ``strict=False`` and only logs what did not fit, which would
leave a student partly random. The distiller takes that entry out of the
student's ``init_cfg`` and loads the file itself, into the student alone
(projectors and teacher are not touched), refusing missing or unexpected
keys, other shapes and non-finite values.
"""
import copy
from typing import Dict, Optional, Tuple

import torch
from torch import nn

from mmscalekd.utils.checkpoint import (CheckpointError, check_finite_weights,
                                        describe_mismatch,
                                        load_state_dict_file)

__all__ = ['load_student_start', 'split_student_start']

KEY = 'model.student.init_cfg'
_OPTIONS = {'type', 'checkpoint', 'prefix', 'map_location'}


def split_student_start(student: dict) -> Tuple[dict, Optional[dict]]:
    """``student`` without its ``Pretrained`` init_cfg entry, and that
    entry (None when there is none)."""
    student = copy.deepcopy(dict(student))
    init_cfg = student.get('init_cfg')
    entries = [init_cfg] if isinstance(init_cfg, dict) else list(
        init_cfg or [])
    starts = [entry for entry in entries
              if isinstance(entry, dict) and entry.get('type') == 'Pretrained']
    if not starts:
        return student, None
    if len(starts) > 1:
        raise ValueError(
            f'`{KEY}` has {len(starts)} Pretrained entries; the student '
            'starts from one file: keep one.')
    start = dict(starts[0])
    unknown = sorted(set(start) - _OPTIONS)
    if unknown or not isinstance(start.get('checkpoint'), str) or \
            not start['checkpoint']:
        raise ValueError(
            f"`{KEY}=dict(type='Pretrained', ...)` takes `checkpoint` (a "
            'student file, e.g. epoch_3_student.pth, or an mmpretrain '
            "classifier checkpoint) and optionally `prefix` ('student.' "
            'for a distillation checkpoint); '
            + (f'it has {unknown}.' if unknown else
               f'its checkpoint is {start.get("checkpoint")!r}.'))
    others = [entry for entry in entries if entry is not starts[0]]
    if others:
        student['init_cfg'] = others if isinstance(init_cfg, list) else \
            others[0]
    else:
        student.pop('init_cfg')
    return student, start


def _timm_names(student: nn.Module, state_dict: Dict[str, torch.Tensor]
                ) -> Dict[str, torch.Tensor]:
    """A ``TimmStudentBackbone`` student's student file holds timm's names
    (it is written as mmpretrain's ``TimmClassifier``): back to the
    student's."""
    classifier = getattr(student.backbone, 'classifier_name', None)
    if classifier is None or any(k.startswith('backbone.')
                                 for k in state_dict):
        return state_dict
    renamed = {}
    for key, value in state_dict.items():
        if key.split('.')[0] == classifier:
            renamed['head.fc.' + key[len(classifier) + 1:]] = value
        else:
            renamed['backbone.model.' + key] = value
    return renamed


def load_student_start(student: nn.Module, start: dict) -> None:
    """Load ``start['checkpoint']`` into ``student``, strictly.

    Raises:
        CheckpointError: the file is unreadable, its weights do not fit
            the student exactly (the keys and shapes are named) or hold NaN
            or Inf.
    """
    path, prefix = start['checkpoint'], start.get('prefix')
    source = f'`{KEY}.checkpoint={path!r}`'
    state_dict = load_state_dict_file(path, f'{KEY}.checkpoint')
    if prefix:
        state_dict = {key[len(prefix):]: value
                      for key, value in state_dict.items()
                      if key.startswith(prefix)}
    state_dict = _timm_names(student, state_dict)
    mismatch = describe_mismatch(student.state_dict(), state_dict)
    problems = []
    for kind, words in (('missing', 'missing'),
                        ('unexpected', 'not in the student'),
                        ('mismatched', 'other shapes'),
                        ('dtypes', 'other kinds of dtype')):
        if mismatch[kind]:
            problems.append(f'{words}: {mismatch[kind][:5]}' + (
                f' and {len(mismatch[kind]) - 5} more'
                if len(mismatch[kind]) > 5 else ''))
    if problems:
        if not prefix and any(k.startswith('student.') for k in state_dict):
            fix = ("it is a distillation checkpoint: add prefix='student.' "
                   'or use its student file (<checkpoint>_student.pth).')
        else:
            fix = ('it holds another network: use a checkpoint of this '
                   'student (the same type, widths and classes).')
        raise CheckpointError(
            f'{source} does not fit `model.student` '
            f'({type(student).__name__}): ' + '; '.join(problems) +
            f'. The student is loaded strictly; {fix}')
    check_finite_weights(state_dict, source)
    student.load_state_dict(state_dict, strict=True)
