"""What the tools do around mmengine's Runner: before it is built (it writes
its config into the work dir and sets up the processes while it is built)
and while it runs.

- :func:`prepare_run`: a training length below one is refused, and the work
  dir of a live run, before anything is written into it; the config dump never replaces the config file it was
  read from, a training's dumped config or a file a symbolic link points
  to; several CPU processes (``--launcher pytorch`` without CUDA) use gloo,
  a CPU DDP wrapper and per-process BatchNorm, where mmengine's Runner
  expects GPUs; with ``auto_scale_lr.enable``, the learning rate is
  scaled by the global batch that gradient accumulation makes
  (:mod:`.global_batch`).
- :func:`run`: ``train()`` / ``test()``, with a missing data folder or a
  bad annotation file named by its config key (datasets are built before
  any hook can see them), and the work dir's lock released however the run
  ends.
"""
import datetime
import os.path as osp

import torch
import torch.distributed as torch_dist
from mmengine.config import Config
from mmengine.dist import is_distributed
from mmengine.logging import print_log

from .global_batch import scale_lr_with_accumulation
from .hooks import WorkDirHook, dataset_error, replace_link
from .work_dir_lock import WorkDirLock

__all__ = ['prepare_run', 'run']


def _without_filename(cfg: Config) -> Config:
    """``cfg`` without its file name: mmengine's Runner then dumps it as
    ``<timestamp>.py`` instead of under the file's own name."""
    return Config(cfg.to_dict(), filename=None)


def prepare_run(cfg: Config, training: bool) -> Config:
    """``cfg``, ready for mmengine's Runner (see the module docstring)."""
    work_dir = cfg.work_dir
    if training:
        _check_length(cfg.get('train_cfg'))
        scale_lr_with_accumulation(cfg)
    if training and cfg.get('work_dir_lock', dict()) is not None:
        WorkDirLock(work_dir, **cfg.get('work_dir_lock', dict())).check_free()
    if not training:
        # An evaluation never replaces the config its training dumped.
        cfg = _without_filename(cfg)
    elif cfg.filename:
        dump = osp.join(work_dir, osp.basename(cfg.filename))
        replace_link(dump)
        if osp.exists(dump) and osp.samefile(dump, cfg.filename):
            print_log(
                f'The work dir {work_dir} holds the config file itself; the '
                'merged config is written as <timestamp>.py beside it '
                'instead of over it.', logger='current', level=30)
            cfg = _without_filename(cfg)
    if cfg.get('launcher', 'none') != 'none' and \
            not torch.cuda.is_available():
        _cpu_processes(cfg)
    return cfg


def _check_length(train_cfg) -> None:
    # The Runner builds the schedulers from these before any hook runs.
    for key in ('max_epochs', 'max_iters'):
        value = (train_cfg or {}).get(key)
        if value is not None and (isinstance(value, bool)
                                  or not isinstance(value, int) or value < 1):
            raise ValueError(
                f'`train_cfg.{key}={value!r}` must be an integer >= 1 (how '
                'long to train); with it, the run would end at once having '
                'trained nothing.')


def _cpu_processes(cfg: Config) -> None:
    """gloo, a CPU DDP wrapper and per-process BatchNorm for several CPU
    processes (mmengine's Runner sets a CUDA device in each)."""
    if not is_distributed():
        dist_cfg = dict(cfg.get('env_cfg', {}).get('dist_cfg', {}))
        backend = dist_cfg.pop('backend', 'gloo')
        if isinstance(dist_cfg.get('timeout'), (int, float)):
            # seconds, as mmengine's init_dist takes it
            dist_cfg['timeout'] = datetime.timedelta(
                seconds=dist_cfg['timeout'])
        if backend != 'gloo':
            print_log(
                f'No CUDA device: using the gloo backend instead of '
                f'`env_cfg.dist_cfg.backend={backend!r}`.',
                logger='current', level=30)
        torch_dist.init_process_group(backend='gloo', **dist_cfg)
    if cfg.get('sync_bn', None):
        # torch's SyncBatchNorm runs on GPUs only.
        print_log(
            f'`sync_bn={cfg.sync_bn!r}` needs GPUs; this CPU run keeps '
            'per-process BatchNorm statistics.', logger='current', level=30)
        cfg.sync_bn = None
    wrapper = dict(cfg.get('model_wrapper_cfg') or dict(
        broadcast_buffers=False,
        find_unused_parameters=cfg.get('find_unused_parameters', False)))
    wrapper.setdefault('type', 'MMDistributedDataParallel')
    wrapper.setdefault('device_ids', None)  # CPU modules take none
    cfg.model_wrapper_cfg = wrapper


def run(runner, cfg: Config, method: str = 'train'):
    """``runner.<method>()``, its data mistakes named (see the module
    docstring)."""
    try:
        return getattr(runner, method)()
    except (OSError, ValueError) as error:
        named = dataset_error(error, cfg)
        if named is None:
            raise
        raise named from None
    finally:
        for hook in runner.hooks:
            if isinstance(hook, WorkDirHook):
                hook.release()
