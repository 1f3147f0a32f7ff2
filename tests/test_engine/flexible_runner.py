"""Train the smoke config with mmengine's FlexibleRunner and DDPStrategy
(run as a script by tests, under torchrun on CPU):

    torchrun --standalone --nproc_per_node 2 flexible_runner.py WORK_DIR \
        EPOCHS [--resume]
"""
import argparse
import os
import sys

import torch.distributed as torch_dist
from mmengine.config import Config
from mmengine.runner import FlexibleRunner

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
sys.path.insert(0, REPO_ROOT)
SMOKE_CONFIG = os.path.join(REPO_ROOT, 'configs', 'smoke',
                            'scalekd_smoke_synthetic.py')


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument('work_dir')
    parser.add_argument('epochs', type=int)
    parser.add_argument('--resume', action='store_true')
    args = parser.parse_args()

    cfg = Config.fromfile(SMOKE_CONFIG)
    cfg.work_dir = args.work_dir
    cfg.launcher = 'pytorch'
    cfg.resume = args.resume
    cfg.train_cfg.max_epochs = args.epochs
    cfg.default_hooks.checkpoint.max_keep_ckpts = -1
    cfg.train_dataloader.dataset.num_samples = 64
    # CPU processes: gloo, and a DDP wrapper without device ids (mmengine's
    # strategy would set up CUDA devices).
    torch_dist.init_process_group(backend='gloo')
    cfg.strategy = dict(
        type='DDPStrategy',
        model_wrapper=dict(device_ids=None, broadcast_buffers=False))
    FlexibleRunner.from_cfg(cfg).train()


if __name__ == '__main__':
    main()
