"""One training run per work dir, and saves that a crash cannot tear."""
import glob
import os
import os.path as osp
from typing import List, Optional

from mmengine.dist import broadcast_object_list, is_distributed, \
    is_main_process
from mmengine.hooks import CheckpointHook, Hook
from mmengine.logging import print_log
from mmengine.model import is_model_wrapper
from mmengine.optim import BaseOptimWrapper

from mmpretrain.registry import HOOKS
from ..training_checkpoint import find_latest_checkpoint
from ..work_dir_lock import WorkDirLock, WorkDirLockedError

__all__ = ['WorkDirHook', 'checkpoint_dirs', 'is_training', 'replace_link']


def replace_link(path: str) -> None:
    """Remove ``path`` if it is a symbolic link, so that what the run
    writes there lands in its own folder, not wherever the link points."""
    if osp.islink(path):
        target = os.readlink(path)
        os.unlink(path)
        print_log(
            f'{path} was a symbolic link to {target}; the run writes its '
            'own file there instead of writing through the link.',
            logger='current', level=30)


def is_training(runner) -> bool:
    """Whether ``runner`` is in ``train()`` (which builds the optimizer
    before any hook runs; ``val()`` and ``test()`` do not)."""
    return isinstance(runner.optim_wrapper, BaseOptimWrapper) or (
        isinstance(runner.optim_wrapper, dict) and runner.optim_wrapper and
        all(isinstance(w, BaseOptimWrapper)
            for w in runner.optim_wrapper.values()))


def checkpoint_dirs(runner) -> List[str]:
    """Where this run's checkpoints are: the work dir, and the
    CheckpointHook's ``out_dir`` when one is set (local only), joined with
    the work dir's name as the hook does before training."""
    dirs = [runner.work_dir]
    out_dir = next((h.out_dir for h in runner.hooks
                    if isinstance(h, CheckpointHook)), None)
    if out_dir and '://' not in str(out_dir) and osp.abspath(
            out_dir) != osp.abspath(runner.work_dir):
        name = osp.basename(runner.work_dir.rstrip(osp.sep))
        if osp.basename(str(out_dir).rstrip(osp.sep)) != name:
            out_dir = osp.join(out_dir, name)
        dirs.append(str(out_dir))
    return dirs


def _shared(value, error: Optional[tuple] = None):
    """Rank 0's ``(value, error)`` on every rank; the error re-raised on all
    of them, so a refusal stops every process instead of leaving some
    waiting."""
    if is_distributed():
        shared = [(value, error)]
        broadcast_object_list(shared)
        value, error = shared[0]
    if error:
        kind, message = error
        raise (WorkDirLockedError if kind == 'WorkDirLockedError' else
               RuntimeError)(message)
    return value


@HOOKS.register_module()
class WorkDirHook(Hook):
    """The work dir of a training run belongs to that run alone.

    - Before training, rank 0 takes the work dir's lock
      (:class:`~mmscalekd.engine.WorkDirLock`, options from the config key
      ``work_dir_lock=dict(stale_after=600, refresh_every=30)``, or
      ``work_dir_lock=None`` to switch it off) and removes what a killed
      save left (``*.partial``). A lock that another run took over stops
      this one before its next save.
    - Auto-resume (``resume=True`` without ``load_from``) takes the newest
      complete checkpoint of this run, in the work dir and in
      ``default_hooks.checkpoint.out_dir`` (see
      :func:`~mmscalekd.engine.training_checkpoint.find_latest_checkpoint`):
      ``last_checkpoint`` is pointed at it before mmengine reads it.
    - Saves of a local ``CheckpointHook`` without a backend of its own go
      through :class:`~mmscalekd.engine.AtomicLocalBackend`; ``last_checkpoint``
      is never written through a symbolic link, and each checkpoint records
      the distiller's ``architecture`` in ``meta.model_architecture``.
    """

    # Before CheckpointCheckHook, which loads what this hook found.
    priority = 'HIGHEST'

    def __init__(self) -> None:
        self.lock = None
        self.resume_from = None

    def before_run(self, runner) -> None:
        if not is_training(runner):
            return
        options = runner.cfg.get('work_dir_lock', dict())
        lock = None if options is None else WorkDirLock(
            runner.work_dir, **options)  # options checked
        found, error = None, None
        if is_main_process():
            try:
                if lock is not None:
                    lock.acquire()
                    self.lock = lock
                self._remove_partial_checkpoints(runner)
                found = self._point_auto_resume(runner)
            except Exception as refused:  # noqa: BLE001 (shared, re-raised)
                error = (type(refused).__name__, str(refused))
        self.resume_from = _shared(found, error)
        for hook in runner.hooks:
            if isinstance(hook, CheckpointHook) and hook.backend_args is None \
                    and hook.file_client_args is None and '://' not in str(
                        hook.out_dir or ''):
                hook.backend_args = dict(backend='scalekd_atomic')

    def _remove_partial_checkpoints(self, runner) -> None:
        for folder in checkpoint_dirs(runner):
            for path in glob.glob(osp.join(folder, '*.partial')):
                if osp.isdir(path) and not osp.islink(path):
                    raise RuntimeError(
                        f'{path} is a directory; checkpoint saves write '
                        'their file under that name before renaming it, so '
                        'this run could not save. Rename or remove it.')
                os.remove(path)
                runner.logger.warning(
                    f'Removed {path}, left by a save that was cut off.')

    def _point_auto_resume(self, runner) -> Optional[str]:
        """For auto-resume, ``last_checkpoint`` names the newest complete
        checkpoint of this run (or is removed when there is none)."""
        if not runner.cfg.get('resume') or runner.cfg.get('load_from'):
            return None
        dirs = checkpoint_dirs(runner)
        found = find_latest_checkpoint(runner.work_dir, dirs[1:])
        record = osp.join(runner.work_dir, 'last_checkpoint')
        replace_link(record)
        if found is None:
            if osp.lexists(record):
                os.remove(record)
            runner.logger.info(
                f'Auto-resume: no complete checkpoint in {" or ".join(dirs)}'
                '; starting from scratch.')
            return None
        with open(record, 'w') as f:
            f.write(found)
        runner.logger.info(f'Auto-resume: resuming from {found}.')
        return found

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        if self.lock is not None:
            self.lock.check()  # another run took the work dir
        model = runner.model.module if is_model_wrapper(
            runner.model) else runner.model
        architecture = getattr(model, 'architecture', None)
        if architecture is not None:
            checkpoint.setdefault('meta', {})['model_architecture'] = dict(
                architecture)
        # CheckpointHook writes `last_checkpoint` right after the save.
        replace_link(osp.join(runner.work_dir, 'last_checkpoint'))

    def after_run(self, runner) -> None:
        self.release()

    def release(self) -> None:
        """Give the work dir back (also when a run ends in an error:
        mmengine calls no hook then, :func:`mmscalekd.engine.launch.run`
        does this)."""
        if self.lock is not None:
            self.lock.release()
            self.lock = None
