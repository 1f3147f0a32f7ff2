"""Checkpoint loading that never runs code from a file.

Everything a user points the package at (teacher weights, converted weights,
training checkpoints) is read with ``torch.load(weights_only=True)`` or from
safetensors. mmengine's own training checkpoints hold a few more types (its
``HistoryBuffer`` and numpy arrays and scalars in the message hub); those are
allow-listed by name in :data:`MMENGINE_CHECKPOINT_GLOBALS`, never by turning
``weights_only`` off, and a ``HistoryBuffer`` is rebuilt from its numbers
only (its pickled state could otherwise replace the statistics functions of
every buffer in the process).

Teacher files can come from a URL: each node downloads them once (local rank
0, the others wait), and a file name that ends in an OpenMMLab hash
(``...-4f7aab68.pth``: the first hex digits of its SHA-256) is checked
against the downloaded bytes.

A file is looked at before its values are: its zip records (``torch.save``
writes them uncompressed) must not expand, and a state dict is matched with
the model's keys and shapes before any of its tensors is read, so a small
crafted file cannot cost unbounded memory or time.
"""
import errno
import os
import os.path as osp
import pickle
import re
import socket
import urllib.error
import zipfile
from typing import Dict, List, Optional
from urllib.parse import urlparse

import numpy as np
import torch
from mmengine.logging import HistoryBuffer, print_log

from mmscalekd.compat import history_buffer_fields, numpy_pickle_globals

__all__ = [
    'CheckpointError', 'MMENGINE_CHECKPOINT_GLOBALS', 'check_archive',
    'check_finite_weights', 'fetch_url', 'load_state_dict_file',
    'mmengine_checkpoint_globals', 'non_finite_entries', 'read_checkpoint',
    'strip_ddp_prefix'
]


class CheckpointError(RuntimeError):
    """A checkpoint cannot be used; the message says which key and why."""


# ----------------------------------------------------------- the allow-list
# The statistics a HistoryBuffer pickles by reference (mmengine writes them
# as ``getattr(HistoryBuffer, 'mean')``), fixed when this module is imported.
_STATISTICS = {
    name: getattr(HistoryBuffer, name)
    for name in ('min', 'max', 'current', 'mean')
}


class _CheckedHistoryBuffer(HistoryBuffer):
    """What a pickled ``HistoryBuffer`` is built as while a file is loaded.

    mmengine's own ``__setstate__`` merges the pickled statistics functions
    into the class-wide table that every buffer of the process uses, so a
    file could swap ``mean`` for another function. Here the pickled state
    may hold the numbers and the four standard statistics, each under its
    own name, and nothing else; the object then becomes a plain
    ``HistoryBuffer`` (so it pickles under mmengine's name again).
    """

    def __setstate__(self, state) -> None:
        if not isinstance(state, dict):
            raise pickle.UnpicklingError(
                'Refused a HistoryBuffer whose state is not a dict.')
        state = dict(state)
        methods = state.pop('statistics_methods', {})
        if not isinstance(methods, dict) or any(
                _STATISTICS.get(name) is not fn
                for name, fn in methods.items()):
            raise pickle.UnpicklingError(
                'Refused a HistoryBuffer whose statistics are not the '
                'standard min/max/current/mean.')
        logs, counts = state.get('_log_history'), state.get('_count_history')
        if set(state) != history_buffer_fields() or not (
                isinstance(state['max_length'], int)
                and isinstance(logs, np.ndarray)
                and isinstance(counts, np.ndarray)
                and logs.dtype.kind in 'biuf' and counts.dtype.kind in 'biuf'
                and logs.shape == counts.shape):
            raise pickle.UnpicklingError(
                'Refused a HistoryBuffer that is not a log history '
                f'(fields {sorted(state)}).')
        self.__dict__.update(state)
        self.__class__ = HistoryBuffer


def _history_buffer_method(owner, name: str):
    """Stands in for ``getattr`` while loading a checkpoint.

    A pickled ``HistoryBuffer`` names its statistics functions as
    ``getattr(HistoryBuffer, 'mean')``. A general ``getattr`` would reach any
    attribute of any object in the file, so only this exact use is allowed:
    one of the standard statistics, looked up on the class.
    """
    if owner not in (HistoryBuffer, _CheckedHistoryBuffer) or \
            not isinstance(name, str) or name not in _STATISTICS:
        raise pickle.UnpicklingError(
            f'Refused getattr({getattr(owner, "__name__", type(owner))}, '
            f'{name!r}) in a checkpoint: only the HistoryBuffer statistics '
            f'{sorted(_STATISTICS)} are allowed.')
    return _STATISTICS[name]


def mmengine_checkpoint_globals() -> list:
    """Types mmengine writes into its training checkpoints, and only those."""
    return [(_CheckedHistoryBuffer,
             'mmengine.logging.history_buffer.HistoryBuffer'),
            (_history_buffer_method, 'builtins.getattr')] + numpy_pickle_globals()


MMENGINE_CHECKPOINT_GLOBALS = mmengine_checkpoint_globals()


# ------------------------------------------------------------ reading files
def _local_file_problem(path: str, key: str) -> Optional[str]:
    """Why ``path`` cannot be read, in words that lead to the fix."""
    if not osp.exists(path):
        return (f'`{key}={path!r}` does not exist; point it at the '
                'checkpoint file.')
    if osp.isdir(path):
        inside = sorted(
            name for name in os.listdir(path)
            if name.endswith(('.pth', '.pt', '.bin', '.safetensors',
                              '.ckpt')))[:5] if os.access(path, os.R_OK) \
            else []
        found = f' (it holds {inside})' if inside else ''
        return (f'`{key}={path!r}` is a directory{found}; point it at the '
                'checkpoint file inside it.')
    try:
        with open(path, 'rb'):
            pass
    except PermissionError:
        return (f'`{key}={path!r}`: permission denied; this user cannot '
                'read the file. Ask its owner to make it readable (chmod a+r)'
                ' or copy it somewhere you can read.')
    return None


def check_archive(path: str, key: str) -> None:
    """Refuse a zip checkpoint whose records would expand when read.

    ``torch.save`` stores every record uncompressed, so a compressed record
    (which ``torch.load`` would inflate, 1000:1 and more) or one claiming
    more bytes than the file holds means the file was crafted or re-packed.
    Only the archive's directory is read. Files that are not zip archives
    (safetensors, torch's legacy format) are left to their readers.
    """
    try:
        if not zipfile.is_zipfile(path):
            return
        with zipfile.ZipFile(path) as archive:
            records = archive.infolist()
    except (zipfile.BadZipFile, OSError, EOFError, ValueError):
        return  # damaged: the reader names it
    size = os.path.getsize(path)
    for record in records:
        if record.compress_type != zipfile.ZIP_STORED or \
                record.file_size > size:
            raise CheckpointError(
                f'Refused to load `{key}={path!r}`: its zip record '
                f'{record.filename!r} is compressed ({record.compress_size} '
                f'bytes that expand to {record.file_size}), which torch.save '
                'never writes: the file was crafted or re-packed. Save the '
                'weights again with torch.save (or as .safetensors).')


def read_checkpoint(path: str, key: str, map_location='cpu'):
    """Load a torch or safetensors file without running code from it.

    Args:
        path (str): a local file or an ``http(s)://`` URL (fetched once per
            node, see :func:`fetch_url`).
        key (str): the config key or argument that named ``path``, for
            messages.
        map_location: as in ``torch.load``.

    Returns:
        The loaded object.

    Raises:
        CheckpointError: with the reason (missing, a directory, unreadable,
            a network failure, a wrong hash, code in the file, compressed
            records, corrupt).
    """
    if path.startswith(('http://', 'https://')):
        path = fetch_url(path, key)
    problem = _local_file_problem(path, key)
    if problem:
        raise CheckpointError(problem)
    check_archive(path, key)
    try:
        if path.endswith('.safetensors'):
            from safetensors.torch import load_file
            return load_file(
                path,
                device=map_location if isinstance(map_location, str) else
                'cpu')
        with torch.serialization.safe_globals(MMENGINE_CHECKPOINT_GLOBALS):
            checkpoint = torch.load(
                path, map_location=map_location, weights_only=True)
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
            'is corrupt or not a checkpoint (a copy or download that did not '
            'finish?); copy or download it again.') from None
    return checkpoint


# --------------------------------------------------------------- downloads
# OpenMMLab (and torch.hub) file names end in the first hex digits of the
# file's SHA-256: swin-large_..._20220412-f1a5d1b6.pth
_HASH_IN_NAME = re.compile(r'-([0-9a-f]{8,64})\.[A-Za-z]+$')


def _hash_prefix(filename: str) -> Optional[str]:
    match = _HASH_IN_NAME.search(filename)
    return match.group(1) if match else None


def _network_error(error: BaseException) -> bool:
    return isinstance(error, (urllib.error.URLError, socket.timeout,
                              ConnectionError, TimeoutError)) or (
        isinstance(error, OSError) and error.errno in (
            errno.ENETUNREACH, errno.EHOSTUNREACH, errno.ECONNREFUSED,
            errno.ECONNRESET, errno.ETIMEDOUT))


def _download(url: str, path: str, key: str) -> Optional[str]:
    """Download ``url`` to ``path``; the reason it failed, or None."""
    hash_prefix = _hash_prefix(osp.basename(urlparse(url).path))
    os.makedirs(osp.dirname(path), exist_ok=True)
    try:
        # Writes a temporary file, checks the hash, then moves it into
        # place: a half-finished download never has the final name.
        torch.hub.download_url_to_file(
            url, path, hash_prefix=hash_prefix, progress=False)
    except urllib.error.HTTPError as error:
        return (f'Downloading `{key}={url!r}` failed: the server answered '
                f'{error.code} {error.reason}. Check the URL.')
    except Exception as error:  # noqa: BLE001 (sorted out below)
        if _network_error(error):
            return (f'Downloading `{key}={url!r}` failed: network error '
                    f'({error}). Check the network from this node, or '
                    'download the file elsewhere and set the key to its '
                    'local path.')
        if 'invalid hash value' in str(error):
            return (f'Downloaded `{key}={url!r}`, but its SHA-256 does not '
                    f'start with {hash_prefix!r}, the hash in its name '
                    f'({str(error).strip()}). The download is damaged or the '
                    'file was replaced; nothing was kept.')
        return f'Downloading `{key}={url!r}` failed: {error!r}'
    return None


def fetch_url(url: str, key: str) -> str:
    """The local path of ``url`` in torch.hub's cache, downloaded once per node.

    In a distributed run, local rank 0 of each node downloads while the other
    processes wait; every process then learns whether any download failed,
    so a failure stops all of them with a message instead of leaving some
    waiting forever.
    """
    from mmengine.dist import all_reduce, is_distributed
    filename = osp.basename(urlparse(url).path)
    path = osp.join(torch.hub.get_dir(), 'checkpoints', filename)
    downloads = int(os.environ.get('LOCAL_RANK', '0')) == 0
    problem = None
    if downloads and not osp.isfile(path):
        print_log(f'Downloading {url} to {path}', logger='current')
        problem = _download(url, path, key)
    if is_distributed():
        failed = torch.tensor([float(problem is not None)])
        all_reduce(failed, op='sum')
        if failed.item() and problem is None:
            problem = (f'Downloading `{key}={url!r}` failed in '
                       f'{int(failed.item())} other process(es); see their '
                       'log for the reason.')
    if problem:
        raise CheckpointError(problem)
    return path


# ------------------------------------------------------------- state dicts
def _is_state_dict(obj) -> bool:
    return isinstance(obj, dict) and len(obj) > 0 and all(
        isinstance(k, str) and isinstance(v, torch.Tensor)
        for k, v in obj.items())


def _unwrap_state_dict(checkpoint, path: str, key: str) -> dict:
    """The parameter dict inside a checkpoint file.

    mmengine/mmpretrain files keep it under ``state_dict``, DeiT and many
    timm releases under ``model``. A file with several candidates (e.g.
    ``model`` and ``model_ema`` but neither of the above) is not guessed.
    """
    if _is_state_dict(checkpoint):
        return dict(checkpoint)
    if isinstance(checkpoint, dict):
        for name in ('state_dict', 'model'):
            if _is_state_dict(checkpoint.get(name)):
                if name != 'state_dict':
                    print_log(
                        f'`{key}={path!r}`: using the weights under '
                        f"'{name}' in the file.", logger='current')
                return dict(checkpoint[name])
        candidates = [k for k, v in checkpoint.items() if _is_state_dict(v)]
        if candidates:
            raise CheckpointError(
                f'`{key}={path!r}` holds several sets of weights '
                f'({candidates}) and none under "state_dict" or "model". '
                f'Save the one to use as a plain state dict, e.g. '
                f"torch.save(torch.load(f)['{candidates[0]}'], out).")
    raise CheckpointError(
        f'`{key}={path!r}` is not a state dict (name -> tensor).')


def strip_ddp_prefix(state_dict: dict, source: Optional[str]) -> dict:
    """Remove the ``module.`` that DDP puts before every key, if it did.

    A prefix on some keys only is the model's own naming and is kept. The
    removal is logged, naming ``source``, unless ``source`` is None (a
    run's own saves, e.g. FlexibleRunner's DDPStrategy, every checkpoint).
    """
    if not state_dict or not all(k.startswith('module.') for k in state_dict):
        return state_dict
    if source is not None:
        print_log(
            f'{source}: every key starts with "module." (saved from a '
            'DDP-wrapped model); the prefix is removed.', logger='current')
    return {k[len('module.'):]: v for k, v in state_dict.items()}


def non_finite_entries(state_dict: Dict[str, torch.Tensor]) -> List[str]:
    """Names of floating-point tensors holding NaN or Inf.

    A tensor's norm is NaN or Inf when any entry is, and reads its memory
    once (17x faster on a CPU than ``isfinite(t).all()``, which writes a
    mask first); only a tensor whose norm is not finite (or overflowed) is
    then looked at entry by entry.
    """
    return [
        name for name, value in state_dict.items()
        if value.is_floating_point() and value.numel() and
        not bool(torch.isfinite(torch.linalg.vector_norm(value))) and
        not bool(torch.isfinite(value).all())
    ]


def check_finite_weights(state_dict: Dict[str, torch.Tensor],
                         source: str) -> None:
    """Refuse NaN / Inf weights, naming ``source`` (e.g. the config key).

    Reads every value: call it after the keys and shapes were matched with
    the model, so that the work is bounded by the model's size.
    """
    bad = non_finite_entries(state_dict)
    if bad:
        raise CheckpointError(
            f'{source} holds NaN or Inf values in {len(bad)} tensor(s) '
            f'(e.g. {bad[:5]}): it was saved from a diverged run. Use a '
            'checkpoint from before the divergence.')


def load_state_dict_file(path: str, key: str) -> Dict[str, torch.Tensor]:
    """Read a state dict from a local file or URL without running its code.

    The values are not looked at: match the keys and shapes with the model,
    then call :func:`check_finite_weights`.

    Args:
        path (str): ``.safetensors`` or a torch checkpoint (``.pth``,
            ``.bin``...), local or ``http(s)://``.
        key (str): the config key that named ``path``, for error messages.

    Returns:
        dict: parameter name -> tensor (unwrapped from ``state_dict`` or
        ``model``; a ``module.`` prefix on every key, left by DDP, removed).

    Raises:
        CheckpointError: unreadable or not a state dict.
    """
    return strip_ddp_prefix(
        _unwrap_state_dict(read_checkpoint(path, key), path, key),
        f'`{key}={path!r}`')


def _dtype_kind(tensor: torch.Tensor) -> str:
    if tensor.is_complex():
        return 'complex'
    if tensor.is_floating_point():
        return 'floating-point'
    return 'boolean' if tensor.dtype == torch.bool else 'integer'


def describe_mismatch(expected: Dict[str, torch.Tensor],
                      loaded: Dict[str, torch.Tensor]) -> Dict[str, list]:
    """Missing, unexpected, mis-shaped and mis-typed keys of ``loaded``.

    ``dtypes`` lists tensors of another kind of dtype (integer or complex
    weights for a floating-point parameter, say): loading would cast them,
    silently rounding or dropping an imaginary part. Only names, shapes and
    dtypes are read, never values.
    """
    missing = [k for k in expected if k not in loaded]
    unexpected = [k for k in loaded if k not in expected]
    mismatched, dtypes = [], []
    for k in expected:
        if k not in loaded or not isinstance(loaded[k], torch.Tensor):
            continue
        if tuple(loaded[k].shape) != tuple(expected[k].shape):
            mismatched.append(f'{k}: file {tuple(loaded[k].shape)}, model '
                              f'{tuple(expected[k].shape)}')
        elif _dtype_kind(loaded[k]) != _dtype_kind(expected[k]):
            dtypes.append(f'{k}: file {loaded[k].dtype}, model '
                          f'{expected[k].dtype}')
    return dict(missing=missing, unexpected=unexpected,
                mismatched=mismatched, dtypes=dtypes)
