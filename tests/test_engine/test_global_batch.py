"""The global batch of a run (processes x batch x accumulation): set with
``tools/train.py --accumulate``, counted by ``--auto-scale-lr``, logged at
the start of training (GlobalBatchHook)."""
import os.path as osp
import re

from mmengine.config import Config

from mmscalekd.engine import prepare_run
from tests.conftest import (REPO_ROOT, SMOKE_CONFIG, build_runner, load_tool,
                            run_log, smoke_config)

TRAIN = load_tool(osp.join(REPO_ROOT, 'tools', 'train.py'))


def merged(*argv, config=SMOKE_CONFIG):
    args = TRAIN.parse_args([config, *argv])
    return TRAIN.merge_args(Config.fromfile(config), args)


def test_accumulate_sets_the_optimizer_wrappers_counts(tmp_path):
    assert merged('--accumulate', '4').optim_wrapper.accumulative_counts == 4
    assert 'accumulative_counts' not in merged().optim_wrapper
    # a config's own accumulation, kept or replaced by the command line
    config = tmp_path / 'accumulating.py'
    config.write_text(f'_base_ = [{SMOKE_CONFIG!r}]\n'
                      'optim_wrapper = dict(accumulative_counts=3)\n')
    own = merged(config=str(config)).optim_wrapper
    assert own.accumulative_counts == 3
    replaced = merged('--accumulate', '2', config=str(config)).optim_wrapper
    assert replaced.accumulative_counts == 2


def test_auto_scaled_lr_counts_the_accumulated_batches(tmp_path):
    # the smoke config: base batch 32, one process x 32
    cfg = merged('--accumulate', '4', '--auto-scale-lr', '--work-dir',
                 str(tmp_path))
    cfg = prepare_run(cfg, training=True)
    # mmengine's Runner divides 1 x 32 by this: 32 x 4 / 32
    assert cfg.auto_scale_lr.base_batch_size == 8
    assert cfg.auto_scale_lr.recipe_base_batch_size == 32
    # the config dumped into the work dir, run again, is scaled the same
    again = prepare_run(Config(cfg.to_dict()), training=True)
    assert again.auto_scale_lr.base_batch_size == 8
    # without --auto-scale-lr nothing is scaled
    plain = prepare_run(merged('--accumulate', '4'), training=True)
    assert plain.auto_scale_lr.to_dict() == dict(base_batch_size=32)


def global_batch_line(runner):
    lines = [line for line in run_log(runner).splitlines()
             if 'Global batch' in line]
    assert len(lines) == 1, lines
    return lines[0]


def test_the_log_names_the_global_batch_and_the_scaled_lr(tmp_path):
    cfg = smoke_config(tmp_path, num_samples=64, optim_wrapper=dict(
        accumulative_counts=2), auto_scale_lr=dict(enable=True))
    runner = build_runner(cfg)
    runner.train()
    line = global_batch_line(runner)
    assert ' - INFO - ' in line
    assert re.search(
        r'Global batch 64 = 1 process\(es\) x 32 images x 2 accumulated '
        r'batch\(es\) per optimizer step; recipe base batch '
        r'\(auto_scale_lr\.base_batch_size\): 32; lr 0\.1 \(auto-scaled by '
        r'64/32 = 2\)\.$', line), line
    # the smoke recipe's lr, 0.05, doubled
    assert runner.optim_wrapper.param_groups[0]['initial_lr'] == 0.1


def test_an_unscaled_lr_for_another_batch_is_a_warning(tmp_path):
    cfg = smoke_config(tmp_path, num_samples=64,
                       train_dataloader=dict(batch_size=16))
    runner = build_runner(cfg)
    runner.train()
    line = global_batch_line(runner)
    assert ' - WARNING - ' in line
    assert re.search(
        r'Global batch 16 = 1 process\(es\) x 16 images x 1 accumulated '
        r'batch\(es\).*: 32; lr 0\.05 \(not auto-scaled\)\. The lr is meant '
        r'for the base batch: .*--accumulate.*--auto-scale-lr\.$', line), line


def test_accumulation_under_an_iteration_based_loop_is_a_warning(tmp_path):
    cfg = smoke_config(tmp_path, num_samples=64,
                       optim_wrapper=dict(accumulative_counts=2))
    cfg.train_cfg = dict(type='IterBasedTrainLoop', max_iters=4)
    cfg.param_scheduler = None
    cfg.default_hooks.checkpoint.update(by_epoch=False, interval=4)
    runner = build_runner(cfg)
    runner.train()
    line = global_batch_line(runner)
    assert ' - WARNING - ' in line
    assert re.search(
        r'Global batch 64 = .*; lr 0\.05 \(not auto-scaled\)\. The lr is '
        r'meant for the base batch: .*\. `train_cfg\.max_iters` counts '
        r'batches: 4 iterations are 2 optimizer steps\.$', line), line
