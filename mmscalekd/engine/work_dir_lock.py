"""One training run per work dir.

Two runs in one work dir (a job submitted twice, a requeued job whose old
incarnation still runs, a colleague reusing a folder) overwrite each other's
checkpoints, ``last_checkpoint`` and logs, and a later resume mixes them.
:class:`WorkDirLock` is a file in the work dir that names the run holding
it. It works on shared file systems without ``flock``: creating it is atomic
(``O_EXCL``), a live holder refreshes its time stamp, and a lock whose holder
is gone is taken over, with a log line:

- the holder ran on this host and its process no longer exists;
- the holder is an earlier incarnation of this slurm job (a requeue:
  slurm runs one incarnation of a job at a time);
- the lock has not been refreshed for ``stale_after`` seconds (the holder's
  node died).
"""
import json
import os
import os.path as osp
import socket
import sys
import threading
import time
from typing import Optional

from mmengine.logging import print_log

__all__ = ['WorkDirLock', 'WorkDirLockedError']

LOCK_NAME = 'run.lock'


class WorkDirLockedError(RuntimeError):
    """Another live run holds the work dir."""


def _process_start(pid: int) -> Optional[str]:
    """The start time of a process (field 22 of /proc/PID/stat), if known.

    Recorded with the pid so that a new process that got the same pid later
    is not mistaken for the holder.
    """
    try:
        with open(f'/proc/{pid}/stat') as f:
            return f.read().rsplit(')', 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def _this_run() -> dict:
    return dict(
        host=socket.gethostname(),
        pid=os.getpid(),
        process_start=_process_start(os.getpid()),
        slurm_job_id=os.environ.get('SLURM_JOB_ID'),
        slurm_restart_count=os.environ.get('SLURM_RESTART_COUNT', '0'),
        started=time.strftime('%Y-%m-%d %H:%M:%S'),
        command=' '.join(sys.argv))


class WorkDirLock:
    """The lock file of a work dir, held while a run trains in it.

    Args:
        work_dir (str): the work dir.
        stale_after (float): seconds without a refresh after which a lock
            held from another host is taken to be dead. Defaults to 600.
        refresh_every (float): seconds between refreshes of a held lock.
            Defaults to 30.
    """

    def __init__(self, work_dir: str, stale_after: float = 600,
                 refresh_every: float = 30):
        if refresh_every >= stale_after:
            raise ValueError(
                f'`work_dir_lock.refresh_every={refresh_every}` must be '
                f'shorter than `stale_after={stale_after}`.')
        self.work_dir = osp.abspath(work_dir)
        self.path = osp.join(self.work_dir, LOCK_NAME)
        self.stale_after = stale_after
        self.refresh_every = refresh_every
        self._record = None
        self._stop = threading.Event()
        self._refresher = None

    # ------------------------------------------------------------- holders
    def _read(self) -> Optional[dict]:
        return self._read_file(self.path)

    def _age(self) -> float:
        try:
            return time.time() - os.stat(self.path).st_mtime
        except OSError:
            return 0.0

    def _why_dead(self, holder: Optional[dict], age: float) -> Optional[str]:
        """Why the holder is gone, or None while it may be alive."""
        if holder is None:  # being written right now, or garbage
            return (f'an unreadable lock not refreshed for {age:.0f} s'
                    if age > self.stale_after else None)
        me = _this_run()
        if holder.get('slurm_job_id') and \
                holder.get('slurm_job_id') == me['slurm_job_id'] and \
                holder.get('slurm_restart_count') != \
                me['slurm_restart_count']:
            return ('an earlier incarnation of this slurm job '
                    f'{me["slurm_job_id"]} (requeued)')
        if holder.get('host') == me['host']:
            pid = holder.get('pid')
            if not isinstance(pid, int):
                return 'a lock without a process id'
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return f'process {pid} on this host has ended'
            except PermissionError:
                pass  # alive, owned by another user
            start = holder.get('process_start')
            if start is not None and _process_start(pid) not in (None,
                                                                 start):
                return f'process {pid} on this host has ended (pid reused)'
            return None
        if age > self.stale_after:
            return (f'not refreshed for {age:.0f} s (more than '
                    f'`work_dir_lock.stale_after={self.stale_after}`)')
        return None

    def _describe(self, holder: Optional[dict], age: float) -> str:
        if holder is None:
            return f'an unreadable lock file refreshed {age:.0f} s ago'
        slurm = (f', slurm job {holder["slurm_job_id"]}'
                 if holder.get('slurm_job_id') else '')
        return (f'pid {holder.get("pid")} on host {holder.get("host")}'
                f'{slurm}, started {holder.get("started")}, refreshed '
                f'{age:.0f} s ago, command: {holder.get("command")}')

    # ---------------------------------------------------------- acquiring
    def acquire(self) -> None:
        """Take the lock, or raise :class:`WorkDirLockedError`."""
        os.makedirs(self.work_dir, exist_ok=True)
        record = _this_run()
        for _ in range(5):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY,
                             0o644)
            except FileExistsError:
                self._take_over_if_dead()
                continue
            with os.fdopen(fd, 'w') as f:
                json.dump(record, f)
                f.flush()
                os.fsync(f.fileno())
            self._record = record
            self._start_refreshing()
            return
        raise WorkDirLockedError(
            f'Could not take the lock {self.path}: other runs keep taking '
            'it. Use another --work-dir.')

    def _take_over_if_dead(self) -> None:
        holder, age = self._read(), self._age()
        if holder is not None and holder.get('pid') == os.getpid() and \
                holder.get('host') == socket.gethostname() and \
                holder.get('process_start') == _process_start(os.getpid()):
            reason = 'left by this process (an earlier run in it)'
        else:
            reason = self._why_dead(holder, age)
        if reason is None:
            raise WorkDirLockedError(
                f'The work dir {self.work_dir} is in use by another training '
                f'run: {self._describe(holder, age)} (lock file '
                f'{self.path}). Two runs in one work dir overwrite each '
                "other's checkpoints and logs. Wait for that run to end, stop "
                'it, or give this one another --work-dir. If that run is '
                'dead, its lock is taken over once it is '
                f'{self.stale_after:.0f} s old, or delete the lock file.')
        # Move the dead lock aside under a unique name (atomic); if another
        # starting run took it over first, the rename fails and we retry.
        aside = f'{self.path}.stale.{socket.gethostname()}.{os.getpid()}'
        try:
            os.rename(self.path, aside)
        except FileNotFoundError:
            return
        if self._read_file(aside) != holder:  # replaced in between: undo
            try:
                os.rename(aside, self.path)
            except OSError:
                pass
            return
        os.remove(aside)
        print_log(
            f'Taking over the lock of {self.work_dir}: its holder '
            f'({self._describe(holder, age)}) is gone: {reason}.',
            logger='current', level=30)

    @staticmethod
    def _read_file(path: str) -> Optional[dict]:
        try:
            with open(path) as f:
                return json.load(f)
        except (OSError, ValueError):
            return None

    # ---------------------------------------------------------- holding it
    def _start_refreshing(self) -> None:
        self._stop.clear()

        def refresh():
            while not self._stop.wait(self.refresh_every):
                try:
                    os.utime(self.path)
                except OSError:
                    pass

        self._refresher = threading.Thread(
            target=refresh, name='work-dir-lock', daemon=True)
        self._refresher.start()

    def release(self) -> None:
        """Give the lock back (only if this run still holds it)."""
        if self._record is None:
            return
        self._stop.set()
        if self._refresher is not None:
            self._refresher.join(timeout=5)
        if self._read() == self._record:
            try:
                os.remove(self.path)
            except FileNotFoundError:
                pass
        self._record = None
