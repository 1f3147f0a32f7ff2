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
from mmscalekd.engine import WorkDirHook
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
                                'import time; time.sleep(10**6)'])
    yield process.pid
    process.kill()
    process.wait()


def test_second_run_on_a_live_work_dir_is_refused(tmp_path, live_process):
    work_dir = tmp_path / 'run'
    write_lock(work_dir, pid=live_process)
    (work_dir / 'scalekd_smoke_synthetic.py').write_text('# the live run\n')
    with pytest.raises(WorkDirLockedError) as error:
        build_runner(smoke_config(work_dir)).train()
    message = str(error.value)
    assert str(work_dir) in message
    assert f'pid {live_process} on host {socket.gethostname()}' in message
    # Nothing of the live run was touched: no checkpoint, config kept.
    assert not list(work_dir.glob('*.pth'))
    assert (work_dir / 'scalekd_smoke_synthetic.py').read_text() == \
        '# the live run\n'
    assert osp.isfile(work_dir / 'run.lock')
    # Built by mmengine alone (mmpretrain's tools/train.py), the Runner
    # writes its config first; WorkDirHook still refuses before training.
    from mmengine.registry import RUNNERS
    runner = RUNNERS.build(smoke_config(work_dir))
    with pytest.raises(WorkDirLockedError, match=str(live_process)):
        runner.train()
    assert not list(work_dir.glob('*.pth'))
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


def wait_for(condition, what):
    """Poll until ``condition()`` holds: the lock's refresher is a thread
    that a loaded machine may run late, never not at all."""
    for _ in range(12000):
        if condition():
            return
        time.sleep(0.01)
    pytest.fail(f'never happened: {what}')


def test_a_held_lock_is_refreshed(tmp_path):
    lock = WorkDirLock(str(tmp_path), stale_after=2, refresh_every=0.01)
    lock.acquire()
    old = time.time() - 100
    os.utime(lock.path, (old, old))
    wait_for(lambda: time.time() - os.stat(lock.path).st_mtime < 50,
             'a refresh')
    lock.release()


def read_log(path):
    with open(path) as f:
        return f.read()


@pytest.fixture
def lock_log(tmp_path):
    """The file that the lock's log lines go to (mmengine's current
    logger, as in a run)."""
    from mmengine.logging import MMLogger
    path = tmp_path / 'lock.log'
    MMLogger.get_instance(f'lock_test_{path}', log_file=str(path))
    return path


def test_a_deleted_lock_is_written_again(tmp_path, lock_log):
    lock = WorkDirLock(str(tmp_path / 'run'), refresh_every=0.01)
    lock.acquire()
    with open(lock.path) as f:
        record = json.load(f)
    os.remove(lock.path)
    wait_for(lambda: osp.exists(lock.path), 'the lock written again')
    with open(lock.path) as f:
        assert json.load(f) == record
    assert lock.lost is None
    lock.check()
    wait_for(lambda: 'deleted by someone else' in read_log(lock_log),
             'the log line')
    lock.release()
    assert not osp.exists(lock.path)


def test_a_lock_taken_by_another_run_stops_this_one_before_it_saves(
        tmp_path):
    """Someone deleted the lock and a second run took the work dir: the
    first one stops before its next checkpoint, and leaves the second
    run's lock alone."""
    from mmengine.hooks import Hook

    class AnotherRunTakesTheLock(Hook):

        def before_train_iter(self, runner, batch_idx, data_batch=None):
            if runner.iter == 0:
                (lock, ) = [h.lock for h in runner.hooks
                            if isinstance(h, WorkDirHook)]
                os.remove(lock.path)
                write_lock(runner.work_dir, host='other-node', pid=7)
                wait_for(lambda: lock.lost is not None, 'noticed')

    work_dir = tmp_path / 'run'
    runner = build_runner(smoke_config(
        work_dir, work_dir_lock=dict(refresh_every=0.01)))
    runner.register_hook(AnotherRunTakesTheLock())
    with pytest.raises(WorkDirLockedError,
                       match='replaced by pid 7 on host other-node'):
        runner.train()
    assert not list(work_dir.glob('*.pth'))
    with open(work_dir / 'run.lock') as f:
        assert json.load(f)['host'] == 'other-node'


def test_a_lock_that_is_not_a_run_record(tmp_path):
    """JSON of another shape: refused while fresh (without a promise that
    is not kept), taken over when as old as a stale lock."""
    path = tmp_path / 'run.lock'
    path.write_text('[1, 2, 3]')
    with pytest.raises(WorkDirLockedError) as error:
        WorkDirLock(str(tmp_path), stale_after=600).acquire()
    assert 'a lock file that is not a run record' in str(error.value)
    assert 'taken over once it has not been refreshed' in str(error.value)
    old = time.time() - 700
    os.utime(path, (old, old))
    lock = WorkDirLock(str(tmp_path), stale_after=600)
    lock.acquire()
    lock.release()


@pytest.mark.parametrize('pid', [2**40, -5, 'x'])
def test_a_pid_no_process_can_have_is_taken_over(tmp_path, lock_log, pid):
    write_lock(tmp_path, pid=pid)
    lock = WorkDirLock(str(tmp_path))
    lock.acquire()
    lock.release()
    assert f'process id {pid!r} no process can have' in read_log(lock_log)


def test_a_dangling_lock_link_is_taken_over(tmp_path, lock_log):
    os.symlink(tmp_path / 'gone', tmp_path / 'run.lock')
    lock = WorkDirLock(str(tmp_path))
    lock.acquire()
    assert not osp.islink(lock.path)
    lock.release()
    assert 'symbolic link' in read_log(lock_log)


def test_a_live_process_on_this_host_is_never_promised_a_takeover(
        tmp_path, live_process):
    write_lock(tmp_path, pid=live_process)
    with pytest.raises(WorkDirLockedError) as error:
        WorkDirLock(str(tmp_path), stale_after=600).acquire()
    message = str(error.value)
    assert f'Process {live_process} is alive on this host' in message
    assert 'taken over' not in message and '600' not in message


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
    assert "outside this run's folders" in log
    assert f'resuming from {moved / "epoch_2.pth"}' in log
    assert 'resumed epoch: 2' in log


def test_checkpoints_in_out_dir_are_resumed(tmp_path):
    """`default_hooks.checkpoint.out_dir`: checkpoints live in
    OUT_DIR/<work dir name>, `last_checkpoint` in the work dir."""
    out_dir = tmp_path / 'checkpoints'
    work_dir = tmp_path / 'run'
    options = {'default_hooks.checkpoint.out_dir': str(out_dir)}
    build_runner(smoke_config(work_dir, max_epochs=2, **options)).train()
    saved = out_dir / 'run' / 'epoch_2.pth'
    first = (out_dir / 'run' / 'epoch_1.pth').read_bytes()
    assert saved.is_file() and not list(work_dir.glob('*.pth'))
    runner = build_runner(smoke_config(work_dir, max_epochs=3, resume=True,
                                       **options))
    runner.train()
    log = run_log(runner)
    assert f'Auto-resume: resuming from {saved}' in log
    assert 'resumed epoch: 2' in log and 'starting from scratch' not in log
    assert (out_dir / 'run' / 'epoch_1.pth').read_bytes() == first
    assert (out_dir / 'run' / 'epoch_3.pth').is_file()


def test_garbage_in_last_checkpoint_is_ignored(two_epochs, tmp_path):
    work_dir = copy_of(two_epochs, tmp_path)
    (work_dir / 'last_checkpoint').write_bytes(b'\x80\x81\xfe\x00garbage')
    runner = resume(work_dir)
    log = run_log(runner)
    assert 'does not hold a checkpoint path' in log
    assert 'resumed epoch: 2' in log


def test_a_finished_run_says_it_is_finished(two_epochs, tmp_path):
    work_dir = copy_of(two_epochs, tmp_path)
    before = (work_dir / 'epoch_2.pth').read_bytes()
    runner = resume(work_dir, max_epochs=2)
    assert runner.epoch == 2
    assert (f'The run in {work_dir} is finished: {work_dir / "epoch_2.pth"} '
            'is at epoch 2 of `train_cfg.max_epochs=2`') in run_log(runner)
    assert (work_dir / 'epoch_2.pth').read_bytes() == before
    assert not (work_dir / 'epoch_3.pth').exists()


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


def test_nothing_is_written_through_links_out_of_the_work_dir(tmp_path):
    """A work dir handed over with links in it: the run replaces the links
    with its own files and leaves what they pointed to alone."""
    outside = tmp_path / 'outside'
    outside.mkdir()
    work_dir = tmp_path / 'run'
    work_dir.mkdir()
    for name in ('last_checkpoint', 'scalekd_smoke_synthetic.py',
                 'epoch_1.pth.partial'):
        (outside / name).write_text('theirs\n')
        os.symlink(outside / name, work_dir / name)
    build_runner(smoke_config(work_dir)).train()
    for name in ('last_checkpoint', 'scalekd_smoke_synthetic.py'):
        assert (outside / name).read_text() == 'theirs\n'
        assert not osp.islink(work_dir / name)
    assert 'epoch_1.pth' in (work_dir / 'last_checkpoint').read_text()
    assert (outside / 'epoch_1.pth.partial').read_text() == 'theirs\n'
    assert (work_dir / 'epoch_1.pth').is_file()


def test_a_config_in_its_own_work_dir_is_not_overwritten(tmp_path):
    """`--work-dir` the config's own folder: the merged config is written
    as <timestamp>.py, not over the file it was read from."""
    from mmengine.config import Config
    from tests.conftest import SMOKE_CONFIG
    folder = tmp_path / 'experiment'
    folder.mkdir()
    source = folder / 'scalekd_smoke_synthetic.py'
    shutil.copy(SMOKE_CONFIG, source)
    text = source.read_text()
    cfg = smoke_config(folder)
    cfg = Config(cfg.to_dict(), filename=str(source))
    runner = build_runner(cfg)
    runner.train()
    assert source.read_text() == text
    assert 'ScaleKDDistiller' in (folder /
                                  f'{runner.timestamp}.py').read_text()


def test_a_test_on_a_training_work_dir_keeps_its_config(two_epochs, tmp_path):
    work_dir = copy_of(two_epochs, tmp_path)
    dumped = work_dir / 'scalekd_smoke_synthetic.py'
    text = dumped.read_text()
    runner = build_runner(smoke_config(
        work_dir, load_from=str(work_dir / 'epoch_2.pth'),
        **{'test_dataloader.dataset.num_samples': 8}), training=False)
    runner.test()
    assert dumped.read_text() == text
    assert 'load_from' in (work_dir / f'{runner.timestamp}.py').read_text()


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
