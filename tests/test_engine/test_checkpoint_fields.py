"""Nothing a checkpoint carries becomes code or an action.

Each crafted checkpoint below passes torch's weights-only loading with
mmengine's allow-list (it holds only strings, numbers and containers), yet
before this was handled each made a resumed run execute, delete or change
something.
"""
import codecs
import os.path as osp
import pickle

import pytest
import torch
from mmengine.logging import HistoryBuffer

from mmscalekd.engine.training_checkpoint import read_training_checkpoint
from mmscalekd.utils import CheckpointError
from tests.conftest import (build_runner, load_checkpoint, run_log,
                            smoke_config)


@pytest.fixture
def first_epoch(one_epoch_run):
    """A real one-epoch checkpoint to craft from."""
    return load_checkpoint(osp.join(one_epoch_run, 'epoch_1.pth'))


def resume(tmp_path, checkpoint, **options):
    """Resume a 2-epoch run from ``checkpoint`` (a crafted copy)."""
    work_dir = tmp_path / 'run'
    work_dir.mkdir(exist_ok=True)
    path = work_dir / 'crafted.pth'
    torch.save(checkpoint, path)
    runner = build_runner(
        smoke_config(work_dir, max_epochs=2, resume=True, load_from=str(path),
                     **options))
    runner.train()
    return runner


def test_meta_config_is_never_executed(first_epoch, tmp_path):
    marker = tmp_path / 'pwned'
    checkpoint = dict(first_epoch)
    # mmengine's Runner.resume ran this through Config.fromstring (exec).
    checkpoint['meta'] = dict(
        checkpoint['meta'],
        config=f'open({str(marker)!r}, "w").close()\n')
    runner = resume(tmp_path, checkpoint)
    assert runner.epoch == 2
    assert not marker.exists()
    assert 'ignoring meta.config' in run_log(runner)


def test_best_checkpoint_path_outside_the_work_dir_is_never_deleted(
        first_epoch, tmp_path):
    # A colleague's best checkpoint on a shared disk, named in the message
    # hub of the checkpoint they handed over.
    victim = tmp_path / 'colleague' / 'best_accuracy_top1_epoch_9.pth'
    victim.parent.mkdir()
    victim.write_bytes(b'their best model')
    checkpoint = dict(first_epoch)
    hub = dict(checkpoint['message_hub'])
    hub['runtime_info'] = dict(
        hub['runtime_info'], best_ckpt=str(victim), best_score=-1.0,
        keep_ckpt_ids=['../x'])
    checkpoint['message_hub'] = hub
    runner = resume(
        tmp_path, checkpoint, validate=True,
        **{'default_hooks.checkpoint.save_best': 'accuracy/top1'})
    # The run found a better score and wrote its own best checkpoint ...
    assert list((tmp_path / 'run').glob('best_accuracy_top1_epoch_2.pth'))
    # ... without deleting the file the crafted path named.
    assert victim.read_bytes() == b'their best model'
    log = run_log(runner)
    assert 'best_ckpt' in log and 'forgotten' in log
    assert 'keep_ckpt_ids' in log


@pytest.mark.parametrize('name', ['run.lock', 'notes.txt',
                                  'best_accuracy_top1_epoch_9.pth'])
def test_best_checkpoint_must_be_a_checkpoint_of_this_run(first_epoch,
                                                         tmp_path, name):
    """A path elsewhere whose name is in this work dir (the "work dir was
    moved" rule) must not make the run delete its own live lock, a user's
    file, or anything else that is not a complete checkpoint."""
    work_dir = tmp_path / 'run'
    work_dir.mkdir()
    victim = work_dir / name
    if name != 'run.lock':  # the run's lock is written by the run itself
        victim.write_bytes(b'not a checkpoint of this run')
    checkpoint = dict(first_epoch)
    hub = dict(checkpoint['message_hub'])
    hub['runtime_info'] = dict(
        hub['runtime_info'], best_ckpt=f'/elsewhere/{name}', best_score=-1.0)
    checkpoint['message_hub'] = hub
    runner = resume(
        tmp_path, checkpoint, validate=True,
        **{'default_hooks.checkpoint.save_best': 'accuracy/top1'})
    log = run_log(runner)
    assert list(work_dir.glob('best_accuracy_top1_epoch_2.pth'))
    assert 'is not a checkpoint in this run' in log
    assert f'{name} is removed' not in log
    if name != 'run.lock':
        assert victim.read_bytes() == b'not a checkpoint of this run'


def test_scheduler_state_cannot_rewire_the_scheduler(first_epoch, tmp_path):
    checkpoint = dict(first_epoch)
    scheduler = dict(checkpoint['param_schedulers'][0])
    # mmengine copies every saved field into the scheduler object: this
    # would schedule the momentum instead of the learning rate, and shadow
    # a method with a string.
    scheduler.update(param_name='momentum', _get_value='not a method')
    checkpoint['param_schedulers'] = [scheduler]
    runner = resume(tmp_path, checkpoint)
    restored = runner.param_schedulers[0]
    assert restored.param_name == 'lr'
    assert '_get_value' not in vars(restored)
    group = runner.optim_wrapper.param_groups[0]
    assert group['momentum'] == 0.9
    assert 'schedule is rebuilt' in run_log(runner)


def test_history_buffer_cannot_swap_statistics(first_epoch, tmp_path):
    """mmengine's HistoryBuffer.__setstate__ merges the pickled statistics
    into the class-wide table: a file could make every buffer's mean()
    something else."""

    class Crafted:

        def __reduce__(self):
            return (HistoryBuffer, (), dict(
                max_length=10, _log_history=torch.zeros(0).numpy(),
                _count_history=torch.zeros(0).numpy(),
                statistics_methods={'mean': HistoryBuffer.max}))

    checkpoint = dict(first_epoch)
    hub = dict(checkpoint['message_hub'])
    hub['log_scalars'] = dict(hub['log_scalars'], **{'train/evil': Crafted()})
    checkpoint['message_hub'] = hub
    path = tmp_path / 'crafted.pth'
    torch.save(checkpoint, path)
    table = dict(HistoryBuffer._statistics_methods)
    try:
        with pytest.raises(CheckpointError, match='Refused'):
            read_training_checkpoint(str(path), 'resume')
        assert HistoryBuffer._statistics_methods == table
    finally:
        HistoryBuffer._statistics_methods.clear()
        HistoryBuffer._statistics_methods.update(table)


@pytest.mark.parametrize('field, value, message', [
    ('meta', {'x': codecs.encode}, 'meta.x'),
    ('meta', {'epoch': 'one'}, 'meta.epoch'),
    ('message_hub', {'log_scalars': {'a': 1.0}, 'runtime_info': {},
                     'resumed_keys': {}}, 'log_scalars'),
    ('state_dict', {'student.x': 'not a tensor'}, 'not tensors'),
])
def test_fields_that_are_not_data_are_refused(first_epoch, tmp_path, field,
                                              value, message):
    checkpoint = dict(first_epoch)
    checkpoint[field] = value
    path = tmp_path / 'crafted.pth'
    torch.save(checkpoint, path)
    with pytest.raises(CheckpointError, match=message):
        read_training_checkpoint(str(path), 'resume')


def test_loaded_buffers_are_mmengine_buffers(first_epoch, tmp_path):
    """A resumed run's checkpoints load with stock mmengine again."""
    buffers = first_epoch['message_hub']['log_scalars'].values()
    assert all(type(b) is HistoryBuffer for b in buffers)
    path = tmp_path / 'again.pth'
    torch.save(first_epoch, path)
    assert b'_CheckedHistoryBuffer' not in pickle.dumps(
        first_epoch['message_hub'])
    assert load_checkpoint(path)['meta']['epoch'] == 1
