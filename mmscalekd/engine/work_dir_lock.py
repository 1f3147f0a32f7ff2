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
  node died);
- the lock file is not a lock this package writes (a symbolic link, or not
  a run record) and is as old as a stale lock.

While it holds the lock, a run checks it at every refresh: a lock file that
someone deleted is written again (with a log line); one that another run
wrote in the meantime means two runs share the work dir, and this run stops
at its next checkpoint, before writing it (:meth:`WorkDirLock.check`).
"""
import json
import math
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


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) \
        and math.isfinite(value)


def _valid_pid(pid) -> bool:
    """Whether ``pid`` could name a process (Linux pids are below 2**22)."""
    return isinstance(pid, int) and not isinstance(pid, bool) and \
        0 < pid < 2**31


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
        for name, value in (('stale_after', stale_after),
                            ('refresh_every', refresh_every)):
            if not _is_number(value) or value <= 0:
                raise ValueError(
                    f'`work_dir_lock.{name}={value!r}` must be a finite '
                    'number of seconds > 0 (defaults: stale_after=600, '
                    'refresh_every=30); `work_dir_lock=None` switches the '
                    'lock off.')
        if refresh_every >= stale_after:
            raise ValueError(
                f'`work_dir_lock.refresh_every={refresh_every}` must be '
                f'shorter than `stale_after={stale_after}`.')
        self.work_dir = osp.abspath(work_dir)
        self.path = osp.join(self.work_dir, LOCK_NAME)
        self.stale_after = stale_after
        self.refresh_every = refresh_every
        #: Why this run no longer holds the lock it took, or None.
        self.lost = None
        self._record = None
        self._stop = threading.Event()
        self._refresher = None

    # ------------------------------------------------------------- holders
    def _read(self) -> Optional[dict]:
        return self._read_file(self.path)

    def _age(self) -> float:
        try:  # the link itself, if it is one (a dangling link has an age)
            return time.time() - os.lstat(self.path).st_mtime
        except OSError:
            return 0.0

    def _why_dead(self, holder: Optional[dict], age: float) -> Optional[str]:
        """Why the holder is gone, or None while it may be alive."""
        if osp.islink(self.path):
            return 'the lock file is a symbolic link, which no run writes'
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
            if not _valid_pid(pid):
                return f'a lock whose process id {pid!r} no process can have'
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
            return (f'a lock file that is not a run record, last changed '
                    f'{age:.0f} s ago')
        slurm = (f', slurm job {holder["slurm_job_id"]}'
                 if holder.get('slurm_job_id') else '')
        return (f'pid {holder.get("pid")} on host {holder.get("host")}'
                f'{slurm}, started {holder.get("started")}, refreshed '
                f'{age:.0f} s ago, command: {holder.get("command")}')

    def _what_to_do(self, holder: Optional[dict], age: float) -> str:
        """What ends the refusal: only what will really happen."""
        if holder is not None and holder.get('host') == socket.gethostname():
            return (f'Process {holder.get("pid")} is alive on this host: '
                    'wait for it to end, stop it if it is a forgotten run, '
                    'or give this run another --work-dir.')
        left = max(self.stale_after - age, 0)
        what = ('its node died' if holder is not None else
                'no run is writing it')
        return (f'Wait for that run to end, or give this run another '
                f'--work-dir. If {what}, the lock is taken over once it has '
                'not been refreshed for `work_dir_lock.stale_after='
                f'{self.stale_after}` s (in {left:.0f} s), or delete '
                f'{self.path}.')

    # ---------------------------------------------------------- acquiring
    def acquire(self) -> None:
        """Take the lock, or raise :class:`WorkDirLockedError`."""
        os.makedirs(self.work_dir, exist_ok=True)
        self._record = _this_run()
        self.lost = None
        try:
            for _ in range(5):
                if self._create():
                    self._start_refreshing()
                    return
                self._take_over_if_dead()
        except BaseException:
            self._record = None
            raise
        self._record = None
        raise WorkDirLockedError(
            f'Could not take the lock {self.path}: other runs keep taking '
            'it. Use another --work-dir.')

    def check_free(self) -> None:
        """Raise :class:`WorkDirLockedError` if a live run holds the lock,
        without taking it: a tool asks before it writes anything into the
        work dir (the lock itself is taken when training starts)."""
        if osp.lexists(self.path):
            self._refuse_if_alive(self._read(), self._age())

    def _refuse_if_alive(self, holder: Optional[dict], age: float) -> str:
        """Why the holder is gone, or :class:`WorkDirLockedError`."""
        if holder is not None and holder.get('pid') == os.getpid() and \
                holder.get('host') == socket.gethostname() and \
                holder.get('process_start') == _process_start(os.getpid()):
            return 'left by this process (an earlier run in it)'
        reason = self._why_dead(holder, age)
        if reason is None:
            raise WorkDirLockedError(
                f'The work dir {self.work_dir} is in use by another training '
                f'run: {self._describe(holder, age)} (lock file '
                f'{self.path}). Two runs in one work dir overwrite each '
                "other's checkpoints and logs. " +
                self._what_to_do(holder, age))
        return reason

    def _take_over_if_dead(self) -> None:
        holder, age = self._read(), self._age()
        reason = self._refuse_if_alive(holder, age)
        # Move the dead lock aside under a unique name (atomic; a link is
        # moved, not what it points to); if another starting run took it
        # over first, the rename fails and we retry.
        aside = f'{self.path}.stale.{socket.gethostname()}.{os.getpid()}'
        try:
            os.rename(self.path, aside)
        except FileNotFoundError:
            return
        if not osp.islink(aside) and self._read_file(aside) != holder:
            try:  # replaced in between: undo
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
        """The run record in ``path``, or None (missing, a link, garbage, or
        JSON of another shape)."""
        if osp.islink(path):
            return None
        try:
            with open(path) as f:
                record = json.load(f)
        except (OSError, ValueError):
            return None
        if not isinstance(record, dict) or not isinstance(
                record.get('host'), str) or 'pid' not in record:
            return None
        return record

    # ---------------------------------------------------------- holding it
    def _create(self) -> bool:
        """Write this run's record into a new lock file; False if the file
        exists (as anything, a link included)."""
        try:
            fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY,
                         0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, 'w') as f:
            json.dump(self._record, f)
            f.flush()
            os.fsync(f.fileno())
        return True

    def _refresh(self) -> None:
        """Keep the lock fresh, and notice a lock that is no longer ours."""
        holder = self._read()
        if holder == self._record:
            os.utime(self.path)
            return
        if not osp.lexists(self.path) and self._create():
            print_log(
                f'The lock {self.path} of this run was deleted by someone '
                'else; it is written again.', logger='current', level=30)
            return
        self.lost = (
            f'The lock {self.path} of this run was replaced by '
            f'{self._describe(holder, self._age())}: another run now trains '
            f'in {self.work_dir}. This run stops before it writes another '
            'checkpoint there; give one of the two runs another --work-dir.')
        print_log(self.lost, logger='current', level=40)

    def _start_refreshing(self) -> None:
        self._stop.clear()

        def refresh():
            while self.lost is None and \
                    not self._stop.wait(self.refresh_every):
                try:
                    self._refresh()
                except OSError:
                    pass  # a hiccup of a shared file system: next time

        self._refresher = threading.Thread(
            target=refresh, name='work-dir-lock', daemon=True)
        self._refresher.start()

    def check(self) -> None:
        """Raise :class:`WorkDirLockedError` if another run took the lock."""
        if self.lost is not None:
            raise WorkDirLockedError(self.lost)

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
