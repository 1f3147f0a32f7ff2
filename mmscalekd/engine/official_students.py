"""The students the ScaleKD authors released, as mmpretrain checkpoints.

The library of ``tools/model_converters/scalekd_official_student.py``; its
docstring gives the facts about the authors' files that this module relies
on and where they come from. Here: one :class:`OfficialFamily` per released
student (how mmpretrain 1.2 builds it, which keys tell it from the others,
how its weights are renamed), :func:`infer_family`, and
:func:`convert_official_student`, which writes the files.
"""
import copy
import os
import os.path as osp
import re
from dataclasses import dataclass, field
from typing import Dict, Optional, Tuple

import torch
from mmengine.config import Config
from mmengine.hub import get_config
from mmengine.registry import init_default_scope

from mmpretrain.registry import MODELS

from mmscalekd.utils.checkpoint import CheckpointError, check_finite_weights
from .student_export import (STUDENT_PREFIX, config_header,
                             student_checkpoint, student_state_dict,
                             timm_classifier_config)
from .training_checkpoint import check_model_weights, read_training_checkpoint

__all__ = [
    'FAMILIES', 'OfficialFamily', 'convert_official_student',
    'infer_family', 'official_model_config', 'official_student_weights',
    'to_mmpretrain_names'
]

WRITER = 'tools/model_converters/scalekd_official_student.py'

_GAP = dict(type='GlobalAveragePooling')


def _classifier(backbone: dict, in_channels: int, neck=_GAP) -> dict:
    return dict(
        type='ImageClassifier',
        backbone=backbone,
        neck=copy.deepcopy(neck),
        head=dict(type='LinearClsHead', in_channels=in_channels,
                  num_classes=1000, topk=(1, 5)))


@dataclass(frozen=True)
class OfficialFamily:
    """One released student.

    Args:
        name (str): the ``--family`` name.
        title (str): the name the authors' README gives it.
        model (dict): the student as mmpretrain 1.2 builds it.
        layout (str): how the authors' names become mmpretrain's:
            ``'same'`` (unchanged), ``'vit'`` (class token dropped) or
            ``'mobilenet'`` (their module -> timm's names).
        marker (tuple): keys of which one is in every file of the family's
            architecture, and in none of the other architectures.
        shapes (dict): key -> shape that tells the released size apart
            (``None`` for any length on that axis).
        depth (tuple): ``(key with {} for the block, number of blocks)``.
    """
    name: str
    title: str
    model: dict
    layout: str
    marker: Tuple[str, ...]
    shapes: Dict[str, tuple] = field(default_factory=dict)
    depth: Optional[Tuple[str, int]] = None


def _vit(name, title, arch, patch_size, dims):
    return OfficialFamily(
        name, title,
        _classifier(
            dict(type='VisionTransformer', arch=arch, img_size=224,
                 patch_size=patch_size, with_cls_token=False,
                 out_type='featmap'), dims),
        'vit', ('backbone.layers.0.attn.qkv.weight', ),
        {'backbone.patch_embed.projection.weight':
         (dims, 3, patch_size, patch_size)},
        ('backbone.layers.{}.ln1.weight', 12))


def _mixer(name, title, arch, patch_size, dims, layers):
    return OfficialFamily(
        name, title,
        _classifier(
            dict(type='MlpMixer', arch=arch, img_size=224,
                 patch_size=patch_size),
            dims, neck=dict(type='GlobalAveragePooling', dim=1)),
        'same', ('backbone.layers.0.token_mix.layers.0.0.weight', ),
        {'backbone.patch_embed.projection.weight':
         (dims, 3, patch_size, patch_size)},
        ('backbone.layers.{}.ln1.weight', layers))


# MobileNet-V1 as timm builds it (with ReLU, the authors' activation); the
# project's student layout for timm networks, which
# student_export writes as mmpretrain's TimmClassifier with timm's names.
_MOBILENET = dict(
    type='ImageClassifier',
    backbone=dict(type='TimmStudentBackbone', model_name='mobilenetv1_100',
                  model_kwargs=dict(act_layer='relu')),
    neck=None,
    head=dict(type='LinearClsHead', in_channels=1024, num_classes=1000,
              topk=(1, 5)))

FAMILIES: Dict[str, OfficialFamily] = {f.name: f for f in (
    OfficialFamily(
        'resnet50-d', 'ResNet-50 (ResNet-50-D)',
        _classifier(dict(type='ResNetV1d', depth=50, out_indices=(3, )),
                    2048),
        'same', ('backbone.stem.0.conv.weight', ),
        {'backbone.layer4.0.conv3.weight': (2048, 512, 1, 1)},
        ('backbone.layer3.{}.conv1.weight', 6)),
    OfficialFamily(
        'mobilenet-v1', 'MobileNet-V1', _MOBILENET, 'mobilenet',
        ('backbone.model.0.0.weight', 'backbone.s1.0.0.weight'),
        {'head.fc.weight': (None, 1024)}),
    OfficialFamily(
        'convnext-tiny', 'ConvNeXt-T',
        _classifier(dict(type='ConvNeXt', arch='tiny',
                         out_indices=(0, 1, 2, 3),
                         gap_before_final_norm=False), 768),
        'same', ('backbone.downsample_layers.0.0.weight', ),
        {'backbone.downsample_layers.0.0.weight': (96, 3, 4, 4)},
        ('backbone.stages.2.{}.depthwise_conv.weight', 9)),
    _mixer('mixer-s16', 'Mixer-S/16', 's', 16, 512, 8),
    _mixer('mixer-b16', 'Mixer-B/16', 'b', 16, 768, 12),
    _mixer('mixer-b14', 'Mixer-B/14', 'b', 14, 768, 12),
    _vit('vit-small', 'ViT-S/16 (DeiT-S)', 'deit-small', 16, 384),
    _vit('vit-base', 'ViT-B/16 (DeiT-B)', 'deit-base', 16, 768),
    _vit('vit-base-p14', 'ViT-B/14', 'deit-base', 14, 768),
    OfficialFamily(
        'swin-tiny', 'Swin-T',
        _classifier(dict(type='SwinTransformer', arch='tiny', img_size=224,
                         out_indices=(3, )), 768),
        'same', ('backbone.stages.0.blocks.0.attn.w_msa.qkv.weight', ),
        {'backbone.patch_embed.projection.weight': (96, 3, 4, 4)},
        ('backbone.stages.2.blocks.{}.norm1.weight', 6)),
)}

# The authors' evaluation: ImageNet-1k val as one folder per class (their
# README), short edge to 256 (bicubic), centre crop 224.
_TEST_PIPELINE = [
    dict(type='LoadImageFromFile'),
    dict(type='ResizeEdge', scale=256, edge='short', backend='pillow',
         interpolation='bicubic'),
    dict(type='CenterCrop', crop_size=224),
    dict(type='PackInputs'),
]
_PREPROCESSOR = dict(type='ClsDataPreprocessor',
                     mean=[123.675, 116.28, 103.53],
                     std=[58.395, 57.12, 57.375], to_rgb=True)


def _family(name: str) -> OfficialFamily:
    if name not in FAMILIES:
        raise ValueError(
            f'`--family {name}` is not a student the ScaleKD authors '
            f'released; choose one of {", ".join(FAMILIES)} (or leave '
            '`--family` out to tell it from the weights).')
    return FAMILIES[name]


# ------------------------------------------------------------- their files
def official_student_weights(state_dict: Dict[str, torch.Tensor],
                             source: str) -> Dict[str, torch.Tensor]:
    """The student's weights in one of the authors' files, with their names.

    A checkpoint of their distiller holds the student under ``student.``
    (beside ``teacher.``, ``distill_losses.`` and an unused ``linear.``);
    their ``pth_transfer.py`` writes the student alone, without prefix.
    """
    if any(key.startswith(STUDENT_PREFIX) for key in state_dict):
        return student_state_dict(state_dict)
    if state_dict and all(key.startswith(('backbone.', 'neck.', 'head.'))
                          for key in state_dict):
        return dict(state_dict)
    prefixes = sorted({key.split('.')[0] for key in state_dict})
    raise CheckpointError(
        f'{source} is not a student checkpoint of the ScaleKD authors\' '
        'code: it holds neither their distiller\'s `student.*` weights nor '
        'a classifier\'s `backbone.*` / `head.*` alone (its keys start with '
        f'{prefixes[:8]}). Give one of the files their README links.')


def _fits(family: OfficialFamily, student: Dict[str, torch.Tensor]) -> bool:
    for key, shape in family.shapes.items():
        have = tuple(student[key].shape) if key in student else None
        if have is None or len(have) != len(shape) or any(
                want is not None and want != got
                for want, got in zip(shape, have)):
            return False
    if family.depth is not None:
        key, blocks = family.depth
        if key.format(blocks - 1) not in student or key.format(
                blocks) in student:
            return False
    return True


def infer_family(student: Dict[str, torch.Tensor], source: str) -> str:
    """The family whose architecture and released size the weights have.

    Raises:
        CheckpointError: the keys are of no family's architecture, or of an
            architecture at a size no released student has.
    """
    shaped = [f for f in FAMILIES.values()
              if any(key in student for key in f.marker)]
    if not shaped:
        raise CheckpointError(
            f'{source} is not a student checkpoint of the ScaleKD authors\' '
            'code: its keys are of none of the students they released '
            f'({", ".join(FAMILIES)}), e.g. {sorted(student)[:3]}.')
    sized = [f.name for f in shaped if _fits(f, student)]
    if len(sized) == 1:
        return sized[0]
    names = [f.name for f in shaped]
    found = {key: tuple(student[key].shape)
             for f in shaped for key in f.shapes if key in student}
    raise CheckpointError(
        f'{source}: the weights are of the architecture of '
        f'{", ".join(names)}, but {"of several" if sized else "of none"} of '
        f'their released sizes ({found}). Pass `--family` (one of '
        f'{", ".join(sized or names)}) to say which student it is.')


# The authors' MobileNet-V1 (from the cls_KD code) is a list of 14 blocks:
# the stem (conv 0, BN 1) and 13 depthwise-separable blocks (depthwise conv
# 0, BN 1, pointwise conv 3, BN 4), kept as `model` (12) + `s4` (2), or in
# the four-stage split as `s1`-`s4` (4, 4, 4, 2). timm groups the 13 blocks
# in stages of 1, 2, 2, 6 and 2.
_MOBILENET_SPLITS = {
    'model': dict(model=0, s4=12),
    'stages': dict(s1=0, s2=4, s3=8, s4=12),
}
_TIMM_STAGES = (1, 2, 2, 6, 2)
_MOBILENET_KEY = re.compile(r'^backbone\.(model|s[1-4])\.(\d+)\.(\d+)\.(.+)$')


def _timm_mobilenet_name(block: int, layer: int, param: str) -> Optional[str]:
    if block == 0:
        part = {0: 'conv_stem', 1: 'bn1'}.get(layer)
    else:
        index, stage = block - 1, 0
        while stage < len(_TIMM_STAGES) and index >= _TIMM_STAGES[stage]:
            index -= _TIMM_STAGES[stage]
            stage += 1
        name = {0: 'conv_dw', 1: 'bn1', 3: 'conv_pw', 4: 'bn2'}.get(layer)
        part = (f'blocks.{stage}.{index}.{name}'
                if name and stage < len(_TIMM_STAGES) else None)
    return f'backbone.model.{part}.{param}' if part else None


def _mobilenet_names(student: Dict[str, torch.Tensor]):
    split = _MOBILENET_SPLITS[
        'model' if 'backbone.model.0.0.weight' in student else 'stages']
    out = {}
    for key, value in student.items():
        match = _MOBILENET_KEY.match(key)
        new = None
        if match and match.group(1) in split:
            block = split[match.group(1)] + int(match.group(2))
            new = _timm_mobilenet_name(block, int(match.group(3)),
                                       match.group(4))
        # A name that does not map stays as it is: the check against the
        # model then lists it.
        out[new or key] = value
    return out


def to_mmpretrain_names(family: OfficialFamily,
                        student: Dict[str, torch.Tensor]
                        ) -> Dict[str, torch.Tensor]:
    """The authors' student weights with the names (and, for the class
    token's position, the shape) of :func:`official_model_config`'s model."""
    student = dict(student)
    if family.layout == 'mobilenet':
        return _mobilenet_names(student)
    if family.layout == 'vit' and 'backbone.cls_token' in student:
        # Their ViT adds the position embedding to [class token, patches]
        # and then drops the class token, before the first block: the
        # token and its position entry reach nothing.
        student.pop('backbone.cls_token')
        pos_embed = student.get('backbone.pos_embed')
        if pos_embed is not None:
            student['backbone.pos_embed'] = pos_embed[:, 1:].contiguous()
    return student


def official_model_config(family: OfficialFamily,
                          student: Dict[str, torch.Tensor]) -> dict:
    """The family's mmpretrain model for these weights: their number of
    classes, and for a ViT the head their weights have (an averaged-token
    norm ``ln2`` under ``avg_token=True``, else pooling of the patch map)."""
    model = copy.deepcopy(family.model)
    head = student.get('head.fc.weight')
    if head is not None and head.dim() == 2:
        model['head']['num_classes'] = int(head.shape[0])
        if model['head']['num_classes'] < 5:
            model['head']['topk'] = (1, )
    if family.layout == 'vit' and 'backbone.ln2.weight' in student:
        model['backbone']['out_type'] = 'avg_featmap'
        model['neck'] = None
    model['data_preprocessor'] = dict(
        _PREPROCESSOR, num_classes=model['head']['num_classes'])
    return model


def _written_config(model: dict, topk: tuple) -> Config:
    """mmpretrain's runtime defaults, the student and the authors' test
    set-up: a config for mmpretrain's (and this project's) tools/test.py."""
    cfg = get_config('mmpretrain::_base_/default_runtime.py').to_dict()
    cfg.update(
        model=model,
        test_pipeline=copy.deepcopy(_TEST_PIPELINE),
        test_dataloader=dict(
            batch_size=64, num_workers=4,
            dataset=dict(type='ImageNet', data_root='data/imagenet',
                         data_prefix='val',
                         pipeline=copy.deepcopy(_TEST_PIPELINE)),
            sampler=dict(type='DefaultSampler', shuffle=False)),
        test_evaluator=dict(type='Accuracy', topk=tuple(topk)),
        test_cfg=dict())
    return Config(cfg)


def convert_official_student(checkpoint: str, out_dir: str,
                             family: Optional[str] = None,
                             name: Optional[str] = None,
                             cfg_options: Optional[dict] = None) -> dict:
    """Write the mmpretrain files of one of the authors' student files.

    Args:
        checkpoint (str): their file (a distiller checkpoint or the output of
            their ``pth_transfer.py``).
        out_dir (str): where the files go.
        family (str, optional): one of :data:`FAMILIES`; None: told from the
            weights (:func:`infer_family`).
        name (str, optional): the files' name; default: the family's.
        cfg_options (dict, optional): ``--cfg-options`` of the written
            config (e.g. ``test_dataloader.dataset.data_root``, or the
            model's arguments for a student of another size), applied
            before the weights are checked.

    Returns:
        dict: ``'checkpoint'``, ``'config'`` (and ``'timm'`` for a timm
        student) -> path written; ``'family'`` -> the family's name.

    Raises:
        CheckpointError / ValueError: the file is not one of theirs, the
            family is unknown or cannot be told, the converted keys do not
            fit the family, or a weight is NaN / Inf. Nothing is written.
    """
    source = f'CHECKPOINT {checkpoint!r}'
    if family is not None:
        _family(family)
    saved = read_training_checkpoint(checkpoint, 'CHECKPOINT')
    theirs = official_student_weights(saved['state_dict'], source)
    spec = _family(family or infer_family(theirs, source))
    student = to_mmpretrain_names(spec, theirs)
    model = official_model_config(spec, student)
    cfg = Config(dict(model=model))
    if cfg_options:
        # mmengine's merge takes `_delete_` out of the dicts it is given.
        cfg.merge_from_dict(copy.deepcopy(
            {k: v for k, v in cfg_options.items() if k.startswith('model.')}))
    student_cfg = cfg.model.to_dict()

    init_default_scope('mmpretrain')
    network = MODELS.build(copy.deepcopy(student_cfg))
    try:
        check_model_weights(
            network, student,
            f'{source} (its student, renamed as `--family {spec.name}`)')
    except CheckpointError as error:
        raise CheckpointError(
            f'{error} If the file is another student, pass its `--family` '
            '(or leave `--family` out to tell it from the weights).'
        ) from None
    check_finite_weights(student, f'{source} (its student weights)')

    written_model = timm_classifier_config(student_cfg) or student_cfg
    out_cfg = _written_config(written_model,
                              student_cfg['head'].get('topk', (1, )))
    if cfg_options:
        out_cfg.merge_from_dict(copy.deepcopy(cfg_options))
    files = student_checkpoint(student_cfg, student, saved.get('meta'),
                               checkpoint)
    files['meta'].update(
        official_family=spec.name,
        # mmengine's EMAHook saves the averaged weights as `state_dict`
        # and the trained ones as `ema_state_dict`.
        ema_weights='ema_state_dict' in saved)

    name = name or spec.name
    os.makedirs(out_dir, exist_ok=True)
    written = dict(family=spec.name,
                   checkpoint=osp.join(out_dir, f'{name}.pth'),
                   config=osp.join(out_dir, f'{name}_config.py'))
    torch.save(files, written['checkpoint'])
    with open(written['config'], 'w') as f:
        f.write(config_header(
            out_cfg, f"the ScaleKD authors' {spec.title} "
            f'({osp.basename(checkpoint)})', weights=f'{name}.pth',
            writer=WRITER, config_file=f'{name}_config.py') +
            out_cfg.pretty_text)
    if spec.layout == 'mobilenet':
        from safetensors.torch import save_file
        written['timm'] = osp.join(out_dir, f'{name}.safetensors')
        save_file(files['state_dict'], written['timm'])
    return written
