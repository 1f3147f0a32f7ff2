"""Native vs. matrix-product 3x3 convolution of the projectors, timed.

:class:`~mmscalekd.models.necks.Conv3x3` picks, with ``impl='auto'``, the
matrix product on CPU for small maps with many channels; this measures
both implementations on a shape, to check that rule on a machine.
"""
import statistics
from typing import List, Sequence, Tuple

import torch

from mmscalekd.models.necks import Conv3x3, auto_uses_gemm
from .tables import format_table
from .timing import synchronize, time_interleaved

__all__ = [
    'DEFAULT_SHAPES', 'parse_shape', 'time_conv3x3', 'render_conv_timings'
]

# The student features of the released configs at 224 px (ResNet-50,
# MobileNet-V1, ViT), as CHANNELSxSIZE.
DEFAULT_SHAPES = ('2048x7', '1024x7', '512x7', '1024x14', '768x14',
                  '512x14')
IMPLS = ('native', 'gemm')


def parse_shape(shape: str) -> Tuple[int, int]:
    """``'2048x7'`` -> ``(2048, 7)``: channels and side of a square map."""
    try:
        channels, size = (int(v) for v in shape.lower().split('x'))
    except ValueError:
        raise ValueError(f'Shape {shape!r} is not CHANNELSxSIZE, e.g. '
                         '2048x7.') from None
    return channels, size


def time_conv3x3(channels: int, size: int, batch_size: int, rounds: int,
                 device: str = 'cpu') -> dict:
    """Forward + backward (into the input and the weight) of ``Conv3x3``
    with ``impl='native'`` and ``impl='gemm'``, steps interleaved.

    Both are checked to give the same output first (same weights).

    Returns:
        dict: ``channels``, ``size``, ``macs`` (of forward and both
        gradients), ``median_s`` (impl -> median seconds) and
        ``auto_picks`` (what ``impl='auto'`` runs for this input).
    """
    torch.manual_seed(0)
    convs = {impl: Conv3x3(channels, channels, impl=impl).to(device)
             for impl in IMPLS}
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
        synchronize(device)

    times = time_interleaved(
        {impl: (lambda c=conv: step(c)) for impl, conv in convs.items()},
        rounds, device)
    macs = 3 * batch_size * size * size * channels * channels * 9
    return dict(channels=channels, size=size, macs=macs,
                median_s={impl: statistics.median(t)
                          for impl, t in times.items()},
                auto_picks='gemm' if auto_uses_gemm(x) else 'native')


def render_conv_timings(rows: Sequence[dict]) -> str:
    """Rows of :func:`time_conv3x3` as a table: seconds and GMAC/s."""
    cells: List[list] = []
    for row in rows:
        t = row['median_s']
        cells.append([
            f'{row["channels"]}@{row["size"]}x{row["size"]}',
            f'{t["native"]:.4f}', f'{t["gemm"]:.4f}',
            f'{row["macs"] / t["native"] / 1e9:.1f}',
            f'{row["macs"] / t["gemm"] / 1e9:.1f}', row['auto_picks']
        ])
    return format_table(['shape', 'native s', 'gemm s', 'native GMAC/s',
                         'gemm GMAC/s', 'auto picks'], cells)
