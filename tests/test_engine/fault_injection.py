"""Train the smoke config with an injected fault (run as a script by tests).

    python fault_injection.py WORK_DIR --kill-at-iter 9
    python fault_injection.py WORK_DIR --kill-while-saving 2
    python fault_injection.py WORK_DIR --nan-at-iter 9
    torchrun --nproc_per_node 2 fault_injection.py WORK_DIR \
        --launcher pytorch --nan-at-iter 3 --nan-rank 1

The process kills itself with SIGKILL (as a pre-empted or dying node would),
or a weight turns NaN, at the given point. Everything else is the real
mmengine Runner on the real smoke config, as tools/train.py builds it.
"""
import argparse
import os
import signal
import sys

import torch
from mmengine.config import Config
from mmengine.hooks import Hook
from mmengine.registry import RUNNERS

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
sys.path.insert(0, REPO_ROOT)
SMOKE_CONFIG = os.path.join(REPO_ROOT, 'configs', 'smoke',
                            'scalekd_smoke_synthetic.py')


class KillAtIter(Hook):

    def __init__(self, iteration):
        self.iteration = iteration

    def before_train_iter(self, runner, batch_idx, data_batch=None):
        if runner.iter == self.iteration:
            sys.stdout.flush()
            os.kill(os.getpid(), signal.SIGKILL)


class NaNAtIter(Hook):
    """Poison a weight of this process's model copy (all ranks, or one)."""

    def __init__(self, iteration, rank=None):
        self.iteration = iteration
        self.rank = rank

    def before_train_iter(self, runner, batch_idx, data_batch=None):
        from mmengine.dist import get_rank
        if runner.iter == self.iteration and self.rank in (None, get_rank()):
            model = runner.model.module if hasattr(runner.model,
                                                   'module') else runner.model
            with torch.no_grad():
                model.student.head.fc.weight.fill_(float('nan'))


def kill_while_saving(epoch):
    """SIGKILL half-way through writing epoch_<epoch>.pth (the atomic
    backend writes it as epoch_<epoch>.pth.partial first)."""
    from mmscalekd.engine import AtomicLocalBackend
    write = AtomicLocalBackend._write

    def partial_write(data, path, mode):
        if f'epoch_{epoch}.pth' in str(path):
            with open(f'{path}.partial', 'wb') as f:
                f.write(data[:len(data) // 2])
                f.flush()
                os.fsync(f.fileno())
            os.kill(os.getpid(), signal.SIGKILL)
        return write(data, path, mode)

    AtomicLocalBackend._write = staticmethod(partial_write)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument('work_dir')
    parser.add_argument('--kill-at-iter', type=int)
    parser.add_argument('--kill-while-saving', type=int)
    parser.add_argument('--nan-at-iter', type=int)
    parser.add_argument('--nan-rank', type=int)
    parser.add_argument('--teacher-checkpoint')
    parser.add_argument('--launcher', default='none')
    args = parser.parse_args()

    cfg = Config.fromfile(SMOKE_CONFIG)
    cfg.work_dir = args.work_dir
    cfg.launcher = args.launcher
    # A rank left waiting in a collective fails after this many seconds
    # instead of gloo's 30 minutes.
    cfg.env_cfg.dist_cfg = dict(backend='gloo', timeout=600)
    if args.teacher_checkpoint:
        cfg.model.teacher.checkpoint = args.teacher_checkpoint
    from mmscalekd.engine import prepare_run
    runner = RUNNERS.build(prepare_run(cfg, training=True))
    if args.kill_at_iter is not None:
        runner.register_hook(KillAtIter(args.kill_at_iter))
    if args.nan_at_iter is not None:
        runner.register_hook(NaNAtIter(args.nan_at_iter, args.nan_rank))
    if args.kill_while_saving is not None:
        kill_while_saving(args.kill_while_saving)
    runner.train()


if __name__ == '__main__':
    main()
