"""A student-only file beside every checkpoint of a distillation run."""
import io
import os
import os.path as osp
import re
from typing import List, Optional, Set, Tuple

import torch
from mmengine.dist import is_main_process
from mmengine.hooks import CheckpointHook, Hook
from mmengine.model import is_model_wrapper

from mmpretrain.registry import HOOKS

from mmscalekd.models.distillers import ScaleKDDistiller
from mmscalekd.utils.checkpoint import strip_ddp_prefix
from ..atomic_backend import AtomicLocalBackend
from ..student_export import (config_header, student_checkpoint,
                              student_config, student_state_dict)

__all__ = ['StudentCheckpointHook', 'student_file']

STUDENT_CONFIG = 'student_config.py'


def student_file(checkpoint: str) -> str:
    """``.../epoch_3.pth`` -> ``.../epoch_3_student.pth``."""
    return osp.splitext(checkpoint)[0] + '_student.pth'


def _identity(path: str) -> Optional[Tuple[int, int, int]]:
    """What changes when a file is written again (an atomic save replaces
    the file, so its inode changes too)."""
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return stat.st_ino, stat.st_mtime_ns, stat.st_size


@HOOKS.register_module()
class StudentCheckpointHook(Hook):
    """Write ``<checkpoint stem>_student.pth`` beside every checkpoint of a
    distillation run, and remove it with its checkpoint.

    The file is what ``tools/model_converters/extract_student.py`` writes
    as ``student.pth`` for that checkpoint: the student classifier's weights
    without the ``student.`` prefix (timm's names for a
    ``TimmStudentBackbone`` student) and ``meta`` (``dataset_meta``, epoch,
    iter, ``extracted_from``). With EMA it holds the EMA weights: the ones
    the checkpoint's ``state_dict`` holds and validation measured.
    ``student_config.py`` in the work dir (once per run) loads it with
    mmpretrain alone::

        mmpretrain.get_model('WORK_DIR/student_config.py',
                             pretrained='WORK_DIR/epoch_3_student.pth')

    A student file goes when its checkpoint goes (``max_keep_ckpts``, a new
    best replacing the old one). Files are written atomically, by rank 0.
    A run of anything but a distiller (a student trained alone, whose
    checkpoint already is a student file) and a ``CheckpointHook`` that
    saves to a remote ``out_dir`` get no student files.
    """

    # After CheckpointHook (VERY_LOW), which saves and removes checkpoints
    # in the same calls, and after EMAHook, whose before_save_checkpoint
    # puts the EMA weights into the checkpoint's `state_dict`.
    priority = 'LOWEST'

    def __init__(self) -> None:
        # (checkpoint path, its identity before the save, student file)
        self.pending: List[Tuple[str, Optional[tuple], bytes]] = []
        self.best: Set[str] = set()
        self.enabled = False

    @staticmethod
    def _checkpoint_hook(runner) -> Optional[CheckpointHook]:
        hook = next((h for h in runner.hooks
                     if isinstance(h, CheckpointHook)), None)
        if hook is None or '://' in str(hook.out_dir or ''):
            return None
        return hook

    @staticmethod
    def _is_distiller(runner) -> bool:
        model = runner.model.module if is_model_wrapper(
            runner.model) else runner.model
        return isinstance(model, ScaleKDDistiller)

    @staticmethod
    def _best_paths(hook: CheckpointHook) -> Set[str]:
        paths = {getattr(hook, 'best_ckpt_path', None)}
        paths.update((getattr(hook, 'best_ckpt_path_dict', None)
                      or {}).values())
        return {str(path) for path in paths if path}

    def before_train(self, runner) -> None:
        hook = self._checkpoint_hook(runner)
        self.enabled = hook is not None and self._is_distiller(runner)
        if not self.enabled:
            return
        # CheckpointHook.before_train has read a resumed run's best.
        self.best = self._best_paths(hook)
        if is_main_process():
            cfg = student_config(runner.cfg)
            header = config_header(
                cfg, runner.cfg.filename or runner.work_dir,
                weights='<checkpoint>_student.pth',
                writer='StudentCheckpointHook beside the student files')
            AtomicLocalBackend().put_text(
                header + cfg.pretty_text,
                osp.join(runner.work_dir, STUDENT_CONFIG))
            self._remove_orphans(hook)  # a resume with fewer max_keep_ckpts

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        if not self.enabled:
            return
        hook = self._checkpoint_hook(runner)
        # CheckpointHook names the file it is saving before it saves: a new
        # best path for a best checkpoint, else `last_ckpt`.
        best = self._best_paths(hook)
        new_best, self.best = best - self.best, best
        target = new_best.pop() if new_best else hook.last_ckpt
        if target is None:
            return
        # FlexibleRunner's DDPStrategy saves the wrapper's `module.` keys
        student = student_checkpoint(
            runner.cfg.model.student.to_dict(),
            student_state_dict(strip_ddp_prefix(checkpoint['state_dict'],
                                                None)),
            checkpoint.get('meta'), target)
        # Serialised now: the checkpoint's tensors may be the model's own.
        buffer = io.BytesIO()
        torch.save(student, buffer)
        self.pending.append((target, _identity(target), buffer.getvalue()))

    def after_train_iter(self, runner, batch_idx: int, data_batch=None,
                         outputs=None) -> None:
        self._write(runner)

    def after_train_epoch(self, runner) -> None:
        self._write(runner)

    def after_val_epoch(self, runner, metrics=None) -> None:
        self._write(runner)

    def after_train(self, runner) -> None:
        self._write(runner)

    def _write(self, runner) -> None:
        if not self.enabled:
            return
        pending, self.pending = self.pending, []
        for target, before, data in pending:
            # Only a checkpoint that this save wrote (a save that another
            # hook asked for, under another name, has no student file).
            if osp.isfile(target) and _identity(target) != before:
                AtomicLocalBackend().put(data, student_file(target))
        if is_main_process():
            self._remove_orphans(self._checkpoint_hook(runner))

    @staticmethod
    def _remove_orphans(hook: CheckpointHook) -> None:
        """Remove the student files whose checkpoint CheckpointHook
        removed."""
        folder = str(hook.out_dir)
        if not osp.isdir(folder):
            return
        names = re.compile(
            r'^(best_.+_(epoch|iter)_\d+|' + re.escape(osp.splitext(
                hook.filename_tmpl)[0]).replace(r'\{\}', r'\d+') +
            r')_student\.pth$')
        for name in os.listdir(folder):
            if not names.match(name):
                continue
            checkpoint = osp.join(folder, name[:-len('_student.pth')] +
                                  '.pth')
            if not osp.exists(checkpoint):
                os.remove(osp.join(folder, name))
