import copy
import logging

import pytest
import torch
from mmengine.logging import MMLogger
from mmengine.optim import build_optim_wrapper

from mmscalekd.models.losses import DualViewFeatureLoss
from mmscalekd.utils import CheckpointError
from mmpretrain.registry import MODELS

from tests.conftest import (IMAGE_SIZE, build_distiller, distiller_cfg,
                            make_batch, tiny_swin_teacher)

LEARNED_QUERIES = dict(type='CrossAttentionProjector', num_heads=4)
SCALEKD_KEYS = {
    'loss_cls', 'loss_kd', 'loss_perception_spatial',
    'loss_perception_frequency', 'loss_final_spatial', 'loss_final_frequency'
}


def preprocess(model, batch):
    return model.data_preprocessor(batch, training=True)


def test_loss_terms_and_composition(distiller):
    distiller.train()
    data = preprocess(distiller, make_batch())
    inputs, samples = data['inputs'], data['data_samples']
    losses = distiller(inputs, samples, mode='loss')
    assert SCALEKD_KEYS <= set(losses)

    # (1 - alpha) * the student's own loss.
    student = distiller.student
    with torch.no_grad():
        plain = student.head.loss(student.extract_feat(inputs),
                                  samples)['loss']
    torch.testing.assert_close(losses['loss_cls'], 0.5 * plain)

    # Teacher parameter perception, recomputed by hand from the parts.
    with torch.no_grad():
        teacher = distiller.teacher(inputs)
        taps = {}
        hooks = [
            dict(student.named_modules())[name].register_forward_hook(
                lambda m, a, out, name=name: taps.__setitem__(name, out))
            for name in ('backbone.layer3', 'backbone.layer4')
        ]
        student.extract_feat(inputs)
        for hook in hooks:
            hook.remove()
        perceived = {
            view: distiller.teacher.forward_rest(
                distiller.projectors[f'perception_{view}'](
                    taps['backbone.layer3']), teacher.split_size)
            for view in ('spatial', 'frequency')
        }
        expected = DualViewFeatureLoss(0.08, 0.06)(perceived,
                                                   teacher.final_feature)
        # Final stage queried by the perception outputs.
        final = {
            view: distiller.projectors[f'final_{view}'](
                taps['backbone.layer4'],
                perceived[view].flatten(2).transpose(1, 2))
            for view in ('spatial', 'frequency')
        }
        size = teacher.final_feature.shape[2:]
        final = {
            view: t.transpose(1, 2).reshape(t.shape[0], -1, *size)
            for view, t in final.items()
        }
        expected_final = DualViewFeatureLoss(0.08, 0.06)(
            final, teacher.final_feature)
    torch.testing.assert_close(losses['loss_perception_spatial'],
                               expected['loss_spatial'])
    torch.testing.assert_close(losses['loss_perception_frequency'],
                               expected['loss_frequency'])
    torch.testing.assert_close(losses['loss_final_spatial'],
                               expected_final['loss_spatial'])
    torch.testing.assert_close(losses['loss_final_frequency'],
                               expected_final['loss_frequency'])


def test_predict_and_tensor_use_the_student_alone(distiller):
    distiller.eval()
    data = distiller.data_preprocessor(make_batch(), training=False)
    logits = distiller(data['inputs'], mode='tensor')
    torch.testing.assert_close(
        logits, distiller.student(data['inputs'], mode='tensor'))
    predictions = distiller(data['inputs'], data['data_samples'],
                            mode='predict')
    assert len(predictions) == 4
    torch.testing.assert_close(
        torch.stack([p.pred_score for p in predictions]),
        torch.softmax(logits, dim=1))


def test_deep_copy_records_its_own_taps():
    """mmengine's EMA keeps a deep copy: it must read its own student."""
    original = build_distiller()
    original.train()
    data = preprocess(original, make_batch(seed=1))
    expected = original.loss(data['inputs'], data['data_samples'])
    clone = copy.deepcopy(original)
    with torch.no_grad():  # the copy's student differs from now on
        weight = clone.student.backbone.conv1.weight
        weight.add_(torch.randn(weight.shape, generator=torch.Generator(
        ).manual_seed(0)))
    losses = clone.loss(data['inputs'], data['data_samples'])
    assert set(losses) >= SCALEKD_KEYS
    assert not torch.allclose(losses['loss_final_spatial'],
                              expected['loss_final_spatial'])
    again = original.loss(data['inputs'], data['data_samples'])
    for key in SCALEKD_KEYS:
        torch.testing.assert_close(again[key], expected[key])


def test_student_features_are_read_only_inside_loss(distiller):
    """Like MMRazor's recorders: no hook stays on the student, so calling
    it directly (validation, export) records and keeps nothing."""
    backbone = distiller.student.backbone
    taps = [backbone.layer3, backbone.layer4]
    distiller.train()
    data = preprocess(distiller, make_batch())
    distiller(**data, mode='loss')
    distiller.eval()
    distiller(data['inputs'], mode='tensor')
    assert all(not module._forward_hooks for module in taps)


def test_teacher_stays_frozen_and_in_eval_mode():
    distiller = build_distiller()
    distiller.train()
    assert distiller.student.training
    network = distiller.teacher.network
    assert not any(m.training for m in network.modules())
    assert not any(p.requires_grad for p in network.parameters())
    inputs = torch.randn(2, 3, IMAGE_SIZE, IMAGE_SIZE)
    # Drop-path is 0.1 in this teacher: identical outputs prove eval mode.
    first = distiller.teacher(inputs).logits
    second = distiller.teacher(inputs).logits
    assert torch.equal(first, second)


def test_reference_behaviour_option_trains_the_teacher():
    distiller = build_distiller(keep_teacher_eval=False)
    distiller.train()
    assert distiller.teacher.network.training
    inputs = torch.randn(2, 3, IMAGE_SIZE, IMAGE_SIZE)
    first = distiller.teacher(inputs).logits
    second = distiller.teacher(inputs).logits
    assert not torch.equal(first, second)


def test_optimizer_steps_train_student_and_leave_teacher_bit_identical():
    distiller = build_distiller()
    network = distiller.teacher.network
    teacher_before = {k: v.clone() for k, v in network.state_dict().items()}
    student_before = distiller.student.backbone.conv1.weight.clone()
    optim_wrapper = build_optim_wrapper(
        distiller,
        dict(
            optimizer=dict(
                type='SGD', lr=0.1, momentum=0.9, weight_decay=1e-4)))
    distiller.train()
    for step in range(3):
        log_vars = distiller.train_step(make_batch(seed=step), optim_wrapper)
        assert torch.isfinite(log_vars['loss'])
    for key, value in network.state_dict().items():
        assert torch.equal(value, teacher_before[key]), key
    assert not torch.equal(distiller.student.backbone.conv1.weight,
                           student_before)
    assert all(p.grad is None for p in network.parameters())


def test_gradient_reaches_projectors_and_student_through_teacher(distiller):
    distiller.train()
    data = preprocess(distiller, make_batch())
    losses = distiller(**data, mode='loss')
    losses['loss_perception_spatial'].backward()
    projector = distiller.projectors['perception_spatial']
    assert projector.student_conv.weight.grad.abs().sum() > 0
    assert distiller.student.backbone.layer3[0].conv1.weight.grad.abs().sum(
    ) > 0
    # The student's last stage does not feed this term.
    assert distiller.student.backbone.layer4[0].conv1.weight.grad is None


def test_checkpoint_leaves_teacher_out_and_reloads(distiller):
    state = distiller.state_dict()
    assert state and not any(k.startswith('teacher.') for k in state)
    assert any(k.startswith('final_stage.projectors.') for k in state)
    torch.manual_seed(1)  # other weights, so that the load must set them
    other = MODELS.build(distiller_cfg())
    differing = [k for k, v in other.state_dict().items()
                 if v.is_floating_point() and not torch.equal(v, state[k])]
    assert any('projectors' in k for k in differing)
    other.load_state_dict(state, strict=True)
    for key, value in other.state_dict().items():
        assert torch.equal(value, state[key])


def test_shapes_are_inferred_and_given_shapes_are_refused():
    distiller = build_distiller()
    projector = distiller.projectors['perception_spatial']
    assert (projector.student_channels, projector.student_size,
            projector.teacher_channels,
            projector.query_size) == (64, (4, 4), 128, (4, 4))
    final = distiller.projectors['final_spatial']
    assert (final.student_channels, final.student_size,
            final.teacher_channels, final.query_size) == (128, (2, 2), 256,
                                                          (2, 2))
    with pytest.raises(KeyError, match=r'perception_stage.*student_channels'
                       r'.*read off the networks'):
        build_distiller(perception_stage=dict(projector=dict(
            type='CrossAttentionProjector', num_heads=2,
            student_channels=64)))


def test_zero_weight_view_builds_no_projector():
    distiller = build_distiller(final_stage=dict(
        projector=LEARNED_QUERIES, loss=dict(type='DualViewFeatureLoss',
                                             frequency_weight=0.0)))
    assert 'final_frequency' not in distiller.projectors
    data = preprocess(distiller, make_batch())
    losses = distiller(**data, mode='loss')
    assert 'loss_final_frequency' not in losses
    assert 'loss_final_spatial' in losses


def test_perception_stage_only_as_the_source_of_final_queries():
    """Both perception weights 0 with the final projector taking queries
    (``final_stage.projector.self_query=False``): the perception projectors
    still run (they give the final queries), no perception loss is computed. (With learned final queries the stage would
    compute nothing, which is refused: docs/errors.md E45.)"""
    distiller = build_distiller(perception_stage=dict(loss=dict(
        type='DualViewFeatureLoss', spatial_weight=0, frequency_weight=0)))
    assert {'perception_spatial', 'perception_frequency'} <= set(
        distiller.projectors)
    distiller.train()
    losses = distiller(**preprocess(distiller, make_batch()), mode='loss')
    assert not any(k.startswith('loss_perception') for k in losses)
    losses['loss_final_spatial'].backward()
    grad = distiller.projectors['perception_spatial'].student_conv.weight.grad
    assert grad is not None and bool(grad.abs().sum() > 0)


def test_logit_kd_off_keeps_full_student_loss():
    distiller = build_distiller(logit_kd=None)
    data = preprocess(distiller, make_batch())
    losses = distiller(**data, mode='loss')
    assert 'loss_kd' not in losses
    student = distiller.student
    plain = student.head.loss(student.extract_feat(data['inputs']),
                              data['data_samples'])['loss']
    torch.testing.assert_close(losses['loss_cls'], plain)


@pytest.mark.parametrize('overrides,match', [
    (dict(perception_stage=dict(projector=dict(
        type='CrossAttentionProjector', num_heads=3))), 'num_heads=3'),
    (dict(perception_stage=dict(num_heads=3)),
     r"Unknown key\(s\) \['num_heads'\] in `model\.perception_stage`"),
    (dict(perception_stage=dict(student_tap='backbone.layer9')),
     'student_tap'),
    (dict(perception_stage=dict(teacher_split=3)), 'teacher_split'),
    (dict(perception_stage=dict(typo_key=1)), 'typo_key'),
    (dict(teacher=dict(pretrained=True)), 'pretrained'),
])
def test_config_errors_name_the_key(overrides, match):
    with pytest.raises((ValueError, KeyError), match=match):
        build_distiller(**overrides)


def test_class_count_mismatch_with_logit_kd():
    teacher = tiny_swin_teacher()
    teacher['head']['num_classes'] = 7
    with pytest.raises(ValueError, match='same classes'):
        build_distiller(teacher=dict(config=teacher))


class TestTeacherCheckpoint:

    def _teacher_file(self, tmp_path, transform=None):
        from mmpretrain.registry import MODELS
        torch.manual_seed(123)
        teacher = MODELS.build(tiny_swin_teacher())
        teacher.init_weights()
        state = teacher.state_dict()
        if transform:
            state = transform(state)
        path = tmp_path / 'teacher.pth'
        torch.save(dict(state_dict=state, meta=dict(epoch=300)), path)
        return str(path), teacher

    def test_strict_load_gives_the_file_weights(self, tmp_path):
        path, reference = self._teacher_file(tmp_path)
        distiller = build_distiller(teacher=dict(checkpoint=path))
        distiller.init_weights()  # the runner does this; must not re-init
        for key, value in reference.state_dict().items():
            assert torch.equal(
                distiller.teacher.network.state_dict()[key], value)

    def test_missing_keys_are_an_error(self, tmp_path):
        path, _ = self._teacher_file(
            tmp_path, lambda s: {
                k: v
                for k, v in s.items() if not k.startswith('head.')
            })
        with pytest.raises(CheckpointError, match='missing keys'):
            build_distiller(teacher=dict(checkpoint=path))

    def test_unexpected_keys_are_an_error(self, tmp_path):
        path, _ = self._teacher_file(
            tmp_path, lambda s: {
                **s, 'head.extra.weight': torch.zeros(1)
            })
        with pytest.raises(CheckpointError, match='unexpected keys'):
            build_distiller(teacher=dict(checkpoint=path))

    def test_shape_mismatch_is_an_error(self, tmp_path):
        path, _ = self._teacher_file(
            tmp_path, lambda s: {
                **s, 'head.fc.bias': torch.zeros(9)
            })
        with pytest.raises(CheckpointError, match='other shapes.*head.fc.bias'):
            build_distiller(teacher=dict(checkpoint=path))

    def test_missing_file(self, tmp_path):
        with pytest.raises(CheckpointError,
                           match='model.teacher.checkpoint.*does not exist'):
            build_distiller(
                teacher=dict(checkpoint=str(tmp_path / 'nope.pth')))

    def test_corrupt_file(self, tmp_path):
        path = tmp_path / 'broken.pth'
        path.write_bytes(b'not a checkpoint at all')
        with pytest.raises(CheckpointError, match='corrupt'):
            build_distiller(teacher=dict(checkpoint=str(path)))

    def test_no_checkpoint_warns_loudly(self):
        logger = MMLogger.get_current_instance()
        records = []
        handler = logging.Handler()
        handler.emit = records.append
        logger.addHandler(handler)
        try:
            build_distiller(teacher=dict(checkpoint=None))
        finally:
            logger.removeHandler(handler)
        assert any('RANDOMLY' in r.getMessage()
                   and r.levelno == logging.WARNING for r in records)


def test_teacher_from_config_file(tmp_path):
    config = tmp_path / 'teacher.py'
    config.write_text(f'model = {tiny_swin_teacher()!r}\n')
    distiller = build_distiller(teacher=dict(config=str(config)))
    assert type(distiller.teacher.network.backbone).__name__ == \
        'SwinTransformer'
    assert distiller_cfg()['teacher']['checkpoint'] is None


def test_student_batch_augments_are_kept():
    """Mixup/CutMix from the student's recipe run in the distiller."""
    from tests.conftest import tiny_resnet_student
    student = tiny_resnet_student()
    student['train_cfg'] = dict(augments=[dict(type='Mixup', alpha=0.8)])
    student['head']['loss'] = dict(
        type='CrossEntropyLoss', use_soft=True)
    student['head']['topk'] = (1, )
    student['head']['cal_acc'] = False
    distiller = build_distiller(student=student)
    assert distiller.data_preprocessor.batch_augments is not None
    data = distiller.data_preprocessor(make_batch(), training=True)
    # Mixed labels are soft scores.
    assert 'gt_score' in data['data_samples'][0]
    losses = distiller(**data, mode='loss')
    assert torch.isfinite(losses['loss_cls'])


def test_logit_kd_only_baseline():
    distiller = build_distiller(perception_stage=None, final_stage=None)
    assert distiller.teacher.adapter is None
    assert len(distiller.projectors) == 0
    data = preprocess(distiller, make_batch())
    losses = distiller(**data, mode='loss')
    assert {k for k in losses if k.startswith('loss')} == {
        'loss_cls', 'loss_kd'
    }
    with torch.no_grad():
        teacher_logits = distiller.teacher.network(data['inputs'],
                                                   mode='tensor')
        student_logits = distiller.student(data['inputs'], mode='tensor')
    # Method section 4, tau = 1, alpha = 0.5.
    expected = -0.5 * (torch.softmax(teacher_logits, 1) *
                       torch.log_softmax(student_logits, 1)).sum(1).mean()
    torch.testing.assert_close(losses['loss_kd'], expected)
    assert not any(k.startswith('teacher.') for k in distiller.state_dict())


@pytest.mark.parametrize('overrides,match', [
    (dict(final_stage=None), 'both'),
    (dict(perception_stage=None, final_stage=None, logit_kd=None),
     'Nothing to distil'),
])
def test_stages_come_together(overrides, match):
    with pytest.raises(ValueError, match=match):
        build_distiller(**overrides)


def test_teacher_sees_its_own_normalisation():
    """A teacher trained with other mean/std than the data preprocessor's
    (EVA: CLIP's) gets the images renormalised; the student does not."""
    trained = dict(tiny_swin_teacher(), data_preprocessor=dict(
        type='ClsDataPreprocessor', mean=[0, 0, 0], std=[255, 255, 255]))
    distiller = build_distiller(teacher=dict(config=trained))
    data = preprocess(distiller, make_batch())  # smoke: mean 127.5, std 64
    raw = data['inputs'] * 64 + 127.5
    torch.testing.assert_close(distiller.teacher.prepare(data['inputs']),
                               raw / 255)
    assert build_distiller().teacher.input_scale is None


# A teacher whose build would fail: these values are refused before it.
UNBUILDABLE_TEACHER = dict(config=dict(type='NoSuchTeacher'))


@pytest.mark.parametrize('overrides,error,message', [
    (dict(input_size=0), ValueError, r'`model\.input_size=0`'),
    (dict(input_size=-64), ValueError, r'`model\.input_size=-64`'),
    (dict(input_size='64'), TypeError, r"`model\.input_size='64'`"),
    (dict(input_size=(64, )), ValueError, r'`model\.input_size=\(64,\)`'),
    (dict(input_size=(64, 64, 3)), ValueError,
     r'`model\.input_size=\(64, 64, 3\)`'),
    (dict(input_size=64.0), TypeError, r'`model\.input_size=64\.0`'),
    (dict(input_channels=0), ValueError,
     r'`model\.input_channels=0`'),
    (dict(input_channels='3'), TypeError, r"`model\.input_channels='3'`"),
    (dict(perception_stage=dict(teacher_split='2')), TypeError,
     r"`model\.perception_stage\.teacher_split='2'`"),
    (dict(perception_stage=dict(teacher_split=1.5)), TypeError,
     r'`model\.perception_stage\.teacher_split=1\.5`'),
    (dict(perception_stage=dict(teacher_split=True)), TypeError,
     r'`model\.perception_stage\.teacher_split=True`'),
    (dict(perception_stage=dict(student_tap='')), ValueError,
     r"`model\.perception_stage\.student_tap=''`"),
    (dict(final_stage=dict(student_tap=4)), TypeError,
     r'`model\.final_stage\.student_tap=4`'),
    (dict(logit_kd=dict(type='LogitKDLoss', alpha=None)), TypeError,
     r'`model\.logit_kd`: `alpha=None`'),
    (dict(logit_kd=dict(type='LogitKDLoss', tau='1.0')), TypeError,
     r"`model\.logit_kd`: `tau='1\.0'`"),
    (dict(keep_teacher_eval='False'), TypeError,
     r"`model\.keep_teacher_eval='False'`"),
    (dict(channels_last=1), TypeError,
     r'`model\.channels_last=1`'),
    (dict(teacher=dict(mean=[0, 0], std=[1, 1])), ValueError,
     r'`model\.teacher\.mean=\[0, 0\]`'),
])
def test_config_values_are_refused_before_the_teacher_is_built(
        overrides, error, message):
    teacher = dict(UNBUILDABLE_TEACHER, **overrides.pop('teacher', {}))
    with pytest.raises(error, match=message):
        build_distiller(teacher=teacher, **overrides)


@pytest.mark.parametrize('overrides,error,message', [
    (dict(final_stage=dict(projector=dict(LEARNED_QUERIES, num_heads='2'))),
     TypeError, r"`model\.final_stage\.projector`: `num_heads='2'`"),
    (dict(perception_stage=dict(loss=dict(type='DualViewFeatureLoss',
                                          spatial_weight='0.08'))),
     TypeError, r"`model\.perception_stage\.loss`: `spatial_weight='0\.08'`"),
    (dict(final_stage=dict(projector=dict(LEARNED_QUERIES,
                                          softmax_scale='5.0'))),
     TypeError, r"`model\.final_stage\.projector`: `softmax_scale='5\.0'`"),
    (dict(final_stage=dict(projector=dict(LEARNED_QUERIES,
                                          self_query='False'))),
     TypeError, r"`model\.final_stage\.projector`: `self_query='False'`"),
    (dict(perception_stage=dict(teacher_perception='False')), TypeError,
     r"`model\.perception_stage\.teacher_perception='False'`"),
    (dict(student_tokens=dict(extra_tokens='1')), TypeError,
     r"`model\.student_tokens\.extra_tokens='1'`"),
    (dict(teacher=dict(input_size='64')), TypeError,
     r"`model\.teacher\.input_size='64'`"),
])
def test_stage_and_teacher_values_name_their_config_key(overrides, error,
                                                        message):
    with pytest.raises(error, match=message):
        build_distiller(**overrides)
