"""One run per work dir, and auto-resume that only trusts its own work dir."""
import json
import os
import os.path as osp
import shutil
import socket
import subprocess
import sys
import time

import pytest
import torch

from mmscalekd.engine import WorkDirLock, WorkDirLockedError
from mmscalekd.engine.training_checkpoint import find_latest_checkpoint
from tests.conftest import build_runner, run_log, smoke_config


def write_lock(work_dir, **holder):
    os.makedirs(work_dir, exist_ok=True)
    record = dict(host=socket.gethostname(), pid=os.getpid(),
                  started='2026-11-25 10:00:00', command='train.py x')
    record.update(holder)
    path = osp.join(work_dir, 'run.lock')
    with open(path, 'w') as f:
        json.dump(record, f)
    return path


@pytest.fixture
def live_process():
    process = subprocess.Popen([sys.executable, '-c',
                                'import time; time.sleep(60)'])
    yield process.pid
    process.kill()
    process.wait()


def test_second_run_on_a_live_work_dir_is_refused(tmp_path, live_process):
    work_dir = tmp_path / 'run'
    write_lock(work_dir, pid=live_process)
    (work_dir / 'scalekd_smoke_synthetic.py').write_text('# the live run\n')
    runner = build_runner(smoke_config(work_dir))
    with pytest.raises(WorkDirLockedError) as error:
        runner.train()
    message = str(error.value)
    assert str(work_dir) in message
    assert f'pid {live_process} on host {socket.gethostname()}' in message
    # Nothing of the live run was touched: no checkpoint, config kept.
    assert not list(work_dir.glob('*.pth'))
    assert (work_dir / 'scalekd_smoke_synthetic.py').read_text() == \
        '# the live run\n'
    assert osp.isfile(work_dir / 'run.lock')


def test_lock_of_a_dead_process_is_taken_over(tmp_path):
    finished = subprocess.run([sys.executable, '-c', 'import os; '
                               'print(os.getpid())'], capture_output=True,
                              text=True)
    dead_pid = int(finished.stdout)
    work_dir = tmp_path / 'run'
    write_lock(work_dir, pid=dead_pid)
    runner = build_runner(smoke_config(work_dir))
    runner.train()
    assert osp.isfile(work_dir / 'epoch_1.pth')
    assert f'process {dead_pid} on this host has ended' in run_log(runner)
    assert not osp.exists(work_dir / 'run.lock')  # released at the end


def test_requeued_slurm_job_takes_over_its_own_lock(tmp_path, monkeypatch,
                                                    live_process):
    monkeypatch.setenv('SLURM_JOB_ID', '4242')
    monkeypatch.setenv('SLURM_RESTART_COUNT', '1')
    lock = WorkDirLock(str(tmp_path))
    # The earlier incarnation, on another node, refreshed a moment ago.
    write_lock(tmp_path, host='node-that-died', pid=live_process,
               slurm_job_id='4242', slurm_restart_count='0')
    lock.acquire()
    with open(lock.path) as f:
        assert json.load(f)['slurm_restart_count'] == '1'
    lock.release()
    assert not osp.exists(lock.path)


def test_lock_from_another_host_is_live_until_stale(tmp_path):
    path = write_lock(tmp_path, host='other-node', pid=1)
    with pytest.raises(WorkDirLockedError, match='host other-node'):
        WorkDirLock(str(tmp_path), stale_after=600).acquire()
    old = time.time() - 700
    os.utime(path, (old, old))
    lock = WorkDirLock(str(tmp_path), stale_after=600)
    lock.acquire()
    lock.release()


def test_a_held_lock_is_refreshed(tmp_path):
    lock = WorkDirLock(str(tmp_path), stale_after=2, refresh_every=0.1)
    lock.acquire()
    old = time.time() - 100
    os.utime(lock.path, (old, old))
    time.sleep(0.5)
    assert time.time() - os.stat(lock.path).st_mtime < 5
    lock.release()


# ------------------------------------------------------------ auto-resume
@pytest.fixture(scope='module')
def two_epochs(tmp_path_factory):
    work_dir = tmp_path_factory.mktemp('two_epochs')
    build_runner(smoke_config(work_dir, max_epochs=2)).train()
    return work_dir


def copy_of(two_epochs, tmp_path):
    work_dir = tmp_path / 'run'
    shutil.copytree(two_epochs, work_dir)
    return work_dir


def resume(work_dir, max_epochs=3):
    runner = build_runner(
        smoke_config(work_dir, max_epochs=max_epochs, resume=True))
    runner.train()
    return runner


def test_missing_file_named_by_last_checkpoint_falls_back(two_epochs,
                                                          tmp_path):
    work_dir = copy_of(two_epochs, tmp_path)
    os.remove(work_dir / 'epoch_2.pth')
    runner = resume(work_dir)
    log = run_log(runner)
    assert f'Auto-resume: resuming from {work_dir / "epoch_1.pth"}' in log
    assert 'resumed epoch: 1' in log
    assert runner.epoch == 3


def test_truncated_newest_checkpoint_falls_back(two_epochs, tmp_path):
    work_dir = copy_of(two_epochs, tmp_path)
    data = (work_dir / 'epoch_2.pth').read_bytes()
    (work_dir / 'epoch_2.pth').write_bytes(data[:len(data) // 2])
    assert find_latest_checkpoint(str(work_dir)) == str(work_dir /
                                                         'epoch_1.pth')
    runner = resume(work_dir)
    assert 'incomplete or damaged' in run_log(runner)
    assert 'resumed epoch: 1' in run_log(runner)


def test_moved_work_dir_resumes_its_own_checkpoint(two_epochs, tmp_path):
    work_dir = copy_of(two_epochs, tmp_path)
    moved = tmp_path / 'moved'
    os.rename(work_dir, moved)
    # What mmengine followed: the old absolute path, now gone (or another
    # run's). Give the old place a different "epoch_2.pth" to be sure.
    work_dir.mkdir()
    shutil.copy(two_epochs / 'epoch_1.pth', work_dir / 'epoch_2.pth')
    runner = resume(moved)
    log = run_log(runner)
    assert 'outside this work dir' in log
    assert f'resuming from {moved / "epoch_2.pth"}' in log
    assert 'resumed epoch: 2' in log


def test_nothing_to_resume_says_so_and_starts_fresh(tmp_path):
    runner = resume(tmp_path / 'empty', max_epochs=1)
    log = run_log(runner)
    assert log.count('Auto-resume: no complete checkpoint in') == 1
    assert 'starting from scratch' in log
    assert runner.epoch == 1


def test_partial_file_of_a_killed_save_is_removed(two_epochs, tmp_path):
    work_dir = copy_of(two_epochs, tmp_path)
    (work_dir / 'epoch_3.pth.partial').write_bytes(b'half a checkpoint')
    runner = resume(work_dir)
    assert not (work_dir / 'epoch_3.pth.partial').exists()
    assert 'epoch_3.pth.partial' in run_log(runner)
    assert torch.load(work_dir / 'epoch_3.pth',
                      weights_only=False)['meta']['epoch'] == 3


def test_checkpoint_is_on_disk_before_it_is_renamed(tmp_path, monkeypatch):
    events = []
    fsync, replace = os.fsync, os.replace

    def record_fsync(fd):
        events.append(('fsync', os.readlink(f'/proc/self/fd/{fd}')))
        return fsync(fd)

    def record_replace(src, dst):
        events.append(('replace', str(src)))
        return replace(src, dst)

    monkeypatch.setattr(os, 'fsync', record_fsync)
    monkeypatch.setattr(os, 'replace', record_replace)
    work_dir = tmp_path / 'run'
    build_runner(smoke_config(work_dir)).train()
    partial = str(work_dir / 'epoch_1.pth.partial')
    synced = events.index(('fsync', partial))
    renamed = events.index(('replace', partial))
    assert synced < renamed
    assert ('fsync', str(work_dir)) in events[renamed:]
