"""mmengine's checkpoint loading, made safe for its own files on torch >= 2.6.

mmengine reads local files and URLs with ``torch.load``; since torch 2.6 that
means ``weights_only=True``, which refuses mmengine's own training
checkpoints (log buffers and numpy values in the message hub), so resuming
fails. Importing mmscalekd registers, through mmengine's public
``CheckpointLoader.register_scheme``, a reader for local paths and
``http(s)://`` URLs that keeps ``weights_only`` and allow-lists exactly what
mmengine writes (:func:`mmscalekd.utils.checkpoint.read_checkpoint`). Every
other scheme (``open-mmlab://``, ``torchvision://``, ``s3://``, ...) stays
mmengine's. What a loaded training checkpoint may hold, and how it must
match the model, is checked by :class:`~mmscalekd.engine.hooks.CheckpointCheckHook`.
"""
import os.path as osp
from typing import Dict

from mmengine.runner import CheckpointLoader

from mmscalekd.utils.checkpoint import read_checkpoint

__all__ = ['name_source', 'source_key']

# Paths a run is about to load, by the config key that names them, so that
# a file that cannot be read is reported with that key.
_SOURCES: Dict[str, str] = {}


def name_source(path: str, key: str) -> None:
    """Remember that ``path`` comes from the config key ``key``."""
    _SOURCES[_normal(path)] = key


def source_key(path: str) -> str:
    """The config key that named ``path`` (``'checkpoint'`` if unknown)."""
    return _SOURCES.get(_normal(path), 'checkpoint')


def _normal(path: str) -> str:
    return path if '://' in path else osp.abspath(path)


def _load_from_file(filename: str, map_location=None):
    return read_checkpoint(filename, source_key(filename), map_location)


# The names mmengine logs ("Loads checkpoint by <name[10:]> backend").
def load_from_local(filename: str, map_location=None):
    return _load_from_file(filename, map_location)


def load_from_url(filename: str, map_location=None):
    return _load_from_file(filename, map_location)


CheckpointLoader.register_scheme(prefixes='', loader=load_from_local,
                                 force=True)
CheckpointLoader.register_scheme(prefixes=('http://', 'https://'),
                                 loader=load_from_url, force=True)
