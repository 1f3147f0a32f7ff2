from . import checkpoint_loading  # noqa: F401 (registers the safe loader)
from .atomic_backend import AtomicLocalBackend
from .hooks import (CheckpointCheckHook, DataCheckHook, DataError,
                    FiniteCheckHook, StudentCheckpointHook, TeacherValHook,
                    WorkDirHook)
from .launch import prepare_run, run
from .work_dir_lock import WorkDirLock, WorkDirLockedError

__all__ = [
    'AtomicLocalBackend', 'CheckpointCheckHook', 'DataCheckHook', 'DataError',
    'FiniteCheckHook', 'StudentCheckpointHook', 'TeacherValHook',
    'WorkDirHook', 'WorkDirLock', 'WorkDirLockedError', 'prepare_run', 'run'
]
