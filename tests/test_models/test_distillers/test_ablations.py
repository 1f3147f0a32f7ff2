"""The paper's ablations as config switches, each against the method's
equations computed here from the parts by hand (smoke-sized networks)."""
import pytest
import torch
import torch.nn.functional as F
from mmengine.config import Config

from mmscalekd.models.necks import ConvProjector, CrossAttentionProjector
from tests.conftest import REPO_ROOT, build_distiller, make_batch

# Each builds several distillers: about 50 s a module on 2 cores.
pytestmark = pytest.mark.slow

CAP = dict(type='CrossAttentionProjector', num_heads=4)
SWITCHES = {
    'released': {},
    'conv-projector': dict(
        perception_stage=dict(projector=dict(type='ConvProjector')),
        final_stage=dict(projector=dict(type='ConvProjector'))),
    'spatial-only': dict(
        perception_stage=dict(loss=dict(type='DualViewFeatureLoss',
                                        frequency_weight=0)),
        final_stage=dict(loss=dict(type='DualViewFeatureLoss',
                                   frequency_weight=0))),
    'frequency-only': dict(
        perception_stage=dict(loss=dict(type='DualViewFeatureLoss',
                                        spatial_weight=0)),
        final_stage=dict(loss=dict(type='DualViewFeatureLoss',
                                   spatial_weight=0))),
    'no-tpp': dict(
        perception_stage=dict(teacher_perception=False),
        final_stage=dict(projector=dict(CAP, self_query=True))),
}


def mimic(student, teacher, centred=False):
    """sum((normC(S) - normC(T))^2) / N; centred: DC removed (section 2)."""
    if centred:
        student = student - student.mean((2, 3), keepdim=True)
        teacher = teacher - teacher.mean((2, 3), keepdim=True)
    diff = F.normalize(student, dim=1) - F.normalize(teacher, dim=1)
    return diff.pow(2).sum() / student.shape[0]


def to_map(tokens, grid):
    return tokens.transpose(1, 2).reshape(tokens.shape[0], -1, *grid)


def feature_losses_by_hand(distiller, inputs):
    """Method sections 1-3 from the parts, with the stages' switches."""
    student, teacher = distiller.student, distiller.teacher
    outputs = teacher(inputs)
    taps = {}
    modules = dict(student.named_modules())
    hooks = [modules[name].register_forward_hook(
        lambda m, a, out, name=name: taps.__setitem__(name, out))
        for name in ('backbone.layer3', 'backbone.layer4')]
    student.extract_feat(inputs)
    for hook in hooks:
        hook.remove()
    perception, final = distiller.perception_stage, distiller.final_stage
    expected, perceived = {}, {}
    for view, projector in perception.projectors.items():
        tokens = projector(taps['backbone.layer3'])
        if perception.teacher_perception:  # P_sp / P_fr
            perceived[view] = teacher.forward_rest(
                tokens, outputs.split_size, outputs.split_extra_tokens)
        else:
            perceived[view] = to_map(tokens, outputs.split_size)
    target = outputs.final_feature if perception.teacher_perception else \
        to_map(outputs.split_tokens, outputs.split_size)
    last = outputs.final_feature
    for view, projector in final.projectors.items():
        queries = None
        if isinstance(projector, CrossAttentionProjector) and \
                not projector.self_query:
            queries = perceived[view].flatten(2).transpose(1, 2)
        projected = to_map(projector(taps['backbone.layer4'], queries),
                           last.shape[2:])
        for stage, value, goal in (('perception', perceived[view], target),
                                   ('final', projected, last)):
            weight = getattr(distiller.stages[stage].loss, f'{view}_weight')
            if weight > 0:
                expected[f'loss_{stage}_{view}'] = weight * mimic(
                    value, goal, centred=view == 'frequency')
    return expected


@pytest.mark.parametrize('switch', sorted(SWITCHES))
def test_each_switch_computes_the_method_by_hand(switch):
    distiller = build_distiller(**SWITCHES[switch]).double()
    distiller.train()
    data = distiller.data_preprocessor(make_batch(), training=True)
    inputs = data['inputs'].double()
    losses = distiller.loss(inputs, data['data_samples'])
    expected = feature_losses_by_hand(distiller, inputs)
    feature_keys = {k for k in losses if k.startswith(('loss_perception',
                                                       'loss_final'))}
    assert feature_keys == set(expected)
    for key, value in expected.items():
        torch.testing.assert_close(losses[key], value, rtol=1e-10, atol=0)


def test_switches_build_the_parts_they_name():
    conv = build_distiller(**SWITCHES['conv-projector'])
    assert all(isinstance(p, ConvProjector)
               for p in conv.projectors.values())
    assert set(conv.projectors) == {'perception_spatial',
                                    'perception_frequency', 'final_spatial',
                                    'final_frequency'}
    spatial = build_distiller(**SWITCHES['spatial-only'])
    assert set(spatial.projectors) == {'perception_spatial', 'final_spatial'}
    frequency = build_distiller(**SWITCHES['frequency-only'])
    assert set(frequency.projectors) == {'perception_frequency',
                                         'final_frequency'}
    no_tpp = build_distiller(**SWITCHES['no-tpp'])
    # Projected onto the split grid (128 ch @ 4x4), compared there.
    assert no_tpp.architecture['perception_stage.teacher_perception'] is False
    assert no_tpp.projectors['perception_spatial'].query_size == (4, 4)


def test_without_perception_the_teacher_rest_gets_no_gradient_path():
    """With TPP the perception loss reaches the student through the
    teacher's stage 4; without it, the loss depends on the projection
    alone, so the teacher's rest is not run on student tokens."""
    distiller = build_distiller(**SWITCHES['no-tpp'])
    distiller.train()
    calls = []
    rest = distiller.teacher.forward_rest
    distiller.teacher.forward_rest = lambda *a: calls.append(1) or rest(*a)
    data = distiller.data_preprocessor(make_batch(), training=True)
    losses = distiller(**data, mode='loss')
    assert calls == []
    losses['loss_perception_spatial'].backward()
    conv = distiller.student.backbone.layer3[0].conv1.weight
    assert conv.grad is not None and bool(conv.grad.abs().sum() > 0)


@pytest.mark.parametrize('name', ['conv-projector', 'spatial-only',
                                  'frequency-only', 'no-tpp'])
def test_ablation_configs_change_only_their_switch(name):
    """The shipped ablation configs equal the released one but for it."""
    released = Config.fromfile(
        f'{REPO_ROOT}/configs/scalekd/scalekd_swin-l_resnet50_8xb32_in1k.py')
    ablation = Config.fromfile(f'{REPO_ROOT}/configs/scalekd/scalekd-{name}_'
                               'swin-l_resnet50_8xb32_in1k.py')
    changed = {
        f'{stage}.{key}': ablation.model[stage].get(key)
        for stage in ('perception_stage', 'final_stage')
        for key in set(released.model[stage]) | set(ablation.model[stage])
        if released.model[stage].get(key) != ablation.model[stage].get(key)
    }
    expected = {
        'conv-projector': {
            'perception_stage.projector': dict(type='ConvProjector'),
            'final_stage.projector': dict(type='ConvProjector')},
        'spatial-only': {
            f'{stage}.loss': dict(type='DualViewFeatureLoss',
                                  spatial_weight=0.08, frequency_weight=0.0)
            for stage in ('perception_stage', 'final_stage')},
        'frequency-only': {
            f'{stage}.loss': dict(type='DualViewFeatureLoss',
                                  spatial_weight=0.0, frequency_weight=0.06)
            for stage in ('perception_stage', 'final_stage')},
        'no-tpp': {
            'perception_stage.teacher_perception': False,
            'final_stage.projector': dict(type='CrossAttentionProjector',
                                          num_heads=24, self_query=True)},
    }[name]
    assert changed == expected
    for key in set(released) - {'model'}:
        assert ablation[key] == released[key], key
