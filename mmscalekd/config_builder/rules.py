"""The pair builder's choices, by the rules the released configs follow
(docs/method.md, section 5.1). Every choice comes with its reason."""
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

from .sources import BuilderError, StudentInfo, TeacherInfo

__all__ = [
    'Choice', 'RELEASED_TEACHERS', 'RELEASED_PAIRS', 'student_key',
    'teacher_split', 'student_taps', 'choose', 'describe', 'stage_settings'
]


@dataclass(frozen=True)
class Choice:
    """A chosen setting and why it was chosen."""
    value: object
    reason: str


#: The released teachers, by the config the shipped configs name.
RELEASED_TEACHERS = {
    'mmpretrain::swin_transformer/swin-small_16xb64_in1k.py': 'Swin-S',
    'mmpretrain::swin_transformer/swin-base_16xb64_in1k.py': 'Swin-B',
    'mmpretrain::swin_transformer/swin-large_16xb64_in1k.py': 'Swin-L',
    'mmpretrain::_base_/models/eva/eva-l.py': 'BEiT-L',
}

#: The projector settings of every released pair (configs/scalekd/
#: scalekd_*.py): (heads, self_query) per stage and the softmax scale.
#: They follow no rule of the two networks' widths (Swin-L's 768 / 1536
#: channels get 16 / 24 heads from a ResNet-50 but 8 / 16 from a ConvNeXt-T
#: and 24 / 48 from a Swin-T), so they are kept as released.
RELEASED_PAIRS = {
    ('Swin-S', 'ResNet-50'): dict(num_heads=(3, 6), self_query=(True, True),
                                  softmax_scale=5.0),
    ('Swin-B', 'ResNet-50'): dict(num_heads=(8, 16), softmax_scale=5.0),
    ('Swin-L', 'ResNet-50'): dict(num_heads=(16, 24), softmax_scale=5.0),
    # the RSB-A2 recipe's ResNet-50 (mmpretrain's ResNetV1d)
    ('Swin-L', 'ResNetV1d-50'): dict(num_heads=(16, 24), softmax_scale=5.0),
    ('Swin-L', 'timm mobilenetv1_100'): dict(num_heads=(16, 24),
                                             softmax_scale=5.0),
    ('Swin-L', 'ConvNeXt-tiny'): dict(num_heads=(8, 16), softmax_scale=1.0),
    ('Swin-L', 'SwinTransformer-tiny'): dict(num_heads=(24, 48),
                                             softmax_scale=1.0),
    ('Swin-L', 'VisionTransformer-deit-base'): dict(num_heads=(8, 8),
                                                    softmax_scale=5.0),
    ('Swin-L', 'VisionTransformer-deit-small'): dict(num_heads=(8, 8),
                                                     softmax_scale=5.0),
    ('Swin-L', 'MlpMixer-b'): dict(num_heads=(8, 8), softmax_scale=5.0),
    ('Swin-L', 'timm mixer_s16_224'): dict(num_heads=(8, 8),
                                           softmax_scale=5.0),
    ('BEiT-L', 'ResNetV1d-50'): dict(num_heads=(8, 8), softmax_scale=0.2),
    ('BEiT-L', 'VisionTransformer-deit-base-p14'): dict(num_heads=(8, 8),
                                                        softmax_scale=1.0),
    ('BEiT-L', 'MlpMixer-b-p14'): dict(num_heads=(8, 8), softmax_scale=1.0),
}

# The DualViewFeatureLoss weights (spatial, frequency) by teacher kind: the
# Swin configs' and the BEiT-L configs' (configs/_base_/scalekd/).
_LOSS_WEIGHTS = {'stage': (0.08, 0.06), 'block': (0.016, 0.008)}
_DEFAULT_HEADS = 8


def student_key(model: dict) -> str:
    """The student's architecture as the released table names it, e.g.
    ``'ResNet-50'``, ``'MlpMixer-b-p14'``, ``'timm mobilenetv1_100'``."""
    backbone = model.get('backbone') or {}
    kind = backbone.get('type', '?')
    if kind == 'TimmStudentBackbone':
        return f'timm {backbone.get("model_name")}'
    arch = backbone.get('depth', backbone.get('arch'))
    key = kind if arch is None or isinstance(arch, dict) \
        else f'{kind}-{arch}'
    if backbone.get('patch_size') not in (None, 16):
        key += f'-p{backbone["patch_size"]}'
    return key


def teacher_split(unit: str, count: int) -> Choice:
    """The split point: before the last stage of a staged teacher, before
    the last two blocks of a plain ViT."""
    if unit == 'stage':
        return Choice(count - 2, f'after stage {count - 1} of {count}: the '
                      'rest is the last stage, as for the Swin teachers')
    return Choice(count - 3, f'after block {count - 2} of {count}: the rest '
                  'is the last two blocks, as for BEiT-L (21 of 24)')


def student_taps(info: StudentInfo, input_size: int) -> Choice:
    """The perception and final taps: for a student that keeps one grid
    (ViT, Mixer) the block at three quarters of the depth and the last
    block; for a staged one the last stage of each of its two coarsest
    resolutions."""
    candidates = info.candidates
    sizes = [shape[1:] for _, shape, _ in candidates]
    if len(set(sizes)) == 1:
        depth = len(candidates)
        if depth < 2:
            raise BuilderError(
                f'`--student`: the {info.family} backbone has one block; '
                'ScaleKD taps two. Name two modules with '
                '`--student-taps PERCEPTION,FINAL`.')
        first = max(3 * depth // 4 - 1, 0)
        return Choice(
            (candidates[first][0], candidates[-1][0]),
            f'{depth} blocks on one grid: block {first + 1} (three quarters '
            f'of the depth) and the last, as DeiT (9, 12) and Mixer-S '
            '(6, 8)')
    resolutions = sorted(set(sizes), key=lambda hw: hw[0] * hw[1])
    if len(resolutions) < 2:
        raise BuilderError(
            f'`--student`: the stages of the {info.family} backbone give '
            f'{len(resolutions)} resolution(s) at {input_size} px, and the '
            'rule taps the last stage of the two coarsest; name two modules '
            'with `--student-taps PERCEPTION,FINAL`.')
    chosen = []
    for hw in resolutions[1::-1]:
        chosen.append([name for (name, shape, _) in candidates
                       if shape[1:] == hw][-1])
    return Choice(
        tuple(chosen),
        f'the last stage at {resolutions[1][0]}x{resolutions[1][1]} and at '
        f'{resolutions[0][0]}x{resolutions[0][1]} ({input_size} px): the '
        'last two stages, as ResNet layer3 / layer4')


def _heads_rule(channels: int) -> int:
    """8 heads, or the largest head count up to 8 that divides the width."""
    return max(h for h in range(1, _DEFAULT_HEADS + 1) if channels % h == 0)


def choose(teacher_reference, teacher: TeacherInfo, student_model: dict,
           student: StudentInfo, input_size: int,
           feature_only: bool = False,
           overrides: Optional[dict] = None) -> Dict[str, Choice]:
    """Every setting of the ScaleKD config, with its reason.

    Args:
        teacher_reference: ``model.teacher.config`` (a released teacher is
            recognised by it).
        teacher (TeacherInfo): the teacher inspected at the split point of
            the rule or of ``overrides['teacher_split']``.
        student_model (dict): the student's merged model dict.
        student (StudentInfo): the student inspected at ``input_size``.
        feature_only (bool): no logit distillation (``--feature-only``).
        overrides (dict): flag values that replace a choice: keys
            ``student_taps``, ``teacher_split``, ``num_heads``,
            ``self_query`` (pairs), ``softmax_scale``, ``spatial_weights``,
            ``frequency_weights`` (pairs), ``tau``, ``alpha``.
    """
    overrides = {k: v for k, v in (overrides or {}).items() if v is not None}
    released_teacher = RELEASED_TEACHERS.get(teacher_reference) \
        if isinstance(teacher_reference, str) else None
    key = (released_teacher, student_key(student_model))
    released = RELEASED_PAIRS.get(key)
    where = (f'released for {key[0]} -> {key[1]}' if released else None)
    choices = dict(
        input_size=Choice(input_size, 'the training images\' size'),
        teacher_split=(
            Choice(teacher.split, 'set by --teacher-split')
            if 'teacher_split' in overrides else
            teacher_split(teacher.unit, teacher.num_units)),
        student_taps=(
            Choice(tuple(overrides['student_taps']), 'set by --student-taps')
            if 'student_taps' in overrides else
            student_taps(student, input_size)))
    widths = (teacher.split_shape[0], teacher.final_shape[0])
    if released:
        choices['num_heads'] = Choice(released['num_heads'], where)
        choices['self_query'] = Choice(
            released.get('self_query', (True, False)), where)
        choices['softmax_scale'] = Choice(released['softmax_scale'], where)
    else:
        choices['num_heads'] = Choice(
            tuple(_heads_rule(c) for c in widths),
            f'{_DEFAULT_HEADS} heads (the perception stage\'s in 9 of the 13 '
            f'released pairs, both stages\' in 7), fewer '
            f'where {_DEFAULT_HEADS} does not divide the teacher width '
            f'{widths}')
        choices['self_query'] = Choice(
            (True, False), 'learned queries for the perception stage; the '
            'final stage is queried by it (12 of 13 released pairs)')
        tokens = all(t for _, _, t in student.candidates)
        if teacher.unit == 'stage':
            scale = Choice(5.0, 'a staged teacher: 5.0, as the Swin '
                           'teachers with CNN, ViT and Mixer students')
        elif tokens:
            scale = Choice(1.0, 'a plain-ViT teacher and a token student: '
                           '1.0, as BEiT-L -> ViT-B/14 and Mixer-B/14')
        else:
            scale = Choice(0.2, 'a plain-ViT teacher and a CNN student: '
                           '0.2, as BEiT-L -> ResNet-50')
        choices['softmax_scale'] = scale
    weights = _LOSS_WEIGHTS[teacher.unit]
    weight_reason = ('the Swin configs\' (spatial, frequency)'
                     if teacher.unit == 'stage' else
                     'the BEiT-L configs\' (spatial, frequency)')
    spatial, frequency = (weights[0], weights[0]), (weights[1], weights[1])
    if key == ('Swin-S', 'ResNet-50'):
        frequency = (weights[1], 0.0)
        weight_reason = f'released for {key[0]} -> {key[1]}'
    choices['spatial_weights'] = Choice(spatial, weight_reason)
    choices['frequency_weights'] = Choice(frequency, weight_reason)
    choices.update(_logit_choices(key, teacher, student, feature_only))
    _apply_overrides(choices, overrides, student, widths)
    return choices


def _logit_choices(key, teacher: TeacherInfo, student: StudentInfo,
                   feature_only: bool) -> Dict[str, Choice]:
    """Logit KD in the ScaleKD config (``logit_kd``) and its ``tau`` /
    ``alpha``, also those of the logit-KD baseline, which needs only that
    both networks predict the same classes."""
    if teacher.num_classes != student.num_classes:
        return dict(logit_kd=Choice(False, (
            f'off: the teacher predicts {teacher.num_classes} classes and '
            f'the student {student.num_classes}; fine-tune the teacher on '
            'these classes to distil its logits (no logit-KD baseline)')))
    if feature_only:
        logit_kd = Choice(False, 'off: --feature-only')
    elif key == ('Swin-S', 'ResNet-50'):
        logit_kd = Choice(False, f'off: released for {key[0]} -> {key[1]}')
    else:
        logit_kd = Choice(True, 'every released pair but one')
    return dict(logit_kd=logit_kd,
                tau=Choice(1.0, 'every released logit KD'),
                alpha=Choice(0.5, 'every released logit KD'))


_OVERRIDE_FLAGS = dict(
    num_heads='--num-heads',
    self_query='--self-query', softmax_scale='--softmax-scale',
    spatial_weights='--spatial-weights',
    frequency_weights='--frequency-weights', tau='--tau', alpha='--alpha')


def _apply_overrides(choices: Dict[str, Choice], overrides: dict,
                     student: StudentInfo, widths: Sequence[int]) -> None:
    for key, flag in _OVERRIDE_FLAGS.items():
        if key not in overrides:
            continue
        if key in ('tau', 'alpha') and key not in choices:
            raise BuilderError(
                f'`{flag}` sets logit distillation, which is '
                f'{choices["logit_kd"].reason}; leave `{flag}` out.')
        choices[key] = Choice(overrides[key], f'set by {flag}')
    names = [name for name, _, _ in student.candidates]
    for tap in overrides.get('student_taps', ()):
        if tap not in names:
            raise BuilderError(
                f'`--student-taps`: {tap!r} is no stage or block of the '
                f'{student.family} student; choose two of {names}.')
    for stage, heads, width in zip(('perception', 'final'),
                                   choices['num_heads'].value, widths):
        if width % heads:
            divisors = [h for h in range(1, min(width, 64) + 1)
                        if width % h == 0]
            raise BuilderError(
                f'`--num-heads`: {heads} heads for the {stage} stage do not '
                f'divide the teacher width {width} there; choose one of '
                f'{divisors}.')
    alpha = choices.get('alpha')
    if alpha is not None and not 0 < alpha.value <= 1:
        raise BuilderError(f'`--alpha {alpha.value}` must lie in (0, 1], '
                           'the weight of the logit loss (0.5 released).')


def describe(choices: Dict[str, Choice]) -> List[str]:
    """One printed line per choice: the value and its reason."""
    return [f'{key:>18}: {choice.value!r:<40} {choice.reason}'
            for key, choice in choices.items()]


def stage_settings(choices: Dict[str, Choice]) -> Tuple[dict, dict]:
    """The distiller's ``perception_stage`` and ``final_stage``."""
    stages = []
    for index in range(2):
        stages.append(dict(
            student_tap=choices['student_taps'].value[index],
            projector=dict(
                type='CrossAttentionProjector',
                num_heads=choices['num_heads'].value[index],
                self_query=choices['self_query'].value[index],
                softmax_scale=choices['softmax_scale'].value),
            loss=dict(
                type='DualViewFeatureLoss',
                spatial_weight=choices['spatial_weights'].value[index],
                frequency_weight=choices['frequency_weights'].value[index])))
    stages[0] = dict(student_tap=stages[0]['student_tap'],
                     teacher_split=choices['teacher_split'].value,
                     projector=stages[0]['projector'],
                     loss=stages[0]['loss'])
    return stages[0], stages[1]
