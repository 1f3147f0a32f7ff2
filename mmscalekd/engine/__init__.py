from . import checkpoint_loading  # noqa: F401 (registers the safe loader)
from .atomic_backend import AtomicLocalBackend
from .global_batch import accumulative_counts
from .hooks import (CheckpointCheckHook, DataCheckHook, DataError,
                    FiniteCheckHook, GlobalBatchHook, StudentCheckpointHook,
                    TeacherValHook, WorkDirHook)
from .launch import prepare_run, run
from .work_dir_lock import WorkDirLock, WorkDirLockedError

__all__ = [
    'AtomicLocalBackend', 'CheckpointCheckHook', 'DataCheckHook', 'DataError',
    'FiniteCheckHook', 'GlobalBatchHook', 'StudentCheckpointHook',
    'TeacherValHook', 'WorkDirHook', 'WorkDirLock', 'WorkDirLockedError', 'accumulative_counts',
    'prepare_run', 'run'
]
