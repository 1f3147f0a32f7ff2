from .hooks import DataCheckHook, DataError, FiniteCheckHook
from .runner import ScaleKDRunner
from .work_dir_lock import WorkDirLock, WorkDirLockedError

__all__ = [
    'DataCheckHook', 'DataError', 'FiniteCheckHook', 'ScaleKDRunner',
    'WorkDirLock', 'WorkDirLockedError'
]
