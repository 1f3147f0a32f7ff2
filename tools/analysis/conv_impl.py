# Native vs. matrix-product 3x3 convolution of the projectors, per shape.
# torch and mmscalekd are imported once the arguments are parsed, so that
# `--help` answers at once.
import argparse
from typing import List, Optional, Sequence

DESCRIPTION = """\
Time forward + backward (into the input and the weight) of the projectors'
3x3 convolution, Conv3x3 with impl='native' and impl='gemm', for each
CHANNELSxSIZE shape (square maps, channels in = out) at one batch size, steps
interleaved. Shows where the projector's default, 'auto', should pick the
matrix product on this machine; the default shapes are the student features
of the released configs at 224 px (ResNet-50, MobileNet-V1, ViT). Both
implementations are checked to agree before timing.

To time a whole training step without the matrix product, compare_steps.py
takes the projector's expert override
model.final_stage.projector.conv_impl=native (configs never set it).

Example:
    PYTHONPATH=. python tools/analysis/conv_impl.py --batch-size 4
"""


def main(argv: Optional[Sequence[str]] = None) -> List[dict]:
    parser = argparse.ArgumentParser(
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('shapes', nargs='*',
                        help='CHANNELSxSIZE, e.g. 2048x7 (default: the '
                        'released configs\' student features)')
    parser.add_argument('--batch-size', type=int, default=4)
    parser.add_argument('--rounds', type=int, default=5)
    parser.add_argument('--device', default='cpu')
    parser.add_argument('--verbose', action='store_true',
                        help='print the traceback of an error')
    args = parser.parse_args(argv)
    from mmscalekd.analysis.conv_timing import (DEFAULT_SHAPES, parse_shape,
                                                render_conv_timings,
                                                time_conv3x3)
    from mmscalekd.utils.command_line import report_errors
    report_errors(verbose=args.verbose)
    try:
        shapes = [parse_shape(shape)
                  for shape in args.shapes or DEFAULT_SHAPES]
    except ValueError as error:
        parser.error(str(error))
    rows = [
        time_conv3x3(c, s, args.batch_size, args.rounds, args.device)
        for c, s in shapes
    ]
    print(render_conv_timings(rows))
    return rows


if __name__ == '__main__':
    main()
