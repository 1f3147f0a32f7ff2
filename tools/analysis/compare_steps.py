# Interleaved A/B timing of one training step under two config variants.
# torch, mmengine and mmscalekd are imported once the arguments are parsed,
# so that `--help` answers at once.
import argparse
import logging
from typing import Optional, Sequence

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
        --a model.final_stage.projector.conv_impl=native \\
        --b model.final_stage.projector.conv_impl=auto --rounds 8
"""


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('config')
    parser.add_argument('--a', nargs='*', action='extend', default=[],
                        metavar='KEY=VALUE',
                        help='config overrides of side A (none: as is)')
    parser.add_argument('--b', nargs='*', action='extend', default=[],
                        metavar='KEY=VALUE',
                        help='config overrides of side B (none: as is)')
    parser.add_argument('--variant', default='scalekd',
                        help='student, logit_kd or scalekd (default)')
    parser.add_argument('--batch-size', type=int, default=4)
    parser.add_argument('--rounds', type=int, default=8,
                        help='timed steps per side (default: 8)')
    parser.add_argument('--device', default='cpu')
    parser.add_argument('--lr', type=float,
                        help="override the optimizer's learning rate, e.g. "
                        'when the config lr diverges on random data')
    parser.add_argument('--verbose', action='store_true',
                        help='print the traceback of an error')
    args = parser.parse_args(argv)
    if args.rounds < 1 or args.batch_size < 1:
        parser.error('--rounds and --batch-size must be >= 1.')
    from mmscalekd.analysis.train_step import VARIANTS
    from mmscalekd.utils.command_line import dict_options
    if args.variant not in VARIANTS:
        parser.error(f'argument --variant: invalid choice: {args.variant!r} '
                     f'(choose from {", ".join(VARIANTS)})')
    return dict_options(args, 'a', 'b')


def main(argv: Optional[Sequence[str]] = None) -> dict:
    args = parse_args(argv)
    from mmengine.logging import MMLogger

    from mmscalekd.analysis.step_comparison import (compare_train_steps,
                                                    render_step_comparison)
    from mmscalekd.utils.command_line import report_errors
    report_errors(verbose=args.verbose)
    # init_weights logs one INFO record per parameter; keep warnings only.
    MMLogger.get_current_instance().setLevel(logging.WARNING)
    result = compare_train_steps(args.config, args.a, args.b, args.variant,
                                 args.batch_size, args.device, args.rounds,
                                 args.lr)
    print(render_step_comparison(result))
    return result


if __name__ == '__main__':
    main()
