# Interleaved A/B timing of one training step under two config variants.
import argparse
import importlib.util
import logging
import os.path as osp
import statistics
import time
from typing import Optional, Sequence

import torch
from mmengine.config import DictAction
from mmengine.logging import MMLogger
from mmengine.optim import build_optim_wrapper

# benchmark.py beside this file (tools/ is not a package once installed).
_SPEC = importlib.util.spec_from_file_location(
    'mmscalekd_benchmark', osp.join(osp.dirname(__file__), 'benchmark.py'))
benchmark = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(benchmark)

DESCRIPTION = """\
Time the full training step of CONFIG's model (the --variant of
benchmark.py, ScaleKD by default) under two sets of config overrides, A and
B, in one process: both models are built from the same seed, and their steps
alternate (A B, B A, A B, ...) so that a change of machine load hits both
alike. This resolves differences of a few percent that separate benchmark
runs, minutes apart on a shared CPU, cannot.

Prints per variant the median, minimum and all step times, and the median
of the paired differences B - A with its range.

Example (is the projectors' GEMM convolution faster than the native one?):
    PYTHONPATH=. python tools/analysis/compare_steps.py \\
        configs/scalekd/scalekd_swin-l_resnet50_8xb32_in1k.py \\
        --a model.final_stage.conv_impl=native \\
        --b model.final_stage.conv_impl=auto --rounds 8
"""


def build(config: str, options: Optional[dict], variant: str,
          batch_size: int, device: str, lr: Optional[float]):
    """One side of the comparison: its training step and its model."""
    cfg = benchmark._load_config(config, options)
    model, _ = benchmark.build_variant(cfg, variant)  # seeded weights
    model.to(device).train()
    wrapper_cfg = benchmark._optim_wrapper_cfg(cfg, 'fp32')
    if lr is not None:
        wrapper_cfg['optimizer']['lr'] = lr
    optim_wrapper = build_optim_wrapper(model, wrapper_cfg)
    inputs, samples = benchmark._synthetic_batch(cfg, model, batch_size,
                                                 device, False)

    train_step = benchmark.make_train_step(model, optim_wrapper, inputs,
                                           samples)

    def step():
        train_step()
        benchmark._sync(device)

    return step, model


def compare(args: argparse.Namespace) -> dict:
    steps = {
        side: build(args.config, options, args.variant, args.batch_size,
                    args.device, args.lr)[0]
        for side, options in (('A', args.a), ('B', args.b))
    }
    for step in steps.values():  # warm-up, untimed
        step()
    times = {'A': [], 'B': []}
    for round_ in range(args.rounds):
        order = ('A', 'B') if round_ % 2 == 0 else ('B', 'A')
        for side in order:
            start = time.perf_counter()
            steps[side]()
            times[side].append(time.perf_counter() - start)
    diffs = [b - a for a, b in zip(times['A'], times['B'])]
    return dict(times=times, diffs=diffs)


def render(args: argparse.Namespace, result: dict) -> str:
    lines = []
    for side, options in (('A', args.a), ('B', args.b)):
        t = result['times'][side]
        lines.append(f'{side} {options or {}}: median '
                     f'{statistics.median(t):.3f} s, min {min(t):.3f} s, '
                     'all ' + ' '.join(f'{x:.2f}' for x in t))
    d = result['diffs']
    lines.append(f'B - A, paired: median {statistics.median(d):+.3f} s '
                 f'(range {min(d):+.3f} to {max(d):+.3f}, B faster in '
                 f'{sum(x < 0 for x in d)} of {len(d)} rounds)')
    return '\n'.join(lines)


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('config')
    parser.add_argument('--a', nargs='*', action=DictAction, default={},
                        help='config overrides of side A (none: as is)')
    parser.add_argument('--b', nargs='*', action=DictAction, default={},
                        help='config overrides of side B (none: as is)')
    parser.add_argument('--variant', choices=benchmark.VARIANTS,
                        default='scalekd')
    parser.add_argument('--batch-size', type=int, default=4)
    parser.add_argument('--rounds', type=int, default=8,
                        help='timed steps per side (default: 8)')
    parser.add_argument('--device', default='cpu')
    parser.add_argument('--lr', type=float,
                        help="override the optimizer's learning rate, e.g. "
                        'when the config lr diverges on random data')
    args = parser.parse_args(argv)
    if args.rounds < 1 or args.batch_size < 1:
        parser.error('--rounds and --batch-size must be >= 1.')
    return args


def main(argv: Optional[Sequence[str]] = None) -> dict:
    args = parse_args(argv)
    # init_weights logs one INFO record per parameter; keep warnings only.
    MMLogger.get_current_instance().setLevel(logging.WARNING)
    torch.manual_seed(0)
    result = compare(args)
    print(render(args, result))
    return result


if __name__ == '__main__':
    main()
