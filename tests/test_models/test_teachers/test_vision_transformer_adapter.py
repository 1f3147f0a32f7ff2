"""mmpretrain's plain ViTs: where the split is and what the final feature is
(the contract of every family is checked in test_adapter_contract.py)."""
import pytest
import torch

from mmscalekd.models.teachers import build_teacher_adapter
from tests.test_models.test_teachers.families import (NUM_CLASSES, Case,
                                                      vit_teacher)

IMAGE_SIZE = 32


def build_teacher(cfg):
    return Case(cfg, None, IMAGE_SIZE, 'block', None, None,
                family='vit').build()


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
