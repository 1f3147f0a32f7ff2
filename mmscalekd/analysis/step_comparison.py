"""Interleaved A/B timing of one training step under two sets of config
overrides, in one process.

Both models are built from the same seed and their steps alternate (A B,
B A, ...), so a change of machine load hits both alike. This resolves
differences of a few percent that separate runs, minutes apart on a shared
CPU, cannot.
"""
import statistics
from typing import Dict, Optional

from .timing import time_interleaved
from .train_step import build_train_step

__all__ = ['compare_train_steps', 'render_step_comparison']


def compare_train_steps(config: str,
                        options_a: Optional[dict],
                        options_b: Optional[dict],
                        variant: str = 'scalekd',
                        batch_size: int = 4,
                        device: str = 'cpu',
                        rounds: int = 8,
                        lr: Optional[float] = None) -> dict:
    """Step times of side A and side B, and their paired differences.

    Args:
        config (str): a ScaleKD config file.
        options_a (dict, optional): config overrides of side A, e.g.
            ``{'model.final_stage.projector.conv_impl': 'native'}``.
        options_b (dict, optional): those of side B.
        variant (str): which model of the config, see
            :func:`~mmscalekd.analysis.train_step.build_variant`.
        batch_size (int): images per step.
        device (str): ``'cpu'`` or ``'cuda[:N]'``.
        rounds (int): timed steps per side, after one untimed each.
        lr (float, optional): replaces the optimizer's learning rate, e.g.
            when the config's diverges on random data.

    Returns:
        dict: ``options`` (side -> overrides), ``times`` (side -> seconds
        per round) and ``diffs`` (per round, B - A).
    """
    options = {'A': dict(options_a or {}), 'B': dict(options_b or {})}
    steps = {
        side: build_train_step(config, side_options, variant, batch_size,
                               device, lr=lr).step
        for side, side_options in options.items()
    }
    times = time_interleaved(steps, rounds, device)
    diffs = [b - a for a, b in zip(times['A'], times['B'])]
    return dict(options=options, times=times, diffs=diffs)


def render_step_comparison(result: Dict[str, dict]) -> str:
    """Per side the median, minimum and all times; then the paired B - A."""
    lines = []
    for side, times in result['times'].items():
        lines.append(f'{side} {result["options"][side]}: median '
                     f'{statistics.median(times):.3f} s, min '
                     f'{min(times):.3f} s, all ' +
                     ' '.join(f'{x:.2f}' for x in times))
    d = result['diffs']
    lines.append(f'B - A, paired: median {statistics.median(d):+.3f} s '
                 f'(range {min(d):+.3f} to {max(d):+.3f}, B faster in '
                 f'{sum(x < 0 for x in d)} of {len(d)} rounds)')
    return '\n'.join(lines)
