"""A changed learning rate, schedule or max_epochs takes effect on resume:
the resumed run follows the schedule a run started with the new config
would follow, value for value."""
import json
import os.path as osp

import pytest

from mmscalekd.utils import CheckpointError
from tests.conftest import build_runner, run_log, smoke_config

# Warm-up over the first epoch, stepped every iteration, then a cosine
# stepped every epoch that ends with training: both kinds of scheduler, and
# an end that follows max_epochs.
WARMUP_COSINE = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=True, begin=0, end=1,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', by_epoch=True, begin=1),
]


def train(work_dir, max_epochs, lr, resume=False, schedule=WARMUP_COSINE):
    runner = build_runner(
        smoke_config(work_dir, max_epochs=max_epochs, resume=resume,
                     param_scheduler=schedule,
                     **{'optim_wrapper.optimizer.lr': lr,
                        'default_hooks.logger.interval': 1}))
    runner.train()
    return runner


def learning_rates(runner):
    """iteration -> learning rate logged by the run (every iteration)."""
    rates = {}
    with open(osp.join(runner.log_dir, 'vis_data', 'scalars.json')) as f:
        for line in f:
            record = json.loads(line)
            if 'lr' in record:
                rates[record['iter']] = record['lr']
    return rates


def test_lowered_learning_rate_takes_effect(tmp_path):
    straight = train(tmp_path / 'straight', 3, lr=0.025)
    train(tmp_path / 'resumed', 2, lr=0.05)
    resumed = train(tmp_path / 'resumed', 3, lr=0.025, resume=True)
    expected, got = learning_rates(straight), learning_rates(resumed)
    after = [i for i in expected if i > 4]  # epoch 3: iterations 5 and 6
    assert after and all(got[i] == expected[i] for i in after), (got,
                                                                 expected)
    assert resumed.optim_wrapper.param_groups[0]['lr'] == \
        straight.optim_wrapper.param_groups[0]['lr']
    assert 'optim_wrapper.optimizer.lr: 0.05 -> 0.025' in run_log(resumed)


def test_raised_max_epochs_extends_the_schedule(tmp_path):
    straight = train(tmp_path / 'straight', 4, lr=0.05)
    train(tmp_path / 'resumed', 3, lr=0.05)
    resumed = train(tmp_path / 'resumed', 4, lr=0.05, resume=True)
    expected, got = learning_rates(straight), learning_rates(resumed)
    after = [i for i in expected if i > 6]  # epoch 4
    assert after and all(got[i] == expected[i] for i in after), (got,
                                                                 expected)
    # The cosine no longer stops at the old end (epoch 3): it keeps going.
    assert got[7] < learning_rates(train(tmp_path / 'again', 3, lr=0.05))[6]
    assert 'param_scheduler[1].end: 3 -> 4' in run_log(resumed)


def test_unchanged_schedule_is_resumed_as_saved(tmp_path):
    fixed_end = [dict(type='CosineAnnealingLR', by_epoch=True, T_max=3,
                      end=3)]
    train(tmp_path / 'run', 2, lr=0.05, schedule=fixed_end)
    resumed = train(tmp_path / 'run', 3, lr=0.05, resume=True,
                    schedule=fixed_end)
    assert 'resumed epoch: 2' in run_log(resumed)
    assert 'changed schedule' not in run_log(resumed)


def test_schedule_that_follows_metrics_cannot_be_rebuilt(tmp_path):
    plateau = [dict(type='ReduceOnPlateauLR', monitor='loss', by_epoch=True,
                    patience=1)]
    train(tmp_path / 'run', 1, lr=0.05, schedule=plateau)
    runner = build_runner(
        smoke_config(tmp_path / 'run', max_epochs=2, resume=True,
                     param_scheduler=plateau,
                     **{'optim_wrapper.optimizer.lr': 0.01}))
    with pytest.raises(CheckpointError, match='follow validation metrics'):
        runner.train()
    assert runner.iter == 2  # resumed position, no step taken
