"""The training steps the cost tools measure, built from the smoke config."""
import pytest
import torch
from mmengine.config import Config

from mmscalekd.analysis.train_step import (build_train_step, build_variant,
                                           load_config, optim_wrapper_cfg,
                                           synthetic_batch)
from tests.conftest import IMAGE_SIZE, NUM_CLASSES, SMOKE_CONFIG

NATIVE = {'model.final_stage.projector.conv_impl': 'native'}


def test_synthetic_batch_is_seeded_at_the_config_size():
    cfg = load_config(SMOKE_CONFIG)
    student, _ = build_variant(cfg, 'student')
    inputs, samples = synthetic_batch(cfg, student, NUM_CLASSES + 2)
    assert inputs.shape == (NUM_CLASSES + 2, 3, IMAGE_SIZE, IMAGE_SIZE)
    assert [s.gt_label.item() for s in samples] == [
        i % NUM_CLASSES for i in range(NUM_CLASSES + 2)]
    again, _ = synthetic_batch(cfg, student, NUM_CLASSES + 2,
                               channels_last=True)
    assert torch.equal(inputs, again)
    assert again.is_contiguous(memory_format=torch.channels_last)
    # "already preprocessed": standard normal
    assert abs(inputs.mean().item()) < 0.05
    assert inputs.std().item() == pytest.approx(1, abs=0.05)


def test_input_size_may_be_height_and_width():
    cfg = load_config(SMOKE_CONFIG, {'model.input_size': [32, 48]})
    student, _ = build_variant(cfg, 'student')
    inputs, _ = synthetic_batch(cfg, student, 1)
    assert inputs.shape == (1, 3, 32, 48)


def test_precision_replaces_the_config_amp_settings():
    cfg = Config(dict(optim_wrapper=dict(
        type='AmpOptimWrapper', dtype='float16', loss_scale='dynamic',
        optimizer=dict(type='SGD', lr=0.1))))
    assert optim_wrapper_cfg(cfg, 'fp32') == dict(
        type='OptimWrapper', optimizer=dict(type='SGD', lr=0.1))
    assert optim_wrapper_cfg(cfg, 'bf16')['type'] == 'OptimWrapper'
    fp16 = optim_wrapper_cfg(cfg, 'fp16')
    assert (fp16['type'], fp16['dtype']) == ('AmpOptimWrapper', 'float16')
    assert 'loss_scale' not in fp16
    with pytest.raises(ValueError, match="precision='fp64'"):
        optim_wrapper_cfg(cfg, 'fp64')


def test_logit_kd_variant_drops_the_feature_stages():
    cfg = load_config(SMOKE_CONFIG, {'model.logit_kd': None})
    model, notes = build_variant(cfg, 'logit_kd')
    assert model.projectors == {}
    assert model.logit_kd.tau == 1.0 and model.logit_kd.alpha == 0.5
    assert notes == ['the config has no logit_kd: (b) uses '
                     'LogitKDLoss(tau=1, alpha=0.5)']
    with pytest.raises(ValueError, match="variant='teacher'"):
        build_variant(cfg, 'teacher')


def test_the_projector_override_reaches_only_its_stage():
    model, notes = build_variant(load_config(SMOKE_CONFIG, NATIVE),
                                 'scalekd')
    impls = {name: p.student_conv.impl
             for name, p in model.projectors.items()}
    assert impls == {'perception_spatial': 'auto',
                     'perception_frequency': 'auto',
                     'final_spatial': 'native', 'final_frequency': 'native'}
    assert notes == []


def test_a_step_trains_the_student_and_not_the_teacher():
    built = build_train_step(SMOKE_CONFIG, variant='scalekd', batch_size=2,
                             lr=0.01)
    model = built.model
    student = [p.detach().clone() for p in model.student.parameters()]
    teacher = [p.detach().clone() for p in model.teacher.parameters()]
    built.step()
    assert built.inputs.shape == (2, 3, IMAGE_SIZE, IMAGE_SIZE)
    assert any(not torch.equal(a, b)
               for a, b in zip(student, model.student.parameters()))
    assert all(torch.equal(a, b)
               for a, b in zip(teacher, model.teacher.parameters()))
    assert model.student.training


@pytest.mark.slow
@pytest.mark.parametrize('checks, stops', [('all', True),
                                           ('before-step', False),
                                           ('none', False)])
def test_the_measured_step_runs_the_checks_a_run_runs(checks, stops):
    """What the benchmark times includes the update check, unless told not
    to: a NaN momentum stops the step only where the check is on."""
    built = build_train_step(SMOKE_CONFIG, variant='scalekd', batch_size=2,
                             checks=checks)
    built.step()
    for state in built.optim_wrapper.optimizer.state.values():
        state['momentum_buffer'].fill_(float('nan'))
    weight = built.model.student.backbone.conv1.weight
    if stops:
        with pytest.raises(FloatingPointError,
                           match='made weights non-finite'):
            built.step()
    else:
        built.step()
    assert not bool(torch.isfinite(weight).all())  # the update happened
