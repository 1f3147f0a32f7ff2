"""mmengine's Runner, made safe for long, shared, requeued cluster runs."""
import copy
import datetime
import glob
import math
import os
import os.path as osp
import re
from typing import Dict, List, Optional

import torch
import torch.distributed as torch_dist
from mmengine.dist import (broadcast_object_list, is_distributed,
                           is_main_process, master_only)
from mmengine.hooks import CheckpointHook
from mmengine.logging import print_log
from mmengine.model import BaseTTAModel, is_model_wrapper
from mmengine.registry import DATASETS, RUNNERS
from mmengine.runner import EpochBasedTrainLoop, Runner
from mmengine.runner.checkpoint import _load_checkpoint_to_model

from mmscalekd.utils.checkpoint import check_finite_weights
from .hooks import (DataCheckHook, DataError, FiniteCheckHook,
                    ReportingDataset, dataset_build_problem)
from .resume_state import (ScheduleBounds, check_counters,
                           check_optimizer_state, check_scheduler_states,
                           check_training_state)
from .schedule import ScheduleSnapshot, named_schedulers, named_states
from .training_checkpoint import (check_model_weights, check_state_dict,
                                  find_latest_checkpoint, fsync_path,
                                  read_training_checkpoint,
                                  sanitize_runtime_info)
from .work_dir_lock import WorkDirLock, WorkDirLockedError

__all__ = ['ScaleKDRunner']


def _replace_link(path: str) -> None:
    """Remove ``path`` if it is a symbolic link, so that what the run
    writes there lands in its own folder, not wherever the link points."""
    if osp.islink(path):
        target = os.readlink(path)
        os.unlink(path)
        print_log(
            f'{path} was a symbolic link to {target}; the run writes its '
            'own file there instead of writing through the link.',
            logger='current', level=30)


# Registered in mmengine's root registry: runners are built before any
# default scope is set.
@RUNNERS.register_module()
class ScaleKDRunner(Runner):
    """mmengine's Runner for runs that are requeued, resumed and shared.

    Select it in a config with ``runner_type = 'ScaleKDRunner'`` (every
    mmscalekd config does); it then works the same from mmscalekd's tools,
    ``mim`` and mmpretrain's own ``tools/train.py``.

    Checkpoints in:

    - Files are read as data (``weights_only`` with an allow-list of exactly
      the types mmengine writes), and no field of a checkpoint becomes code
      or an action: ``meta.config`` is never executed, file paths in the
      message hub must lie in this run's checkpoint folder (mmengine deletes
      them), scheduler states must have their scheduler's fields.
    - ``load_from``, ``--resume`` and ``tools/test.py`` load strictly: a file
      that does not hold exactly this model's weights (or was trained with
      other projector heads, taps or split) is an error naming the parts.
    - ``--resume`` with a changed learning rate, schedule or ``max_epochs``
      follows the config (see :mod:`mmscalekd.engine.schedule`).
    - Auto-resume (``--resume`` without a path) takes the newest complete
      checkpoint in the work dir itself, and says so when there is none.

    Checkpoints out: written under a temporary name, flushed to disk,
    renamed; leftovers of a killed save are removed at the next start. The
    checkpoint records the distiller's architecture.

    Runs: one training run per work dir (:class:`WorkDirLock`; configure
    with ``work_dir_lock=dict(stale_after=600)``, or ``None`` to switch it
    off). Every run gets :class:`FiniteCheckHook` and :class:`DataCheckHook`
    (non-finite steps stop the run before they reach the weights; bad labels
    and images are named). Without CUDA, ``--launcher pytorch`` uses gloo.
    """

    def __init__(self, *args, **kwargs):
        self._dump_deferred = True
        super().__init__(*args, **kwargs)
        self._dump_deferred = False
        self._work_dir_lock = None

    # ------------------------------------------------------------- hooks
    def register_hooks(self, default_hooks=None, custom_hooks=None) -> None:
        super().register_hooks(default_hooks, custom_hooks)
        for hook_type in (FiniteCheckHook, DataCheckHook):
            if not any(isinstance(h, hook_type) for h in self._hooks):
                self.register_hook(hook_type())

    def build_val_loop(self, loop):
        # Without a `type`, validation also evaluates the teacher once.
        if isinstance(loop, dict) and 'type' not in loop:
            loop = dict(loop, type='ScaleKDValLoop')
        return super().build_val_loop(loop)

    # ----------------------------------------------------- the work dir
    def dump_config(self) -> None:
        # Deferred from __init__ until this run holds the work dir, so a
        # refused second run never overwrites the running one's config.
        if not self._dump_deferred:
            self._write_config(self.work_dir)

    @master_only
    def _write_config(self, folder: str) -> None:
        """mmengine's config dump into ``folder``, never over the config
        file it was read from (``--work-dir`` the config's own folder) and
        never through a symbolic link."""
        name = osp.basename(self.cfg.filename) if self.cfg.filename else \
            f'{self.timestamp}.py'
        path = osp.join(folder, name)
        if self.cfg.filename and osp.exists(path) and osp.samefile(
                path, self.cfg.filename):
            path = osp.join(self.log_dir, name)
            self.logger.warning(
                f'The work dir holds the config file itself; the merged '
                f'config is written to {path} instead of over it.')
        _replace_link(path)
        self.cfg.dump(path)

    def _take_work_dir(self) -> None:
        """Rank 0 takes the lock and clears what a killed save left; every
        rank learns the outcome, so a refusal stops all of them instead of
        leaving some waiting."""
        options = self.cfg.get('work_dir_lock', dict())
        lock = None if options is None else WorkDirLock(
            self.work_dir, **options)  # options checked
        error = None
        if is_main_process():
            try:
                if lock is not None:
                    lock.acquire()
                    self._work_dir_lock = lock
                self._remove_partial_checkpoints()
            except Exception as refused:  # noqa: BLE001 (shared, re-raised)
                error = (type(refused).__name__, str(refused))
        if is_distributed():
            shared = [error]
            broadcast_object_list(shared)
            error = shared[0]
        if error:
            kind, message = error
            raise (WorkDirLockedError if kind == 'WorkDirLockedError' else
                   RuntimeError)(message)

    def _remove_partial_checkpoints(self) -> None:
        for folder in self._checkpoint_dirs():
            for path in glob.glob(osp.join(folder, '*.partial')):
                if osp.isdir(path) and not osp.islink(path):
                    raise RuntimeError(
                        f'{path} is a directory; checkpoint saves write '
                        'their file under that name before renaming it, so '
                        'this run could not save. Rename or remove it.')
                os.remove(path)
                self.logger.warning(
                    f'Removed {path}, left by a save that was cut off.')

    def train(self):
        try:
            self._take_work_dir()
            self._write_config(self.work_dir)
            return super().train()
        finally:
            if self._work_dir_lock is not None:
                self._work_dir_lock.release()
                self._work_dir_lock = None

    # Evaluation writes its config into its own log folder: a test on a
    # training's work dir never replaces that training's config.
    def val(self):
        self._write_config(self.log_dir)
        return super().val()

    def test(self):
        self._write_config(self.log_dir)
        return super().test()

    def build_train_loop(self, loop):
        if isinstance(loop, dict):
            for key in ('max_epochs', 'max_iters'):
                value = loop.get(key)
                if value is not None and (isinstance(value, bool) or
                                          not isinstance(value, int) or
                                          value < 1):
                    raise ValueError(
                        f'`train_cfg.{key}={value!r}` must be an integer '
                        '>= 1 (how long to train); with it, the run would '
                        'end at once having trained nothing.')
        return super().build_train_loop(loop)

    # ----------------------------------------------------------- saving
    @master_only
    def save_checkpoint(self, out_dir: str, filename: str, *args, **kwargs):
        if self._work_dir_lock is not None:
            self._work_dir_lock.check()  # another run took the work dir
        model = self.model.module if is_model_wrapper(
            self.model) else self.model
        architecture = getattr(model, 'architecture', None)
        if architecture is not None:
            kwargs['meta'] = dict(kwargs.get('meta') or {},
                                  model_architecture=dict(architecture))
        if '://' in out_dir:  # remote backends have their own semantics
            return super().save_checkpoint(out_dir, filename, *args,
                                           **kwargs)
        # CheckpointHook writes `last_checkpoint` right after this returns.
        _replace_link(osp.join(self.work_dir, 'last_checkpoint'))
        partial = f'{filename}.partial'
        if osp.lexists(osp.join(out_dir, partial)):
            os.remove(osp.join(out_dir, partial))  # never through a link
        super().save_checkpoint(out_dir, partial, *args, **kwargs)
        # On disk before it gets its name, and the name on disk after: a
        # crash or power loss leaves the old file or the whole new one.
        fsync_path(osp.join(out_dir, partial))
        os.replace(osp.join(out_dir, partial), osp.join(out_dir, filename))
        fsync_path(out_dir)

    # ---------------------------------------------------------- loading
    def load_checkpoint(self,
                        filename: str,
                        map_location='cpu',
                        strict: bool = True,
                        revise_keys: list = [(r'^module\.', '')]):
        """Load ``filename`` into the model, strictly and as data only."""
        if not strict:
            raise ValueError(
                'ScaleKDRunner loads checkpoints strictly: a model that is '
                'partly random must never train or be evaluated.')
        if callable(map_location):
            map_location = 'cpu'
        key = 'resume' if self._resume else 'load_from'
        checkpoint = read_training_checkpoint(filename, key, map_location)
        # The network the file holds weights for: inside DDP and inside a
        # test-time-augmentation wrapper (`tools/test.py --tta`), as
        # mmengine's own loader unwraps them.
        model = self.model
        while is_model_wrapper(model) or isinstance(model, BaseTTAModel):
            model = model.module
        revised = checkpoint['state_dict']
        for pattern, replacement in revise_keys:
            revised = {re.sub(pattern, replacement, k): v
                       for k, v in revised.items()}
        source = f'`{key}={filename!r}`'
        check_model_weights(model, revised, source,
                            checkpoint['meta'].get('model_architecture'))
        check_finite_weights(revised, source)
        if 'ema_state_dict' in checkpoint:
            # mmengine's EMAHook loads it leniently: a mismatch would leave
            # the averaged model (the one evaluated) partly random.
            expected = {f'module.{k}': v
                        for k, v in model.state_dict().items()}
            ema = {k: v for k, v in checkpoint['ema_state_dict'].items()
                   if k != 'steps'}
            check_state_dict(expected, ema, f'{source} (its ema_state_dict)',
                             'the EMA model')
            check_finite_weights(ema, f'{source} (its ema_state_dict)')
        if self._resume:
            self._sanitize_for_resume(checkpoint, filename)
        self.call_hook('after_load_checkpoint', checkpoint=checkpoint)
        _load_checkpoint_to_model(model, checkpoint, strict=True,
                                  revise_keys=revise_keys)
        self._has_loaded = True
        self.logger.info(f'Load checkpoint from {filename}')
        return checkpoint

    def _checkpoint_dirs(self) -> List[str]:
        """Where this run's checkpoints are: the work dir, and the
        CheckpointHook's ``out_dir`` when one is set (local only), joined
        with the work dir's name as the hook does before training."""
        dirs = [self.work_dir]
        out_dir = next((h.out_dir for h in self._hooks
                        if isinstance(h, CheckpointHook)), None)
        if out_dir and '://' not in str(out_dir) and osp.abspath(
                out_dir) != osp.abspath(self.work_dir):
            name = osp.basename(self.work_dir.rstrip(osp.sep))
            if osp.basename(str(out_dir).rstrip(osp.sep)) != name:
                out_dir = osp.join(out_dir, name)
            dirs.append(str(out_dir))
        return dirs

    def _schedule_bounds(self) -> ScheduleBounds:
        """How far this config's schedule can go (see
        :mod:`mmscalekd.engine.resume_state`)."""
        if isinstance(self.train_loop, EpochBasedTrainLoop):
            loader = self.train_dataloader
            per_epoch = math.ceil(
                len(loader.dataset) / (loader.batch_size or 1))
            return ScheduleBounds(
                self.max_epochs, self.max_epochs * per_epoch,
                f'train_cfg.max_epochs={self.max_epochs} epochs of at most '
                f'{per_epoch} iterations, on one process')
        return ScheduleBounds(None, self.max_iters, 'train_cfg.max_iters')

    def _sanitize_for_resume(self, checkpoint: dict, filename: str) -> None:
        source = f'`resume={filename!r}`'
        check_training_state(checkpoint, source)
        bounds = self._schedule_bounds()
        check_counters(checkpoint['meta'], filename, source, bounds)
        hub = checkpoint['message_hub']
        hub['runtime_info'] = sanitize_runtime_info(
            hub['runtime_info'], self._checkpoint_dirs(), source)
        schedule = getattr(self, '_schedule', None)
        if schedule is not None:
            schedule.check_optimizer_state(checkpoint, source)
            check_optimizer_state(checkpoint, self.optim_wrapper, source)
            self._schedule_reason = schedule.usable_states(checkpoint, source)
            check_scheduler_states(
                named_states(checkpoint.get('param_schedulers') or []),
                named_schedulers(self.param_schedulers), bounds, source)
        if 'optimizer' not in checkpoint:
            self.logger.warning(
                f'{source} has no optimizer state (saved with '
                'save_optimizer=False): the optimizer restarts, e.g. without '
                'momentum.')

    def resume(self, filename: str, resume_optimizer: bool = True,
               resume_param_scheduler: bool = True,
               map_location='default') -> None:
        """mmengine's resume, safe, with the config's schedule (see
        :mod:`mmscalekd.engine.schedule`)."""
        self._schedule = ScheduleSnapshot(self.optim_wrapper,
                                          self.param_schedulers)
        self._schedule_reason = None
        super().resume(filename, resume_optimizer, resume_param_scheduler,
                       map_location)
        by_epoch = isinstance(self.train_loop, EpochBasedTrainLoop)
        if (self.epoch >= self.max_epochs) if by_epoch else (
                self.iter >= self.max_iters):
            end = (f'epoch {self.epoch} of `train_cfg.max_epochs='
                   f'{self.max_epochs}`' if by_epoch else
                   f'iteration {self.iter} of `train_cfg.max_iters='
                   f'{self.max_iters}`')
            self.logger.warning(
                f'The run in {self.work_dir} is finished: {filename} is at '
                f'{end}, so there is nothing left to train. Raise that key '
                'to train longer.')
        changes = self._schedule.changes(self.optim_wrapper,
                                         self.param_schedulers)
        if self._schedule_reason is not None:
            changes.append(self._schedule_reason)
        if not changes:
            return
        iters_per_epoch = len(self.train_dataloader) if isinstance(
            self.train_loop, EpochBasedTrainLoop) else None
        self.logger.info(
            f'Rebuilding the schedule of the config: stepping its schedulers '
            f'through {self.iter} iterations and {self.epoch} epochs.')
        self._schedule.replay(self.optim_wrapper, self.param_schedulers,
                              self.epoch, self.iter, iters_per_epoch)
        lrs = sorted({g['lr'] for g in self.optim_wrapper.param_groups})
        self.logger.warning(
            f'Resuming with a changed schedule: {"; ".join(changes)}. The '
            'config wins: its schedule was rebuilt and stepped to epoch '
            f'{self.epoch}, iteration {self.iter}, as a run started with '
            f'this config would have it (learning rate now {lrs[:4]}). The '
            'optimizer state (e.g. momentum) comes from the checkpoint.')

    def load_or_resume(self) -> None:
        if self._has_loaded:
            return None
        if not (self._resume and self._load_from is None):
            return super().load_or_resume()
        # Auto-resume: this work dir only, its newest complete checkpoint.
        found = [find_latest_checkpoint(self.work_dir,
                                        self._checkpoint_dirs()[1:])
                 if is_main_process() else None]
        if is_distributed():
            broadcast_object_list(found)
        if found[0] is None:
            self.logger.info(
                'Auto-resume: no complete checkpoint in '
                f'{" or ".join(self._checkpoint_dirs())}; starting from '
                'scratch.')
            return None
        self.logger.info(f'Auto-resume: resuming from {found[0]}.')
        self.resume(found[0])
        self._has_loaded = True

    # ------------------------------------------------------ data loaders
    def build_dataloader(self, dataloader, seed=None, diff_rank_seed=False):
        """mmengine's data loader, whose failing samples name their file
        and config key (see :class:`ReportingDataset`)."""
        if isinstance(dataloader, dict) and isinstance(
                dataloader.get('dataset'), dict):
            split = next((name for name in ('train', 'val', 'test')
                          if dataloader is getattr(self, f'_{name}_dataloader',
                                                   None)), None)
            dataloader = copy.copy(dataloader)
            key = f'{split}_dataloader.dataset' if split else \
                'the dataset of a data loader'
            try:
                dataset = DATASETS.build(dataloader['dataset'])
                if hasattr(dataset, 'full_init'):
                    dataset.full_init()
            except (OSError, ValueError) as error:
                problem = dataset_build_problem(error, dataloader['dataset'],
                                                key)
                if problem is None:
                    raise
                raise DataError(problem) from None
            dataloader['dataset'] = ReportingDataset(dataset, key)
        return Runner.build_dataloader(dataloader, seed, diff_rank_seed)

    # --------------------------------------------------- CPU processes
    def setup_env(self, env_cfg: Dict) -> None:
        if self.distributed and not is_distributed() \
                and not torch.cuda.is_available():
            dist_cfg = dict(env_cfg.get('dist_cfg', {}))
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
        super().setup_env(env_cfg)

    def wrap_model(self, model_wrapper_cfg: Optional[Dict], model):
        if self.distributed and not torch.cuda.is_available():
            if self.cfg.get('sync_bn', None):
                # torch's SyncBatchNorm runs on GPUs only.
                print_log(
                    f'`sync_bn={self.cfg.sync_bn!r}` needs GPUs; this CPU run '
                    'keeps per-process BatchNorm statistics.',
                    logger='current', level=30)
                self.cfg['sync_bn'] = None
            model_wrapper_cfg = dict(
                model_wrapper_cfg or dict(
                    broadcast_buffers=False,
                    find_unused_parameters=self.cfg.get(
                        'find_unused_parameters', False)))
            model_wrapper_cfg.setdefault('type', 'MMDistributedDataParallel')
            # CPU modules take no device_ids.
            model_wrapper_cfg.setdefault('device_ids', None)
        return super().wrap_model(model_wrapper_cfg, model)
