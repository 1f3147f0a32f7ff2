"""StudentCheckpointHook: a student file beside every checkpoint of a
distillation run, removed with it, loadable by mmpretrain alone."""
import os.path as osp
import sys

import pytest
import torch
from mmengine.evaluator import BaseMetric

from mmpretrain.registry import METRICS

from tests.conftest import (build_runner, load_checkpoint, make_batch,
                            run_command, smoke_config)

# Short smoke runs: seconds each.
pytestmark = pytest.mark.slow


@METRICS.register_module(force=True)
class ValidationCount(BaseMetric):
    """1, 2, 3... at each validation: every validation is a new best."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.count = 0

    def process(self, data_batch, data_samples) -> None:
        self.results.append(0)

    def compute_metrics(self, results) -> dict:
        self.count += 1
        return dict(count=self.count)


def _students(work_dir):
    return sorted(path.name for path in work_dir.glob('*_student.pth'))


def _student_weights(checkpoint: dict) -> dict:
    return {key[len('student.'):]: value
            for key, value in checkpoint['state_dict'].items()
            if key.startswith('student.')}


# Loads a student file where `import mmscalekd` fails (as where only
# mmpretrain is installed) and saves its predictions for the test.
WITHOUT_MMSCALEKD = """
import sys
sys.modules['mmscalekd'] = None  # `import mmscalekd` raises ImportError
import torch
from mmpretrain import get_model
work_dir, weights, inputs = sys.argv[1:4]
model = get_model(work_dir + '/student_config.py',
                  pretrained=weights).eval()
with torch.no_grad():
    torch.save(model(torch.load(inputs), mode='tensor'),
               work_dir + '/logits.pth')
"""


def test_student_files_follow_the_checkpoints(tmp_path):
    work_dir = tmp_path / 'run'
    cfg = smoke_config(work_dir, max_epochs=3, validate=True, **{
        'train_cfg.val_interval': 1,
        'default_hooks.checkpoint.max_keep_ckpts': 2,
        'default_hooks.checkpoint.save_best': 'count',
        'default_hooks.checkpoint.rule': 'greater'})
    cfg.val_evaluator = dict(type='ValidationCount')
    runner = build_runner(cfg)
    runner.train()
    # max_keep_ckpts dropped epoch_1, each new best the previous best: their
    # student files went with them.
    assert sorted(p.name for p in work_dir.glob('*.pth')
                  if not p.name.endswith('_student.pth')) == [
        'best_count_epoch_3.pth', 'epoch_2.pth', 'epoch_3.pth']
    assert _students(work_dir) == [
        'best_count_epoch_3_student.pth', 'epoch_2_student.pth',
        'epoch_3_student.pth']
    assert not list(work_dir.glob('*.partial'))

    for name in ('epoch_2', 'epoch_3', 'best_count_epoch_3'):
        checkpoint = load_checkpoint(work_dir / f'{name}.pth')
        student = torch.load(work_dir / f'{name}_student.pth',
                             weights_only=True)
        want = _student_weights(checkpoint)
        assert student['state_dict'].keys() == want.keys()
        for key, value in want.items():
            torch.testing.assert_close(student['state_dict'][key], value,
                                       rtol=0, atol=0)
        assert student['meta']['extracted_from'] == str(
            work_dir / f'{name}.pth')
        assert student['meta']['epoch'] == checkpoint['meta']['epoch']
        assert student['meta']['dataset_meta'] == dict(
            classes=[f'class_{k}' for k in range(4)])
    # epoch 2 and epoch 3 are other weights
    assert not torch.equal(
        torch.load(work_dir / 'epoch_2_student.pth')['state_dict'][
            'head.fc.weight'],
        torch.load(work_dir / 'epoch_3_student.pth')['state_dict'][
            'head.fc.weight'])

    # mmpretrain alone loads it, strictly, and predicts as the distiller
    batch = runner.model.data_preprocessor(make_batch(), False)
    torch.save(batch['inputs'], tmp_path / 'inputs.pth')
    run_command([sys.executable, '-c', WITHOUT_MMSCALEKD, str(work_dir),
                 str(work_dir / 'epoch_3_student.pth'),
                 str(tmp_path / 'inputs.pth')])
    runner.model.eval()
    with torch.no_grad():
        want = runner.model(batch['inputs'], mode='tensor')
    torch.testing.assert_close(torch.load(work_dir / 'logits.pth'), want)


def test_iteration_checkpoints_get_student_files_too(tmp_path):
    work_dir = tmp_path / 'run'
    cfg = smoke_config(work_dir, **{
        'default_hooks.checkpoint.by_epoch': False,
        'default_hooks.checkpoint.interval': 2,
        'default_hooks.checkpoint.max_keep_ckpts': 1})
    cfg.train_cfg = dict(by_epoch=False, max_iters=4, val_interval=10**6)
    cfg.param_scheduler = None
    build_runner(cfg).train()
    assert _students(work_dir) == ['iter_4_student.pth']
    student = torch.load(work_dir / 'iter_4_student.pth', weights_only=True)
    assert student['meta']['iter'] == 4
    for key, value in _student_weights(
            load_checkpoint(work_dir / 'iter_4.pth')).items():
        torch.testing.assert_close(student['state_dict'][key], value,
                                   rtol=0, atol=0)


def test_with_ema_the_student_file_holds_the_ema_weights(tmp_path):
    work_dir = tmp_path / 'run'
    # A momentum this large keeps the EMA far from the raw weights.
    build_runner(smoke_config(work_dir, custom_hooks=[
        dict(type='EMAHook', momentum=0.5, priority='ABOVE_NORMAL')])).train()
    checkpoint = load_checkpoint(work_dir / 'epoch_1.pth')
    student = torch.load(work_dir / 'epoch_1_student.pth',
                         weights_only=True)['state_dict']
    # EMAHook saves the EMA weights as `state_dict`, the raw ones as
    # `ema_state_dict` (`module.` keys).
    ema = _student_weights(checkpoint)
    raw = {key[len('module.student.'):]: value
           for key, value in checkpoint['ema_state_dict'].items()
           if key.startswith('module.student.')}
    assert student.keys() == ema.keys()
    for key, value in ema.items():
        torch.testing.assert_close(student[key], value, rtol=0, atol=0)
    assert not torch.equal(student['head.fc.weight'], raw['head.fc.weight'])


def test_a_student_trained_alone_gets_no_student_file(tmp_path):
    work_dir = tmp_path / 'run'
    cfg = smoke_config(work_dir)
    cfg.model = dict(cfg.student, data_preprocessor=cfg.data_preprocessor)
    build_runner(cfg).train()
    assert osp.isfile(work_dir / 'epoch_1.pth')
    assert _students(work_dir) == []
    assert not osp.exists(work_dir / 'student_config.py')
