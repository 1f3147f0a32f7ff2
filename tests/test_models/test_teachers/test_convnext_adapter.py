"""ConvNeXt: what its split tokens and final feature are (the contract of
every family is checked in test_adapter_contract.py)."""
import torch

from mmpretrain.registry import MODELS

from mmscalekd.models.teachers import build_teacher_adapter
from tests.test_models.test_teachers.families import (CONVNEXT_CHANNELS,
                                                      convnext_teacher)

IMAGE_SIZE = 64


def build_teacher(**backbone):
    torch.manual_seed(0)
    teacher = MODELS.build(convnext_teacher(**backbone))
    teacher.init_weights()
    return teacher.eval()


@torch.no_grad()
def test_split_tokens_are_the_stage_output_row_major():
    """Token h * W + w is pixel (h, w) of the stage's output map, checked
    against the backbone's own (normalised) output of that stage."""
    teacher = build_teacher(gap_before_final_norm=False, out_indices=(1, 3))
    inputs = torch.randn(2, 3, IMAGE_SIZE, IMAGE_SIZE)
    outputs = build_teacher_adapter(teacher, 1)(inputs)
    stage_map = outputs.split_tokens.view(2, 8, 8, CONVNEXT_CHANNELS[1]).permute(
        0, 3, 1, 2).contiguous()
    assert torch.equal(
        teacher.backbone.norm1(stage_map),
        teacher.backbone(inputs)[0])


@torch.no_grad()
def test_final_feature_is_raw_when_only_the_pooled_vector_is_normalised():
    """With the released default ``gap_before_final_norm=True`` the backbone
    normalises only the pooled vector, so the final feature is the last
    stage's raw map; the same weights with the flag off normalise every
    position, and the final feature is that normalised map."""
    pooled = build_teacher()
    mapped = build_teacher(gap_before_final_norm=False)
    mapped.backbone.load_state_dict(pooled.backbone.state_dict())
    last_stage = []
    hook = pooled.backbone.stages[-1].register_forward_hook(
        lambda module, args, output: last_stage.append(output))
    inputs = torch.randn(2, 3, IMAGE_SIZE, IMAGE_SIZE)
    raw = build_teacher_adapter(pooled, 2)(inputs).final_feature
    hook.remove()
    assert torch.equal(raw, last_stage[0])
    normed = build_teacher_adapter(mapped, 2)(inputs).final_feature
    assert torch.equal(normed, mapped.backbone.norm3(raw))
    assert not torch.allclose(raw, normed)
