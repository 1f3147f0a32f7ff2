# Native vs. matrix-product 3x3 convolution of the projectors, per shape.
import argparse
import statistics
import time
from typing import List, Optional, Sequence

import torch

from mmscalekd.models.necks import Conv3x3, auto_uses_gemm

DESCRIPTION = """\
Time forward + backward (into the input and the weight) of the projectors'
3x3 convolution, Conv3x3 with impl='native' and impl='gemm', for each
CHANNELSxSIZE shape (square maps, channels in = out) at one batch size, steps
interleaved. Shows where 'auto' should pick the matrix product on this
machine; the default shapes are the student features of the released
configs at 224 px (ResNet-50, MobileNet-V1, ViT). Both implementations are
checked to agree before timing.

Example:
    PYTHONPATH=. python tools/analysis/conv_impl.py --batch-size 4
"""
DEFAULT_SHAPES = ('2048x7', '1024x7', '512x7', '1024x14', '768x14',
                  '512x14')


def time_shape(channels: int, size: int, batch_size: int, rounds: int,
               device: str) -> dict:
    torch.manual_seed(0)
    convs = {impl: Conv3x3(channels, channels, impl=impl).to(device)
             for impl in ('native', 'gemm')}
    convs['gemm'].load_state_dict(convs['native'].state_dict())
    x = torch.randn(batch_size, channels, size, size, device=device,
                    requires_grad=True)
    outputs = {impl: conv(x) for impl, conv in convs.items()}
    torch.testing.assert_close(outputs['gemm'], outputs['native'],
                               rtol=1e-4, atol=1e-4)

    def step(conv):
        conv(x).square().sum().backward()
        x.grad = None
        conv.weight.grad = None
        if device.startswith('cuda'):
            torch.cuda.synchronize()

    times = {impl: [] for impl in convs}
    for round_ in range(rounds + 1):  # the first round warms up
        for impl, conv in convs.items():
            start = time.perf_counter()
            step(conv)
            if round_:
                times[impl].append(time.perf_counter() - start)
    macs = 3 * batch_size * size * size * channels * channels * 9
    median = {impl: statistics.median(t) for impl, t in times.items()}
    return dict(channels=channels, size=size, macs=macs, median_s=median,
                auto_picks='gemm' if auto_uses_gemm(x) else 'native')


def parse_shapes(shapes: Sequence[str]) -> List[tuple]:
    parsed = []
    for shape in shapes:
        try:
            channels, size = (int(v) for v in shape.lower().split('x'))
        except ValueError:
            raise SystemExit(f'conv_impl.py: shape {shape!r} is not '
                             'CHANNELSxSIZE, e.g. 2048x7.') from None
        parsed.append((channels, size))
    return parsed


def main(argv: Optional[Sequence[str]] = None) -> List[dict]:
    parser = argparse.ArgumentParser(
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('shapes', nargs='*', default=list(DEFAULT_SHAPES),
                        help='CHANNELSxSIZE, e.g. 2048x7')
    parser.add_argument('--batch-size', type=int, default=4)
    parser.add_argument('--rounds', type=int, default=5)
    parser.add_argument('--device', default='cpu')
    args = parser.parse_args(argv)
    rows = [
        time_shape(c, s, args.batch_size, args.rounds, args.device)
        for c, s in parse_shapes(args.shapes)
    ]
    print(f'{"shape":>10}  {"native s":>9}  {"gemm s":>9}  '
          f'{"native GMAC/s":>13}  {"gemm GMAC/s":>11}  auto picks')
    for row in rows:
        t = row['median_s']
        shape = f'{row["channels"]}@{row["size"]}x{row["size"]}'
        print(f'{shape:>10}  {t["native"]:9.4f}  {t["gemm"]:9.4f}'
              f'  {row["macs"] / t["native"] / 1e9:13.1f}'
              f'  {row["macs"] / t["gemm"] / 1e9:11.1f}  {row["auto_picks"]}')
    return rows


if __name__ == '__main__':
    main()
