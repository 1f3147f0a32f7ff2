"""Training checkpoints: read them as data, match them to the model, find the
newest complete one, and write them so that a crash never leaves half a file.

mmengine acts on several fields of a checkpoint after loading it: it used to
execute ``meta['config']`` as Python (``Config.fromstring``), deletes the
file that ``message_hub.runtime_info['best_ckpt']`` names when a better one
is saved, and copies every field of a scheduler's state into the scheduler
object. :func:`check_training_checkpoint` accepts data only (tensors, numbers,
strings, containers, mmengine's log buffers) and removes or checks each of
those fields before mmengine sees them.
"""
import os
import os.path as osp
import re
import zipfile
from typing import Dict, Iterable, List, Optional, Tuple

import numpy as np
import torch
from mmengine.logging import HistoryBuffer, print_log

from mmscalekd.utils.checkpoint import (CheckpointError, describe_mismatch,
                                        read_checkpoint, strip_ddp_prefix)

__all__ = [
    'check_model_weights', 'check_state_dict', 'check_training_checkpoint',
    'checkpoint_number',
    'find_latest_checkpoint', 'is_complete',
    'read_training_checkpoint', 'sanitize_runtime_info'
]

# Types a checkpoint field may hold: data, never something callable.
_SCALARS = (str, bytes, int, float, bool, complex, type(None), torch.dtype,
            torch.device)


def _check_data(obj, where: str, depth: int = 0) -> None:
    if depth > 64:
        raise CheckpointError(f'`{where}` is nested more than 64 levels deep.')
    if isinstance(obj, (torch.Tensor, HistoryBuffer) + _SCALARS):
        return
    if isinstance(obj, np.ndarray) or isinstance(obj, np.generic):
        if obj.dtype.kind in 'biufc':
            return
        raise CheckpointError(
            f'`{where}` is a numpy {obj.dtype} array; a checkpoint holds '
            'numbers only.')
    if isinstance(obj, dict):
        for key, value in obj.items():
            if not isinstance(key, (str, int)):
                raise CheckpointError(
                    f'`{where}` has a key of type {type(key).__name__}.')
            _check_data(value, f'{where}.{key}', depth + 1)
        return
    if isinstance(obj, (list, tuple, set, frozenset)):
        for index, value in enumerate(obj):
            _check_data(value, f'{where}[{index}]', depth + 1)
        return
    raise CheckpointError(
        f'`{where}` holds a {type(obj).__module__}.{type(obj).__qualname__}'
        '; a training checkpoint holds data only (tensors, numbers, '
        'strings and containers), so it was not written by mmengine.')


def read_training_checkpoint(path: str, key: str,
                             map_location='cpu') -> dict:
    """An mmengine training checkpoint (or a bare state dict), as data only:
    :func:`~mmscalekd.utils.checkpoint.read_checkpoint`, then
    :func:`check_training_checkpoint`."""
    checkpoint = read_checkpoint(path, key, map_location)
    if not isinstance(checkpoint, dict):
        raise CheckpointError(
            f'`{key}={path!r}` is not a training checkpoint: it has no '
            '`state_dict`.')
    check_training_checkpoint(checkpoint, path, key)
    return checkpoint


def check_training_checkpoint(checkpoint: dict, path: str, key: str) -> None:
    """Make a loaded checkpoint safe for mmengine to act on, in place.

    Besides refusing anything but plain data, this drops ``meta['config']``,
    which mmengine's ``Runner.resume`` would execute as Python to read one
    obsolete field (the GPU ids of the old run). Paths and ids that the
    resumed run would act on are checked by :func:`sanitize_runtime_info`.

    Afterwards ``checkpoint`` has ``state_dict`` (a bare state dict is
    wrapped into one; a ``module.`` prefix on every key removed) and
    ``meta``.
    """
    if checkpoint and all(
            isinstance(v, torch.Tensor) for v in checkpoint.values()):
        state_dict = dict(checkpoint)
        checkpoint.clear()
        checkpoint['state_dict'] = state_dict
    if not isinstance(checkpoint.get('state_dict'), dict):
        raise CheckpointError(
            f'`{key}={path!r}` is not a training checkpoint: it has no '
            '`state_dict`.')
    _check_data(checkpoint, 'checkpoint')
    bad = [k for k, v in checkpoint['state_dict'].items()
           if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
    if bad:
        raise CheckpointError(
            f'`{key}={path!r}`: `state_dict` holds entries that are not '
            f'tensors ({bad[:5]}).')
    checkpoint['state_dict'] = strip_ddp_prefix(checkpoint['state_dict'],
                                                f'`{key}={path!r}`')
    meta = checkpoint.setdefault('meta', {})
    if not isinstance(meta, dict):
        raise CheckpointError(f'`{key}={path!r}`: `meta` is not a dict.')
    if 'config' in meta:
        meta.pop('config')
        print_log(
            f'`{key}={path!r}`: ignoring meta.config (a config as Python '
            'text, which this package never executes).', logger='current')
    for field in ('epoch', 'iter', 'seed'):
        value = meta.get(field)
        if value is not None and not (isinstance(value, int)
                                      and not isinstance(value, bool)
                                      and value >= 0):
            raise CheckpointError(
                f'`{key}={path!r}`: meta.{field}={value!r} is not a '
                'non-negative integer.')
    if meta.get('seed') is not None and meta['seed'] >= 2**32:
        # numpy's seeds are 32-bit: mmengine's resume would fail in
        # np.random.seed with a bare ValueError.
        raise CheckpointError(
            f'`{key}={path!r}`: meta.seed={meta["seed"]} is not a random '
            'seed (they lie in [0, 2**32)); the file was edited. Set '
            '`randomness.seed` in the config and start from the weights '
            'with `load_from` instead of resuming.')
    hub = checkpoint.get('message_hub')
    if hub is not None:
        if not (isinstance(hub, dict) and all(
                isinstance(hub.get(k), dict)
                for k in ('log_scalars', 'runtime_info', 'resumed_keys'))):
            raise CheckpointError(
                f'`{key}={path!r}`: `message_hub` is not a message hub state '
                '(log_scalars, runtime_info, resumed_keys).')
        bad = [k for k, v in hub['log_scalars'].items()
               if not isinstance(v, HistoryBuffer)]
        if bad:
            raise CheckpointError(
                f'`{key}={path!r}`: message_hub.log_scalars {bad[:5]} are not '
                'log buffers.')


_PATH_INFO = re.compile(r'^(best_ckpt(_.+)?|last_ckpt)$')
_SCORE_INFO = re.compile(r'^best_score(_.+)?$')
# The names it gives those files: `best_<metric>_epoch_3.pth`, `epoch_3.pth`.
_CHECKPOINT_NAME = re.compile(r'^(epoch|iter)_(\d+)\.pth$')
_BEST_NAME = re.compile(r'^best_.+_(epoch|iter)_\d+\.pth$')


def sanitize_runtime_info(runtime_info: dict, checkpoint_dirs: Iterable[str],
                          source: str) -> dict:
    """Keep only runtime info that the resumed run can act on safely.

    ``best_ckpt*`` / ``last_ckpt`` must name a checkpoint this run can have
    written: a complete file named as mmengine names them, in this run's
    checkpoint folder. A path elsewhere (the work dir of a colleague whose
    checkpoint this was, or a crafted path), or any other file in the work
    dir (a user's file, the live ``run.lock``), would be deleted by
    mmengine's ``CheckpointHook`` at the next better score. If the work dir
    was moved, the checkpoint of the same name in it is used.
    ``keep_ckpt_ids`` must be integers (they become file names that are
    deleted) and ``best_score*`` numbers.
    """
    dirs = [osp.realpath(d) for d in checkpoint_dirs]
    clean = {}
    for name, value in runtime_info.items():
        if _PATH_INFO.match(name):
            value = _checkpoint_in(
                value, dirs, _CHECKPOINT_NAME if name == 'last_ckpt' else
                _BEST_NAME)
            if value is None:
                print_log(
                    f'{source}: message_hub.runtime_info.{name}='
                    f'{runtime_info[name]!r} is not a checkpoint in this '
                    f'run\'s checkpoint folder {dirs[0]}; it is forgotten '
                    '(and never deleted by this run).', logger='current',
                    level=30)
                continue
        elif name == 'keep_ckpt_ids':
            if not (isinstance(value, list) and all(
                    isinstance(v, int) and not isinstance(v, bool)
                    for v in value)):
                print_log(
                    f'{source}: message_hub.runtime_info.keep_ckpt_ids='
                    f'{value!r} are not checkpoint numbers; forgotten.',
                    logger='current', level=30)
                continue
        elif _SCORE_INFO.match(name):
            if isinstance(value, bool) or not isinstance(
                    value, (int, float, np.number)):
                print_log(
                    f'{source}: message_hub.runtime_info.{name}={value!r} is '
                    'not a number; forgotten.', logger='current', level=30)
                continue
        clean[name] = value
    return clean


def checkpoint_number(path: str) -> Optional[Tuple[str, int]]:
    """``('epoch', 3)`` for ``.../epoch_3.pth`` (mmengine's names), else
    None."""
    match = _CHECKPOINT_NAME.match(osp.basename(path))
    return (match.group(1), int(match.group(2))) if match else None


def _checkpoint_in(value, dirs: List[str], pattern) -> Optional[str]:
    """``value`` as a checkpoint file of one of ``dirs``, or None."""
    if not isinstance(value, str) or not value or '\x00' in value or \
            not pattern.match(osp.basename(value)):
        return None
    for path in (value, osp.join(dirs[0], osp.basename(value))):
        # The second: the same run, its work dir moved.
        if osp.islink(path) or not osp.isfile(path):
            continue
        real = osp.realpath(path)
        if osp.dirname(real) in dirs and is_complete(real):
            return real
    return None


# ------------------------------------------------------------- model match
def _part(key: str) -> str:
    """The part of a (distiller or classifier) model a weight belongs to."""
    names = key.split('.')
    if names[0] == 'module':  # an EMA model's copy of the model
        names = names[1:]
    if names[0] == 'student' and len(names) > 1:
        return f'student {names[1]}'
    if names[0].endswith('_stage') and names[1:2] == ['projectors'] \
            and len(names) > 2:  # perception_stage.projectors.spatial.*
        return f'projector {names[0][:-len("_stage")]}_{names[2]}'
    return names[0]


def _by_part(keys: List[str]) -> str:
    parts: Dict[str, List[str]] = {}
    for key in keys:
        parts.setdefault(_part(key), []).append(key)
    return ', '.join(f'{part} ({len(names)}: {names[0]}'
                     f'{", ..." if len(names) > 1 else ""})'
                     for part, names in parts.items())


def _hint(expected: Iterable[str], loaded: Iterable[str]) -> str:
    expected, loaded = set(expected), set(loaded)
    student = {k[len('student.'):] for k in expected
               if k.startswith('student.')}
    if student and not any(k.startswith('student.') for k in loaded) and \
            loaded & student:
        return (' The file holds a classifier alone (e.g. the student.pth '
                'of extract_student.py, or a student-alone run): evaluate it '
                'with its own config, or start the student from it with '
                "`model.student.init_cfg=dict(type='Pretrained', "
                'checkpoint=...)`.')
    if not student and any(k.startswith('student.') for k in loaded):
        return (' The file is a distillation checkpoint: use the '
                'distillation config, or take the student out with '
                'tools/model_converters/extract_student.py.')
    if any('.projectors.' in k for k in expected) and not any(
            '.projectors.' in k for k in loaded):
        return (' The file has no projectors: it comes from a logit-KD or '
                'student-alone run, not from this ScaleKD config.')
    return (' It was trained with a different config; use the config it '
            'was trained with.')


def architecture_differences(recorded, current: dict) -> List[str]:
    """How a checkpoint's recorded ``model_architecture`` differs from a
    distiller's ``architecture``, one line per config key."""
    if not isinstance(recorded, dict):
        return [f'its recorded architecture is {recorded!r}']
    return [
        f'`model.{key}` is {recorded.get(key)!r} in the checkpoint and '
        f'{current.get(key)!r} in the config'
        for key in sorted(set(recorded) | set(current))
        if recorded.get(key) != current.get(key)
    ]


def check_model_weights(model: torch.nn.Module, state_dict: dict,
                        source: str,
                        architecture: Optional[dict] = None) -> None:
    """Refuse a state dict that is not exactly the weights of ``model``.

    A model that is partly random, or built with other widths, heads or
    layers than the file, is an error here, never a warning: mmengine's own
    loading only warns and goes on.

    Args:
        model: the model the weights are for (unwrapped).
        state_dict: the file's weights (a ``module.`` prefix removed).
        source (str): what named the file, e.g. ``"`load_from='x.pth'`"``.
        architecture (dict, optional): the ``model_architecture`` the
            checkpoint recorded (projector heads, taps, split: what names
            and shapes do not show), compared with the model's.

    Raises:
        CheckpointError: naming the missing / extra / mis-shaped parts, the
            architecture keys that differ, and the file.
    """
    current = getattr(model, 'architecture', None)
    if current is not None:
        if architecture is None:
            print_log(
                f'{source} does not record the projector architecture; '
                'only the weight names and shapes are checked.',
                logger='current', level=30)
        else:
            differences = architecture_differences(architecture, current)
            if differences:
                raise CheckpointError(
                    f'{source} was trained with another model config: ' +
                    '; '.join(differences) + '. Use the config it was '
                    'trained with (or start a new run).')
    check_state_dict(model.state_dict(), state_dict, source,
                     type(model).__name__)


def check_state_dict(expected: dict, state_dict: dict, source: str,
                     model_name: str = 'the model') -> None:
    """:func:`check_model_weights` for a model given by its state dict.

    ``teacher.*`` entries are not counted as extra: the distiller drops them
    (with a log line) when it loads, since its teacher always comes from
    ``model.teacher.checkpoint``.
    """
    mismatch = describe_mismatch(expected, state_dict)
    mismatch['unexpected'] = [
        k for k in mismatch['unexpected'] if _part(k) != 'teacher'
    ]
    problems = []
    if mismatch['missing']:
        problems.append('missing ' + _by_part(mismatch['missing']))
    if mismatch['unexpected']:
        problems.append('not in the model ' + _by_part(mismatch['unexpected']))
    if mismatch['mismatched']:
        problems.append('other shapes: ' + '; '.join(
            mismatch['mismatched'][:5]))
    if mismatch['dtypes']:
        problems.append('other kinds of dtype (loading would cast them): ' +
                        '; '.join(mismatch['dtypes'][:5]))
    if problems:
        raise CheckpointError(
            f'{source} does not hold the weights of this model '
            f'({model_name}): ' + '; '.join(problems) + '.' +
            _hint(expected, state_dict))


# --------------------------------------------------- finding, writing files
def is_complete(path: str) -> bool:
    """Whether a torch checkpoint file is whole (its zip archive checks out).

    ``torch.save`` writes a zip archive whose directory is at the end and
    whose members carry CRCs, so a truncated or torn file fails here. A
    compressed member (which torch never writes) is not inflated to check
    it: the file is not a checkpoint of this run.
    """
    try:
        with zipfile.ZipFile(path) as archive:
            if any(record.compress_type != zipfile.ZIP_STORED
                   for record in archive.infolist()):
                return False
            return archive.testzip() is None
    except (zipfile.BadZipFile, OSError, EOFError, ValueError):
        return False


def _named_by_record(record: str) -> Optional[str]:
    """The path ``last_checkpoint`` names, or None (with a log line) when
    it holds something else."""
    try:
        with open(record, 'rb') as f:
            named = f.read(4097).decode('utf-8').strip()
    except UnicodeDecodeError:
        named = None
    except OSError:
        return None
    if named is None or len(named) > 4096 or '\x00' in named or \
            '\n' in named:
        print_log(
            f'{record} does not hold a checkpoint path (it is binary or '
            'garbage); it is ignored, and the checkpoints themselves are '
            'searched.', logger='current', level=30)
        return None
    return named


def find_latest_checkpoint(work_dir: str,
                           checkpoint_dirs: Iterable[str] = ()
                           ) -> Optional[str]:
    """The newest complete ``epoch_N.pth`` / ``iter_N.pth`` of a run.

    mmengine trusts ``work_dir/last_checkpoint``, an absolute path written at
    each save: after the work dir is moved it points to the old place (or to
    another run's files still there), and after a crash it may name a file
    that is missing or incomplete. Here only the run's own folders are
    searched: the work dir and the checkpoint folders (``checkpoint_dirs``,
    e.g. ``default_hooks.checkpoint.out_dir``); ``last_checkpoint`` just
    says whether epoch or iteration checkpoints are the run's own when both
    kinds are present, and which copy to take of a checkpoint found twice.
    Each skipped file is logged.
    """
    work_dir = osp.abspath(work_dir)
    dirs = [work_dir] + [osp.abspath(d) for d in checkpoint_dirs
                         if osp.abspath(d) != work_dir]
    named, named_kind = None, None
    record = osp.join(work_dir, 'last_checkpoint')
    if osp.isfile(record):
        named = _named_by_record(record)
        named_kind = (checkpoint_number(named) or (None, ))[0] \
            if named else None
        if named and osp.dirname(osp.abspath(named)) not in dirs:
            print_log(
                f'{record} names {named}, outside this run\'s folders (was '
                'the work dir moved or copied?); only checkpoints in '
                f'{", ".join(dirs)} are resumed from.', logger='current',
                level=30)
    candidates = []
    for rank, folder in enumerate(dirs):
        if not osp.isdir(folder):
            continue
        for name in os.listdir(folder):
            number = checkpoint_number(name)
            path = osp.join(folder, name)
            if number and osp.isfile(path):
                candidates.append((number[0] == named_kind, number[1],
                                   path == named, rank, path))
    for *_, path in sorted(candidates, reverse=True):
        if is_complete(path):
            return path
        print_log(
            f'Skipping {path}: the file is incomplete or damaged (a save '
            'that was cut off?); trying an older checkpoint.',
            logger='current', level=30)
    return None
