"""Checkpoint loading that never runs code from a file.

Everything a user points the package at (teacher weights, converted weights)
is read with ``torch.load(weights_only=True)`` or from safetensors. mmengine's
own training checkpoints hold a few more types (its ``HistoryBuffer`` and
numpy arrays and scalars in the message hub); those are allow-listed by name
in :data:`MMENGINE_CHECKPOINT_GLOBALS`, never by turning ``weights_only`` off.
"""
import os.path as osp
import pickle
from typing import Dict

import numpy as np
import torch
from mmengine.logging import HistoryBuffer

__all__ = [
    'CheckpointError', 'MMENGINE_CHECKPOINT_GLOBALS', 'load_state_dict_file',
    'mmengine_checkpoint_globals'
]


class CheckpointError(RuntimeError):
    """A checkpoint cannot be used; the message says which key and why."""


def _numpy_globals() -> list:
    """The numpy callables and types that pickled arrays and scalars use."""
    multiarray = np._core.multiarray if hasattr(np, '_core') \
        else np.core.multiarray
    dtype_types = [type(np.dtype(name)) for name in (
        'bool', 'int8', 'int16', 'int32', 'int64', 'uint8', 'uint16',
        'uint32', 'uint64', 'float16', 'float32', 'float64')]
    return [multiarray._reconstruct, multiarray.scalar, np.ndarray,
            np.dtype] + dtype_types


def _history_buffer_method(buffer, name: str):
    """Stands in for ``getattr`` while loading a checkpoint.

    A pickled ``HistoryBuffer`` keeps its statistics methods in a dict, which
    pickle writes as ``getattr(HistoryBuffer, 'mean')``. A general
    ``getattr`` would reach any attribute of any object in the file, so only
    this exact use is allowed: a public method of HistoryBuffer.
    """
    method = getattr(HistoryBuffer, name, None) if isinstance(
        name, str) and not name.startswith('_') else None
    owner_ok = buffer is HistoryBuffer or isinstance(buffer, HistoryBuffer)
    if not owner_ok or not callable(method):
        raise pickle.UnpicklingError(
            f'Refused getattr({type(buffer).__name__}, {name!r}) in a '
            'checkpoint: only HistoryBuffer statistics are allowed.')
    return getattr(buffer, name)


def mmengine_checkpoint_globals() -> list:
    """Types mmengine writes into its training checkpoints, and only those."""
    return [HistoryBuffer, (_history_buffer_method, 'builtins.getattr')
            ] + _numpy_globals()


MMENGINE_CHECKPOINT_GLOBALS = mmengine_checkpoint_globals()


def load_state_dict_file(path: str, key: str) -> Dict[str, torch.Tensor]:
    """Read a state dict from a local file or URL without running its code.

    Args:
        path (str): ``.safetensors`` or a torch checkpoint (``.pth``,
            ``.bin``...), local or ``http(s)://``.
        key (str): the config key that named ``path``, for error messages.

    Returns:
        dict: parameter name -> tensor (``state_dict`` unwrapped if present).
    """
    is_url = path.startswith(('http://', 'https://'))
    if not is_url and not osp.isfile(path):
        raise CheckpointError(
            f'`{key}={path!r}` does not exist; point it at the teacher '
            'checkpoint file (or set it to None to train against a random '
            'teacher, for tests only).')
    try:
        if path.endswith('.safetensors'):
            from safetensors.torch import load_file
            checkpoint = load_file(path, device='cpu')
        else:
            # A teacher trained with mmengine (the quick start's, a user's
            # own) comes as a training checkpoint: allow what mmengine
            # writes, nothing more.
            with torch.serialization.safe_globals(
                    MMENGINE_CHECKPOINT_GLOBALS):
                if is_url:
                    checkpoint = torch.hub.load_state_dict_from_url(
                        path, map_location='cpu', weights_only=True)
                else:
                    checkpoint = torch.load(
                        path, map_location='cpu', weights_only=True)
    except pickle.UnpicklingError as error:
        raise CheckpointError(
            f'Refused to load `{key}={path!r}`: it holds objects that are not '
            'plain tensors and containers, and unpickling them could run '
            f'code ({str(error).splitlines()[0]}). Re-save the weights as a '
            'plain state dict or as .safetensors.') from None
    except Exception as error:  # truncated, not a checkpoint at all, ...
        raise CheckpointError(
            f'Cannot read `{key}={path!r}`: {type(error).__name__}: '
            f'{str(error).splitlines()[0] if str(error) else ""}. The file '
            'is corrupt or not a checkpoint; download it again.') from None
    if isinstance(checkpoint, dict) and 'state_dict' in checkpoint:
        checkpoint = checkpoint['state_dict']
    if not isinstance(checkpoint, dict) or not all(
            isinstance(v, torch.Tensor) for v in checkpoint.values()):
        raise CheckpointError(
            f'`{key}={path!r}` is not a state dict (name -> tensor).')
    return dict(checkpoint)


