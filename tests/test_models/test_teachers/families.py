"""Tiny teachers of every family an adapter serves, for the adapter tests.

Each :class:`Case` is one teacher configuration with what its adapter must
give: the adapter class, the unit of its split, the shapes at a split and
at the end, and (where the family has one) the network's own final feature
to compare with. Every case has four split units, so the valid splits are
0, 1 and 2.
"""
from typing import Callable, NamedTuple, Optional

import torch

from mmpretrain.registry import MODELS

from mmscalekd.models.teachers import (
    BEiTTeacherAdapter, ConvNeXtTeacherAdapter, DeiT3TeacherAdapter,
    DistilledVisionTransformerTeacherAdapter, SwinTeacherAdapter,
    SwinV2TeacherAdapter, TimmSwinTeacherAdapter,
    TimmVisionTransformerTeacherAdapter, VisionTransformerTeacherAdapter)
from tests.conftest import tiny_swin_teacher

NUM_CLASSES = 5


class Case(NamedTuple):
    """One tiny teacher and what its adapter gives."""
    config: dict
    adapter: type
    image_size: int
    unit: str
    #: split -> ((H, W), C) of the split tokens
    split_shape: Callable[[int], tuple]
    final_shape: tuple  # (C, H, W)
    num_extra: int = 0
    #: (teacher, images) -> the network's own final feature, where the
    #: family's released model gives one per position
    own_final: Optional[Callable] = None
    family: str = ''

    def build(self):
        torch.manual_seed(0)
        teacher = MODELS.build(self.config)
        teacher.init_weights()
        if self.family == 'vit':
            # The ViT heads start at zero: the logit check would be vacuous.
            for param in teacher.head.parameters():
                torch.nn.init.normal_(param, std=0.2)
        return teacher.eval()


def _backbone_last(teacher, inputs):
    return teacher.backbone(inputs)[-1]


def _pyramid(image_size, channels):
    """A 4-stage backbone with 4 px patches: grids halve, stage ``s``."""
    return lambda split: ((image_size // 4 // 2**split, ) * 2,
                          channels(split))


# mmpretrain Swin: the smoke config's teacher, 64 px, 32..256 channels.
def _swin(**backbone):
    return Case(tiny_swin_teacher(**backbone), SwinTeacherAdapter, 64,
                'stage', _pyramid(64, lambda s: 32 * 2**s), (256, 2, 2),
                own_final=_backbone_last, family='swin')


def swin_v2_teacher(extra_norm_every_n_blocks=0, **backbone):
    return dict(
        type='ImageClassifier',
        backbone=dict(
            type='SwinTransformerV2',
            arch=dict(
                embed_dims=32,
                depths=[1, 1, 2, 1],
                num_heads=[1, 2, 4, 8],
                extra_norm_every_n_blocks=extra_norm_every_n_blocks),
            img_size=64,
            window_size=[2, 2, 2, 2],
            **backbone),
        neck=dict(type='GlobalAveragePooling'),
        head=dict(
            type='LinearClsHead', num_classes=NUM_CLASSES, in_channels=256))


def _swin_v2(**backbone):
    return Case(swin_v2_teacher(**backbone), SwinV2TeacherAdapter, 64,
                'stage', _pyramid(64, lambda s: 32 * 2**s), (256, 2, 2),
                own_final=_backbone_last, family='swin_v2')


CONVNEXT_CHANNELS = [16, 32, 48, 64]


def convnext_teacher(**backbone):
    # mmpretrain's ConvNeXt recipe: with the default
    # gap_before_final_norm=True the backbone pools itself, so no neck.
    neck = None
    if not backbone.get('gap_before_final_norm', True):
        neck = dict(type='GlobalAveragePooling')
    return dict(
        type='ImageClassifier',
        backbone=dict(
            type='ConvNeXt',
            arch=dict(depths=[1, 1, 2, 1], channels=CONVNEXT_CHANNELS),
            **backbone),
        neck=neck,
        head=dict(
            type='LinearClsHead',
            num_classes=NUM_CLASSES,
            in_channels=CONVNEXT_CHANNELS[-1]))


def _convnext(**backbone):
    # Per position only without the released gap_before_final_norm=True,
    # which normalises the pooled vector alone.
    own = None if backbone.get('gap_before_final_norm', True) \
        else _backbone_last
    return Case(convnext_teacher(**backbone), ConvNeXtTeacherAdapter, 64,
                'stage', _pyramid(64, CONVNEXT_CHANNELS.__getitem__),
                (64, 2, 2), own_final=own, family='convnext')


# Plain mmpretrain ViTs: 32 px images in 8 px patches (a 4x4 grid).
VIT_SIZE, VIT_GRID, VIT_CHANNELS = 32, 4, 32


def vit_teacher(backbone_type='VisionTransformer', depth=4, head=None,
                neck=None, **backbone):
    backbone = dict(
        type=backbone_type,
        arch=dict(
            embed_dims=VIT_CHANNELS,
            num_layers=depth,
            num_heads=2,
            feedforward_channels=2 * VIT_CHANNELS),
        img_size=VIT_SIZE,
        patch_size=VIT_SIZE // VIT_GRID,
        **backbone)
    head = head or dict(type='LinearClsHead')
    return dict(
        type='ImageClassifier',
        backbone=backbone,
        neck=neck,
        head=dict(num_classes=NUM_CLASSES, in_channels=VIT_CHANNELS, **head))


def _vit(config, adapter, num_extra):
    # The backbone gives the final feature as a map for out_type='featmap'.
    own = _backbone_last if config['backbone'].get(
        'out_type') == 'featmap' else None
    return Case(config, adapter, VIT_SIZE, 'block',
                lambda split: ((VIT_GRID, VIT_GRID), VIT_CHANNELS),
                (VIT_CHANNELS, VIT_GRID, VIT_GRID), num_extra, own,
                family='vit')


VIT_CLS_HEAD = dict(type='VisionTransformerClsHead')

# timm models with random weights (``pretrained`` stays False: nothing is
# downloaded), in mmpretrain's TimmClassifier.
TIMM_SIZE, TIMM_GRID = 64, 4


def timm_teacher(model_name, **kwargs):
    return dict(type='TimmClassifier', model_name=model_name,
                num_classes=NUM_CLASSES, **kwargs)


def tiny_timm_vit(model_name, **kwargs):
    return timm_teacher(
        model_name, img_size=TIMM_SIZE, patch_size=TIMM_SIZE // TIMM_GRID,
        embed_dim=32, depth=4, num_heads=2, **kwargs)


def _timm_vit(config, num_prefix):

    def own_final(teacher, inputs):
        # timm's own normed patch tokens, as a map
        tokens = teacher.model.forward_features(inputs)[:, num_prefix:]
        return tokens.transpose(1, 2).reshape(
            tokens.shape[0], -1, TIMM_GRID, TIMM_GRID)

    return Case(config, TimmVisionTransformerTeacherAdapter, TIMM_SIZE,
                'block', lambda split: ((TIMM_GRID, TIMM_GRID), 32),
                (32, TIMM_GRID, TIMM_GRID), num_prefix, own_final,
                family='timm')


def tiny_timm_swin(**kwargs):
    return timm_teacher(
        'swin_tiny_patch4_window7_224', img_size=TIMM_SIZE, embed_dim=16,
        depths=(1, 1, 2, 1), num_heads=(1, 2, 4, 8), window_size=2,
        **kwargs)


def _timm_swin(**kwargs):
    return Case(tiny_timm_swin(**kwargs), TimmSwinTeacherAdapter, TIMM_SIZE,
                'stage', _pyramid(TIMM_SIZE, lambda s: 16 * 2**s),
                (128, 2, 2),
                own_final=lambda teacher, inputs: teacher.model.
                forward_features(inputs).permute(0, 3, 1, 2),
                family='timm')


CASES = {
    'swin': _swin(),
    'swin-out_indices_123': _swin(out_indices=(1, 2, 3)),
    'swin-abs_pos': _swin(use_abs_pos_embed=True),
    'swin_v2': _swin_v2(),
    'swin_v2-out_indices_123': _swin_v2(out_indices=(1, 2, 3)),
    'swin_v2-abs_pos': _swin_v2(use_abs_pos_embed=True),
    'swin_v2-extra_norm': _swin_v2(extra_norm_every_n_blocks=1),
    'convnext': _convnext(),
    'convnext-out_indices_13': _convnext(out_indices=(1, 3)),
    'convnext-norm_per_position': _convnext(gap_before_final_norm=False),
    'convnext-norm_per_position-out_indices_23': _convnext(
        gap_before_final_norm=False, out_indices=(2, 3)),
    'convnext-grn-conv_pw': _convnext(use_grn=True, linear_pw_conv=False),
    'vit-cls_token': _vit(vit_teacher(head=VIT_CLS_HEAD),
                          VisionTransformerTeacherAdapter, 1),
    'vit-avg_featmap-two_outputs': _vit(
        vit_teacher(out_type='avg_featmap', out_indices=(1, 3)),
        VisionTransformerTeacherAdapter, 1),
    'vit-featmap-gap_neck': _vit(
        vit_teacher(out_type='featmap',
                    neck=dict(type='GlobalAveragePooling')),
        VisionTransformerTeacherAdapter, 1),
    'vit-no_cls_token': _vit(
        vit_teacher(out_type='avg_featmap', with_cls_token=False),
        VisionTransformerTeacherAdapter, 0),
    'vit-pre_norm-no_final_norm': _vit(
        vit_teacher(out_type='avg_featmap', pre_norm=True,
                    final_norm=False),
        VisionTransformerTeacherAdapter, 1),
    'deit-distilled': _vit(
        vit_teacher('DistilledVisionTransformer',
                    head=dict(type='DeiTClsHead')),
        DistilledVisionTransformerTeacherAdapter, 2),
    'deit3-cls_token': _vit(vit_teacher('DeiT3', head=VIT_CLS_HEAD),
                            DeiT3TeacherAdapter, 1),
    'deit3-featmap-gap_neck': _vit(
        vit_teacher('DeiT3', out_type='featmap',
                    neck=dict(type='GlobalAveragePooling')),
        DeiT3TeacherAdapter, 1),
    # BEiT's (and EVA's) defaults: per-block relative position bias, no
    # final norm, averaged patch tokens normalised by ln2.
    'beit': _vit(vit_teacher('BEiTViT'), BEiTTeacherAdapter, 1),
    'beit-shared_bias-abs_pos-cls_token': _vit(
        vit_teacher('BEiTViT', use_rel_pos_bias=False,
                    use_shared_rel_pos_bias=True, use_abs_pos_emb=True,
                    final_norm=True, out_type='cls_token'),
        BEiTTeacherAdapter, 1),
    'timm_vit-class_token': _timm_vit(
        tiny_timm_vit('vit_tiny_patch16_224'), 1),
    # Average pooling over patches, fc_norm, register tokens, any image
    # size (the patch embedding gives channels-last maps).
    'timm_vit-avg-registers-dynamic_size': _timm_vit(
        tiny_timm_vit('vit_tiny_patch16_224', global_pool='avg',
                      fc_norm=True, reg_tokens=2, dynamic_img_size=True), 3),
    # No prefix token at all, attention-pooling head, layer scale.
    'timm_vit-map_pool-no_class_token': _timm_vit(
        tiny_timm_vit('test_vit3', class_token=False, reg_tokens=0), 0),
    'timm_deit-distilled': _timm_vit(
        tiny_timm_vit('deit_tiny_distilled_patch16_224'), 2),
    # DeiT III: the position embedding skips the class token.
    'timm_deit3': _timm_vit(tiny_timm_vit('deit3_small_patch16_224'), 1),
    'timm_swin': _timm_swin(),
    'timm_swin-no_pool': _timm_swin(global_pool=''),
}


def _first_of_each_adapter():
    first = {}
    for name, case in CASES.items():
        first.setdefault(case.adapter, name)
    return sorted(first.values())


#: The first case of each adapter class, for the checks of the adapter
#: itself (its split range, its required inputs).
ONE_PER_ADAPTER = _first_of_each_adapter()
