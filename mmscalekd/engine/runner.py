"""mmengine's Runner with safe resume and CPU multi-process support."""
import os
import os.path as osp
from typing import Dict, Optional

import torch
import torch.distributed as torch_dist
from mmengine.dist import is_distributed, master_only
from mmengine.logging import print_log
from mmengine.registry import RUNNERS
from mmengine.runner import Runner

from mmscalekd.utils.checkpoint import MMENGINE_CHECKPOINT_GLOBALS

__all__ = ['ScaleKDRunner']


# Registered in mmengine's root registry: runners are built before any
# default scope is set.
@RUNNERS.register_module()
class ScaleKDRunner(Runner):
    """mmengine's Runner, with ``--resume`` working on torch >= 2.6.

    Select it in a config with ``runner_type = 'ScaleKDRunner'`` (every
    mmscalekd config does); it then works the same from mmscalekd's tools,
    ``mim`` and mmpretrain's own ``tools/train.py``.

    1. Safe resume. torch now loads with ``weights_only=True``, which refuses the
    ``HistoryBuffer`` and numpy values mmengine itself writes into training
    checkpoints. Rather than turning ``weights_only`` off (which would let a
    downloaded file run code), the exact types mmengine stores are
    allow-listed while a checkpoint is loaded.

    2. Atomic checkpoints: a checkpoint is written under a temporary name
    and renamed when complete, so a job killed while saving (pre-emption,
    a dead node) never leaves a truncated ``epoch_N.pth`` for ``--resume``.

    3. Multi-process training without GPUs (``--launcher pytorch`` on CPU
    machines, e.g. ``tools/dist_train.sh`` for tests): mmengine always selects
    a CUDA device and passes ``device_ids`` to DDP. Without CUDA this runner
    starts the gloo backend and wraps the model for CPU instead.
    """

    @master_only
    def save_checkpoint(self, out_dir: str, filename: str, *args, **kwargs):
        if '://' in out_dir:  # remote backends have their own semantics
            return super().save_checkpoint(out_dir, filename, *args,
                                           **kwargs)
        partial = f'{filename}.partial'
        super().save_checkpoint(out_dir, partial, *args, **kwargs)
        # rename is atomic on POSIX file systems
        os.replace(osp.join(out_dir, partial), osp.join(out_dir, filename))

    def setup_env(self, env_cfg: Dict) -> None:
        if self.distributed and not is_distributed() \
                and not torch.cuda.is_available():
            dist_cfg = dict(env_cfg.get('dist_cfg', {}))
            backend = dist_cfg.pop('backend', 'gloo')
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

    def load_checkpoint(self, filename: str, *args, **kwargs):
        with torch.serialization.safe_globals(MMENGINE_CHECKPOINT_GLOBALS):
            return super().load_checkpoint(filename, *args, **kwargs)
