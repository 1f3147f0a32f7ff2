import pytest
import torch

from mmpretrain.registry import MODELS

from mmscalekd.models.teachers import (
    BEiTTeacherAdapter, DeiT3TeacherAdapter,
    DistilledVisionTransformerTeacherAdapter, VisionTransformerTeacherAdapter,
    build_teacher_adapter)

# Tiny plain ViTs: 32 px images in 8 px patches (a 4x4 grid), 32 channels.
IMAGE_SIZE = 32
GRID = 4
CHANNELS = 32
NUM_CLASSES = 5


def vit_teacher(backbone_type='VisionTransformer', depth=4, head=None,
                neck=None, **backbone):
    backbone = dict(
        type=backbone_type,
        arch=dict(
            embed_dims=CHANNELS,
            num_layers=depth,
            num_heads=2,
            feedforward_channels=2 * CHANNELS),
        img_size=IMAGE_SIZE,
        patch_size=IMAGE_SIZE // GRID,
        **backbone)
    head = head or dict(type='LinearClsHead')
    return dict(
        type='ImageClassifier',
        backbone=backbone,
        neck=neck,
        head=dict(num_classes=NUM_CLASSES, in_channels=CHANNELS, **head))


def build_teacher(cfg):
    torch.manual_seed(0)
    teacher = MODELS.build(cfg)
    teacher.init_weights()
    # The ViT heads start at zero, which would make the logit check vacuous.
    for param in teacher.head.parameters():
        torch.nn.init.normal_(param, std=0.2)
    return teacher.eval()


VIT_CLS_HEAD = dict(type='VisionTransformerClsHead')
TEACHERS = {
    'vit-cls_token': (vit_teacher(head=VIT_CLS_HEAD),
                      VisionTransformerTeacherAdapter, 1),
    'vit-avg_featmap-two_outputs': (vit_teacher(
        out_type='avg_featmap', out_indices=(1, 3)),
                                    VisionTransformerTeacherAdapter, 1),
    'vit-featmap-gap_neck': (vit_teacher(
        out_type='featmap', neck=dict(type='GlobalAveragePooling')),
                             VisionTransformerTeacherAdapter, 1),
    'vit-no_cls_token': (vit_teacher(
        out_type='avg_featmap', with_cls_token=False),
                         VisionTransformerTeacherAdapter, 0),
    'vit-pre_norm-no_final_norm': (vit_teacher(
        out_type='avg_featmap', pre_norm=True, final_norm=False),
                                   VisionTransformerTeacherAdapter, 1),
    'deit-distilled': (vit_teacher(
        'DistilledVisionTransformer', head=dict(type='DeiTClsHead')),
                       DistilledVisionTransformerTeacherAdapter, 2),
    'deit3-cls_token': (vit_teacher('DeiT3', head=VIT_CLS_HEAD),
                        DeiT3TeacherAdapter, 1),
    'deit3-featmap-gap_neck': (vit_teacher(
        'DeiT3', out_type='featmap', neck=dict(type='GlobalAveragePooling')),
                               DeiT3TeacherAdapter, 1),
    # BEiT's defaults: per-block relative position bias, no final norm,
    # averaged patch tokens normalised by ln2.
    'beit-default': (vit_teacher('BEiTViT'), BEiTTeacherAdapter, 1),
    'beit-shared_bias-abs_pos-cls_token': (vit_teacher(
        'BEiTViT',
        use_rel_pos_bias=False,
        use_shared_rel_pos_bias=True,
        use_abs_pos_emb=True,
        final_norm=True,
        out_type='cls_token'), BEiTTeacherAdapter, 1),
}


@pytest.mark.parametrize('split_index', [0, 1, 2])
@pytest.mark.parametrize('name', sorted(TEACHERS))
@torch.no_grad()
def test_rest_of_teacher_reproduces_its_output(name, split_index):
    cfg, adapter_cls, num_extra = TEACHERS[name]
    teacher = build_teacher(cfg)
    adapter = build_teacher_adapter(teacher, split_index)
    assert type(adapter) is adapter_cls
    inputs = torch.randn(2, 3, IMAGE_SIZE, IMAGE_SIZE)
    outputs = adapter(inputs)

    # The logits are the classifier's own, whatever the out_type ...
    assert torch.equal(outputs.logits, teacher(inputs, mode='tensor'))
    assert outputs.logits.shape == (2, NUM_CLASSES)
    # ... and the rest of the teacher on its own split-point tokens gives
    # exactly its final feature.
    rest = adapter.forward_rest(outputs.split_tokens, outputs.split_size,
                                outputs.split_extra_tokens)
    assert torch.equal(rest, outputs.final_feature)

    assert outputs.split_size == (GRID, GRID)
    assert outputs.split_tokens.shape == (2, GRID * GRID, CHANNELS)
    if num_extra:
        assert outputs.split_extra_tokens.shape == (2, num_extra, CHANNELS)
    else:
        assert outputs.split_extra_tokens is None
    assert outputs.final_feature.shape == (2, CHANNELS, GRID, GRID)
    if teacher.backbone.out_type == 'featmap':
        # The final feature is what the backbone gives as a feature map.
        assert torch.equal(outputs.final_feature, teacher.backbone(inputs)[-1])


@torch.no_grad()
def test_split_tokens_are_the_blocks_output():
    """The split point is after block ``split_index``: its patch tokens and
    class token, as the backbone itself outputs them at that index."""
    teacher = build_teacher(vit_teacher(out_type='raw', out_indices=(1, 3)))
    adapter = build_teacher_adapter(teacher, 1)
    inputs = torch.randn(2, 3, IMAGE_SIZE, IMAGE_SIZE)
    outputs = adapter(inputs)
    block_1 = teacher.backbone(inputs)[0]  # (N, 1 + H*W, C)
    assert torch.equal(outputs.split_extra_tokens, block_1[:, :1])
    assert torch.equal(outputs.split_tokens, block_1[:, 1:])


@torch.no_grad()
def test_final_feature_does_not_depend_on_out_type():
    """Same weights, another ``out_type``: the same final feature map."""
    pooled = build_teacher(vit_teacher('BEiTViT'))
    featmap = build_teacher(vit_teacher('BEiTViT', out_type='featmap'))
    # Only the pooled vector's norm (ln2) is not shared.
    missing, unexpected = featmap.backbone.load_state_dict(
        pooled.backbone.state_dict(), strict=False)
    assert not missing and unexpected == ['ln2.weight', 'ln2.bias']
    inputs = torch.randn(2, 3, IMAGE_SIZE, IMAGE_SIZE)
    assert torch.equal(
        build_teacher_adapter(pooled, 1)(inputs).final_feature,
        featmap.backbone(inputs)[-1])


@torch.no_grad()
def test_beit_large_split_runs_the_last_two_blocks():
    """The paper splits BEiT-L (24 blocks) after block 21: the rest is
    blocks 22 and 23 and the final norm. Same shape on a tiny BEiT."""
    depth = 5
    teacher = build_teacher(vit_teacher('BEiTViT', depth=depth))
    adapter = build_teacher_adapter(teacher, depth - 3)
    inputs = torch.randn(2, 3, IMAGE_SIZE, IMAGE_SIZE)
    outputs = adapter(inputs)

    ran = []
    hooks = [
        layer.register_forward_hook(lambda m, i, o, index=index: ran.append(
            index)) for index, layer in enumerate(teacher.backbone.layers)
    ]
    rest = adapter.forward_rest(outputs.split_tokens, outputs.split_size,
                                outputs.split_extra_tokens)
    for hook in hooks:
        hook.remove()
    assert ran == [depth - 2, depth - 1]
    assert torch.equal(rest, outputs.final_feature)
    assert torch.equal(outputs.logits, teacher(inputs, mode='tensor'))


@pytest.mark.parametrize('name', ['vit-cls_token', 'deit-distilled'])
@torch.no_grad()
def test_rest_depends_on_the_tokens(name):
    teacher = build_teacher(TEACHERS[name][0])
    adapter = build_teacher_adapter(teacher, 1)
    outputs = adapter(torch.randn(1, 3, IMAGE_SIZE, IMAGE_SIZE))
    other = adapter.forward_rest(
        torch.randn_like(outputs.split_tokens), outputs.split_size,
        outputs.split_extra_tokens)
    assert not torch.allclose(other, outputs.final_feature)
    # The class tokens are mixed into the patch tokens by attention.
    other = adapter.forward_rest(
        outputs.split_tokens, outputs.split_size,
        torch.randn_like(outputs.split_extra_tokens))
    assert not torch.allclose(other, outputs.final_feature)


@pytest.mark.parametrize('name', ['vit-cls_token', 'beit-default'])
def test_gradient_flows_through_frozen_rest(name):
    teacher = build_teacher(TEACHERS[name][0])
    teacher.requires_grad_(False)
    adapter = build_teacher_adapter(teacher, 1)
    with torch.no_grad():
        outputs = adapter(torch.randn(1, 3, IMAGE_SIZE, IMAGE_SIZE))
    tokens = outputs.split_tokens.clone().requires_grad_(True)
    rest = adapter.forward_rest(tokens, outputs.split_size,
                                outputs.split_extra_tokens)
    # A random weighting: the plain sum of a LayerNorm output has zero
    # gradient (each position's normalised channels sum to a constant).
    (rest * torch.randn_like(rest)).sum().backward()
    assert tokens.grad.abs().sum() > 0
    assert all(p.grad is None for p in teacher.parameters())


def test_rest_needs_the_class_tokens():
    adapter = build_teacher_adapter(
        build_teacher(TEACHERS['deit-distilled'][0]), 1)
    tokens = torch.randn(1, GRID * GRID, CHANNELS)
    with pytest.raises(ValueError, match='split_extra_tokens'):
        adapter.forward_rest(tokens, (GRID, GRID))
    with pytest.raises(ValueError, match='split_extra_tokens'):
        adapter.forward_rest(tokens, (GRID, GRID),
                             torch.randn(1, 1, CHANNELS))


@pytest.mark.parametrize('split_index', [-1, 3, 4, 9])
@pytest.mark.parametrize('name', ['vit-cls_token', 'beit-default'])
def test_split_out_of_range(name, split_index):
    with pytest.raises(
            ValueError,
            match=rf'teacher_split={split_index}`.* 4 blocks.*\[0, 2\]'):
        build_teacher_adapter(build_teacher(TEACHERS[name][0]), split_index)


def test_unsupported_family_lists_the_plain_vits():
    teacher = build_teacher(
        dict(
            type='ImageClassifier',
            backbone=dict(type='ResNet', depth=18),
            neck=dict(type='GlobalAveragePooling'),
            head=dict(
                type='LinearClsHead', num_classes=NUM_CLASSES,
                in_channels=512)))
    with pytest.raises(TypeError) as error:
        build_teacher_adapter(teacher, 1)
    message = str(error.value)
    for name in ('VisionTransformer', 'DistilledVisionTransformer', 'DeiT3',
                 'BEiTViT'):
        assert f"'{name}'" in message
