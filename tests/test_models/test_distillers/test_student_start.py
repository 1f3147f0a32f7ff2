"""The student starts from pretrained weights (``model.student.init_cfg``),
loaded strictly into the student alone."""
import pytest
import torch

from mmpretrain.registry import MODELS

from mmscalekd.engine.student_export import (student_checkpoint,
                                             student_state_dict)
from mmscalekd.models.distillers.student_start import load_student_start
from mmscalekd.utils import CheckpointError
from tests.conftest import (NUM_CLASSES, build_distiller, build_runner,
                            smoke_config, tiny_resnet_student)


def _start(tmp_path, state_dict, name='start.pth', **options):
    path = tmp_path / name
    torch.save(dict(state_dict=state_dict, meta=dict()), path)
    return dict(type='Pretrained', checkpoint=str(path), **options)


def _started(init_cfg):
    torch.manual_seed(0)
    distiller = build_distiller(student=dict(tiny_resnet_student(),
                                             init_cfg=init_cfg))
    distiller.init_weights()
    return distiller


def _assert_same(state, want):
    assert state.keys() == want.keys()
    for key, value in want.items():
        torch.testing.assert_close(state[key], value, rtol=0, atol=0)


@pytest.fixture
def trained():
    """A distiller whose student holds other weights than a fresh one's."""
    torch.manual_seed(1)
    return build_distiller()


def test_a_student_file_starts_the_student_alone(tmp_path, trained):
    start = _start(tmp_path, student_state_dict(trained.state_dict()))
    distiller = _started(start)
    _assert_same(distiller.student.state_dict(),
                 trained.student.state_dict())
    # projectors and teacher as without the start
    torch.manual_seed(0)
    fresh = build_distiller()
    fresh.init_weights()
    others = {k: v for k, v in fresh.state_dict().items()
              if not k.startswith('student.')}
    _assert_same({k: v for k, v in distiller.state_dict().items()
                  if not k.startswith('student.')}, others)
    assert not torch.equal(fresh.student.head.fc.weight,
                           distiller.student.head.fc.weight)
    # mmengine's (non-strict) PretrainedInit does not load it again
    assert distiller.student_start == start
    assert distiller.student.init_cfg is None


def test_a_classifier_checkpoint_and_a_distillation_checkpoint(tmp_path,
                                                               trained):
    classifier = MODELS.build(tiny_resnet_student())
    classifier.load_state_dict(trained.student.state_dict())
    from_classifier = _started(_start(tmp_path, classifier.state_dict()))
    from_distiller = _started(_start(tmp_path, trained.state_dict(),
                                     name='epoch_1.pth', prefix='student.'))
    for distiller in (from_classifier, from_distiller):
        _assert_same(distiller.student.state_dict(),
                     trained.student.state_dict())


def test_a_timm_students_file_holds_timm_names(tmp_path):
    student = dict(
        type='ImageClassifier',
        backbone=dict(type='TimmStudentBackbone',
                      model_name='mobilenetv1_100'),
        neck=None,
        head=dict(type='LinearClsHead', num_classes=NUM_CLASSES,
                  in_channels=1024))
    torch.manual_seed(1)
    trained = MODELS.build(student)
    file = student_checkpoint(student, trained.state_dict(), None, 'x.pth')
    assert 'classifier.weight' in file['state_dict']  # timm's names
    torch.manual_seed(0)
    fresh = MODELS.build(student)
    load_student_start(fresh, _start(tmp_path, file['state_dict']))
    _assert_same(fresh.state_dict(), trained.state_dict())


def test_the_start_is_strict(tmp_path, trained):
    state = student_state_dict(trained.state_dict())
    state.pop('head.fc.bias')
    state['backbone.extra.weight'] = torch.zeros(1)
    with pytest.raises(CheckpointError, match=(
            r"`model\.student\.init_cfg\.checkpoint='.*start\.pth'` does not "
            r"fit `model\.student` \(ImageClassifier\): missing: "
            r"\['head\.fc\.bias'\]; not in the student: "
            r"\['backbone\.extra\.weight'\]")):
        _started(_start(tmp_path, state))


def test_other_init_cfg_entries_stay_with_the_student(tmp_path, trained):
    start = _start(tmp_path, student_state_dict(trained.state_dict()))
    other = dict(type='Constant', layer='Linear', val=0.5)
    distiller = _started([other, start])
    assert distiller.student.init_cfg == [other]
    # the file has the last word
    _assert_same(distiller.student.state_dict(),
                 trained.student.state_dict())


@pytest.mark.slow
def test_a_run_from_a_trained_student_starts_at_its_accuracy(tmp_path):
    # The smoke student alone, trained to clearly above chance (4 classes).
    alone_cfg = smoke_config(tmp_path / 'alone', num_samples=192,
                             max_epochs=3, validate=True)
    alone_cfg.model = dict(alone_cfg.student,
                           data_preprocessor=alone_cfg.data_preprocessor)
    alone = build_runner(alone_cfg)
    alone.train()
    accuracy = alone.val()['accuracy/top1']
    assert accuracy >= 60

    def first_validation(work_dir, init_cfg):
        # One step at lr 0 with the student's BatchNorm in eval mode: the
        # validation after it sees the student's starting weights.
        cfg = smoke_config(work_dir, validate=True)
        cfg.train_cfg = dict(by_epoch=False, max_iters=1, val_interval=1)
        cfg.param_scheduler = None
        cfg.optim_wrapper.optimizer.lr = 0.0
        cfg.default_hooks.checkpoint.by_epoch = False
        cfg.model.student.backbone.norm_eval = True
        if init_cfg is not None:
            cfg.model.student.init_cfg = init_cfg
        runner = build_runner(cfg)
        runner.train()
        return runner.message_hub.get_scalar('val/accuracy/top1').current()

    start = dict(type='Pretrained',
                 checkpoint=str(tmp_path / 'alone' / 'epoch_3.pth'))
    assert first_validation(tmp_path / 'started', start) == accuracy
    assert first_validation(tmp_path / 'fresh', None) < accuracy - 20
