import pickle

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import RUNNERS

from mmscalekd.engine import ScaleKDRunner
from tests.conftest import SMOKE_CONFIG


def run(work_dir, name, max_epochs, resume=False):
    cfg = Config.fromfile(SMOKE_CONFIG)
    cfg.work_dir = str(work_dir)
    cfg.experiment_name = name
    cfg.train_cfg.max_epochs = max_epochs
    # the same schedule whatever the stop point
    cfg.param_scheduler.update(T_max=3, begin=0, end=3)
    cfg.default_hooks.checkpoint.max_keep_ckpts = -1
    cfg.resume = resume
    cfg.val_cfg = cfg.val_dataloader = cfg.val_evaluator = None
    runner = RUNNERS.build(cfg)
    assert isinstance(runner, ScaleKDRunner)
    runner.train()
    return runner


@pytest.mark.slow
def test_resume_continues_exactly(tmp_path):
    straight = run(tmp_path / 'straight', 'straight', max_epochs=3)
    interrupted = tmp_path / 'interrupted'
    run(interrupted, 'first_part', max_epochs=2)

    checkpoint = interrupted / 'epoch_2.pth'
    # Stock torch >= 2.6 refuses mmengine's own checkpoint ...
    with pytest.raises(pickle.UnpicklingError):
        torch.load(checkpoint)
    # ... which ScaleKDRunner loads with its allow-list.
    resumed = run(interrupted, 'second_part', max_epochs=3, resume=True)
    assert resumed.epoch == 3 and resumed.iter == straight.iter

    final = torch.load(interrupted / 'epoch_3.pth', weights_only=False)
    expected = torch.load(tmp_path / 'straight' / 'epoch_3.pth',
                          weights_only=False)
    assert final['meta']['epoch'] == 3
    assert final['state_dict'].keys() == expected['state_dict'].keys()
    assert not any(k.startswith('teacher.') for k in final['state_dict'])
    for key, value in expected['state_dict'].items():
        torch.testing.assert_close(
            final['state_dict'][key], value, rtol=0, atol=0, msg=key)
