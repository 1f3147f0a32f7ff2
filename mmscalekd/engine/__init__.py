from .hooks import DataCheckHook, DataError, FiniteCheckHook
from .runner import ScaleKDRunner
from .val_loop import ScaleKDValLoop
from .work_dir_lock import WorkDirLock, WorkDirLockedError

__all__ = [
    'DataCheckHook', 'DataError', 'FiniteCheckHook', 'ScaleKDRunner',
    'ScaleKDValLoop', 'WorkDirLock', 'WorkDirLockedError'
]
