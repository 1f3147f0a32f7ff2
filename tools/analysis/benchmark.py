# What does ScaleKD cost? Time, memory and multiply-adds of a training step.
import argparse
import json
import os
import os.path as osp
import subprocess
import sys
import tempfile
from collections import deque
from typing import Callable, List, Optional, Sequence

# torch and mmscalekd are imported once the arguments are parsed, so that
# `--help` answers at once.

DESCRIPTION = """\
Time one training step (forward, backward, optimizer step with the config's
optimizer) of three variants built from CONFIG:

  (a) student   the student classifier alone, its own loss
  (b) logit_kd  student + frozen teacher forward, logit distillation only
                (CONFIG's model with both feature stages set to None)
  (c) scalekd   the full ScaleKD distiller of CONFIG

Weights are random (the teacher checkpoint is forced to None) and the batch is
synthetic, at the config's `model.input_size`; no data set is read. The batch
goes once, untimed, through the config's own data preprocessor, so each head
gets the targets of its recipe (one-hot or Mixup/CutMix scores where the
recipe has batch augments, hard labels otherwise). Under bf16 / fp16 the
frozen teacher is held in that dtype unless `model.teacher.dtype` is set, as
with `tools/train.py --amp`. Each variant runs in its own child process
(the same script with --variant), so its peak memory is its own: on CPU the
process's peak resident set size (ru_maxrss, which never goes down, so one
process cannot measure three variants), on CUDA torch.cuda.max_memory_allocated.

Multiply-adds (MACs) are counted with torch.utils.flop_counter.FlopCounterMode
on one step, backward included; for (c) they are split into the teacher
forward, the projectors (3x3 convolutions vs. attention and MLP) and the runs
of the teacher's tail for teacher parameter perception, each also timed alone.
The measuring code is mmscalekd.analysis.step_cost.

While a variant runs, one line per stage goes to stderr: the build, each
warm-up and timed step with its time, the MAC count and each part of (c).

Example:
    PYTHONPATH=. python tools/analysis/benchmark.py \\
        configs/scalekd/scalekd_swin-l_resnet50_8xb32_in1k.py \\
        --batch-size 4 --json work_dirs/benchmark.json
"""
SETTINGS = ('batch_size', 'precision', 'channels_last', 'compile', 'device',
            'warmup', 'iters', 'checks')
# FiniteCheckHook's checks that the timed step runs (as every training run
# does: 'all'); the others measure what the checks cost.
CHECKS = ('all', 'before-step', 'none')


def child_command(args: argparse.Namespace, variant: str,
                  out: str) -> List[str]:
    """This script, measuring only ``variant`` and writing it to ``out``."""
    cmd = [sys.executable, osp.abspath(__file__), args.config,
           '--variant', variant, '--json', out,
           '--batch-size', str(args.batch_size),
           '--precision', args.precision, '--device', args.device,
           '--warmup', str(args.warmup), '--iters', str(args.iters),
           '--checks', args.checks]
    if args.channels_last:
        cmd.append('--channels-last')
    if args.compile:
        cmd.append('--compile')
    if args.verbose:
        cmd.append('--verbose')
    if args.cfg_options:
        cmd += ['--cfg-options'] + [
            f'{key}={_option_value(value)}'
            for key, value in args.cfg_options.items()
        ]
    return cmd


def _option_value(value) -> str:
    """A --cfg-options value as DictAction parses it back."""
    if isinstance(value, (list, tuple)):
        return ','.join(_option_value(v) for v in value)
    return str(value)


PROGRESS = 'benchmark: '


def progress_printer(variant: str) -> Callable[[str], None]:
    """Prints a progress line of ``variant`` to stderr at once."""
    from mmscalekd.analysis.step_cost import VARIANT_TITLES

    def say(line: str) -> None:
        print(f'{PROGRESS}{VARIANT_TITLES[variant]}: {line}', file=sys.stderr,
              flush=True)

    return say


def run_child(command: List[str], variant: str) -> None:
    """Run one child, passing its progress lines on to stderr as they come;
    on failure exit with the end of its output (the traceback)."""
    tail = deque(maxlen=200)
    with subprocess.Popen(command, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True) as child:
        for line in child.stdout:
            if line.startswith(PROGRESS):
                print(line, end='', file=sys.stderr, flush=True)
            tail.append(line)
    if child.returncode != 0:
        sys.exit(f'benchmark.py: variant {variant} failed:\n' +
                 ''.join(tail)[-5000:])


def run_all(args: argparse.Namespace) -> dict:
    """Each variant in a child process, in turn, then the joint report."""
    from mmscalekd.analysis.step_cost import VARIANT_TITLES, assemble_report
    from mmscalekd.analysis.train_step import VARIANTS
    load_before = os.getloadavg()
    variants = {}
    with tempfile.TemporaryDirectory() as tmp:
        for variant in VARIANTS:
            out = osp.join(tmp, f'{variant}.json')
            print(f'{PROGRESS}running {VARIANT_TITLES[variant]} ...',
                  flush=True)
            run_child(child_command(args, variant, out), variant)
            with open(out) as f:
                variants[variant] = json.load(f)
    return assemble_report(variants, args.config,
                           {k: getattr(args, k) for k in SETTINGS},
                           load_before, args.cfg_options)


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('config', help='an mmscalekd ScaleKD config file')
    parser.add_argument('--batch-size', type=int, default=4,
                        help='images per step (default: 4)')
    parser.add_argument('--precision', default='fp32',
                        help='fp32, or AMP through torch.autocast with bf16 '
                        'or fp16 (fp16: CUDA only) (default: fp32)')
    parser.add_argument('--channels-last', action='store_true',
                        help='channels-last inputs and 4-D weights, and for '
                        '(b) and (c) `model.channels_last=True` (which acts '
                        'on CUDA only)')
    parser.add_argument('--compile', action='store_true',
                        help='torch.compile the hot path: for (b) and (c) '
                        'through `model.compile=dict()` (teacher forward, '
                        'teacher rest, student, projectors), for (a) the '
                        "student's backbone, neck and head")
    parser.add_argument('--device', default='cpu',
                        help='cpu or cuda[:N] (default: cpu)')
    parser.add_argument('--warmup', type=int, default=2,
                        help='untimed steps first (default: 2)')
    parser.add_argument('--iters', type=int, default=10,
                        help='timed steps (default: 10)')
    parser.add_argument('--checks', choices=CHECKS, default='all',
                        help="FiniteCheckHook's checks in the timed step, as "
                        'in a training run: all (default: the loss and '
                        'gradients before the update, the weights after '
                        'it), before-step (without the check of the '
                        'weights), none; to measure what they cost')
    parser.add_argument('--json', metavar='OUT',
                        help='also write every number to this file')
    parser.add_argument('--cfg-options', nargs='+', action='extend',
                        metavar='KEY=VALUE',
                        help='override config keys, as in tools/train.py, '
                        'e.g. optim_wrapper.optimizer.fused=False '
                        'model.final_stage.projector.conv_impl=native')
    parser.add_argument('--variant',
                        help='run only this variant (student, logit_kd or '
                        'scalekd), in this process, and write its raw result '
                        'to --json (what the tool runs in each child '
                        'process)')
    parser.add_argument('--verbose', action='store_true',
                        help='print the traceback of an error')
    args = parser.parse_args(argv)
    import torch

    from mmscalekd.analysis.train_step import PRECISIONS, VARIANTS
    from mmscalekd.utils.command_line import dict_options
    for option, value, allowed in (
            ('--precision', args.precision, sorted(PRECISIONS)),
            ('--variant', args.variant, VARIANTS)):
        if value is not None and value not in allowed:
            parser.error(f'argument {option}: invalid choice: {value!r} '
                         f'(choose from {", ".join(allowed)})')
    if args.batch_size < 1 or args.iters < 1 or args.warmup < 0:
        parser.error('--batch-size and --iters must be >= 1 and --warmup '
                     '>= 0.')
    if args.device.startswith('cuda') and not torch.cuda.is_available():
        parser.error(f'--device {args.device}: CUDA is not available here; '
                     'use --device cpu.')
    if not (args.device == 'cpu' or args.device.startswith('cuda')):
        parser.error(f'--device {args.device}: use cpu or cuda[:N].')
    if args.precision == 'fp16' and args.device == 'cpu':
        parser.error('--precision fp16 needs --device cuda (CPU autocast '
                     'is bf16); use --precision bf16.')
    return dict_options(args, 'cfg_options')


def main(argv: Optional[Sequence[str]] = None) -> dict:
    args = parse_args(argv)
    from mmscalekd.analysis.step_cost import measure_variant, render_report
    from mmscalekd.utils.command_line import report_errors
    report_errors(verbose=args.verbose)
    if args.variant:
        report = measure_variant(
            args.config, args.variant, args.cfg_options,
            progress=progress_printer(args.variant),
            **{k: getattr(args, k) for k in SETTINGS})
    else:
        report = run_all(args)
        print(render_report(report))
    if args.json:
        os.makedirs(osp.dirname(osp.abspath(args.json)), exist_ok=True)
        with open(args.json, 'w') as f:
            json.dump(report, f, indent=2)
    return report


if __name__ == '__main__':
    main()
