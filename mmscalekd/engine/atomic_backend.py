"""A local file backend whose writes are all-or-nothing."""
import os
import os.path as osp
from pathlib import Path
from typing import Union

from mmengine.fileio import LocalBackend, register_backend

__all__ = ['AtomicLocalBackend', 'fsync_path']


def fsync_path(path: str) -> None:
    """Flush a file's (or a directory's entries') data to the disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@register_backend('scalekd_atomic')
class AtomicLocalBackend(LocalBackend):
    """mmengine's local backend; ``put`` writes ``<file>.partial``, flushes
    it to disk, renames it and flushes the folder, so a crash or power loss
    leaves the old file or the whole new one. A symbolic link at the target
    is replaced by the file, never written through. A leftover
    ``.partial`` of a killed save is removed by
    :class:`~mmscalekd.engine.hooks.WorkDirHook` at the next start.

    Selected with ``backend_args=dict(backend='scalekd_atomic')``, which
    :class:`~mmscalekd.engine.hooks.WorkDirHook` sets for a local
    ``CheckpointHook`` that has no backend of its own.
    """

    def put(self, obj: bytes, filepath: Union[str, Path]) -> None:
        self._write(obj, str(filepath), 'wb')

    def put_text(self, obj: str, filepath: Union[str, Path],
                 encoding: str = 'utf-8') -> None:
        self._write(obj.encode(encoding), str(filepath), 'wb')

    @staticmethod
    def _write(data: bytes, path: str, mode: str) -> None:
        folder = osp.dirname(osp.abspath(path))
        os.makedirs(folder, exist_ok=True)
        partial = f'{path}.partial'
        if osp.lexists(partial):
            os.remove(partial)  # never through a link
        with open(partial, mode) as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(partial, path)
        fsync_path(folder)
