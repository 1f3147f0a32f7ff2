"""Wall-clock timing of training steps and of their parts."""
import contextlib
import os
import platform
import resource
import statistics
import sys
import time
from typing import Callable, Dict, List, Optional, Sequence

import torch

__all__ = [
    'synchronize', 'time_calls', 'time_interleaved', 'summarize_times',
    'peak_rss_bytes', 'machine_info'
]


def synchronize(device: str) -> None:
    """Wait for the device's queued work (CUDA runs asynchronously)."""
    if device.startswith('cuda'):
        torch.cuda.synchronize()


def time_calls(fn: Callable[[], object],
               warmup: int,
               iters: int,
               device: str,
               progress: Optional[Callable[[str], None]] = None
               ) -> List[float]:
    """Seconds of each of ``iters`` calls of ``fn``, after ``warmup``.

    ``progress``, if given, receives one line after each call, e.g.
    ``'warm-up step 1/2: 5.120 s'`` or ``'timed step 3/10: 5.601 s'``
    (a warm-up step with compilation can take minutes).
    """
    times = []
    for i in range(warmup + iters):
        synchronize(device)
        start = time.perf_counter()
        fn()
        synchronize(device)
        seconds = time.perf_counter() - start
        if i >= warmup:
            times.append(seconds)
        if progress is not None:
            kind, n, total = (('warm-up', i + 1, warmup) if i < warmup else
                              ('timed', i + 1 - warmup, iters))
            progress(f'{kind} step {n}/{total}: {seconds:.3f} s')
    return times


def time_interleaved(fns: Dict[str, Callable[[], object]], rounds: int,
                     device: str) -> Dict[str, List[float]]:
    """Seconds per call of several functions, their calls alternating.

    One untimed round first; then each round calls every function once, the
    order reversed every other round (A B, B A, ...), so that a change of
    machine load hits all of them alike.

    Returns:
        dict: name -> ``rounds`` times, in round order.
    """
    names = list(fns)
    for name in names:
        fns[name]()
    times: Dict[str, List[float]] = {name: [] for name in names}
    for round_ in range(rounds):
        for name in (names if round_ % 2 == 0 else names[::-1]):
            times[name] += time_calls(fns[name], 0, 1, device)
    return times


def summarize_times(times: Sequence[float]) -> dict:
    """Median, quartiles (inclusive method), extremes and all the times."""
    ordered = sorted(times)
    if len(ordered) >= 2:
        q1, _, q3 = statistics.quantiles(ordered, n=4, method='inclusive')
    else:
        q1 = q3 = ordered[0]
    return dict(median=statistics.median(ordered), q1=q1, q3=q3,
                min=ordered[0], max=ordered[-1], all=list(times))


def peak_rss_bytes() -> int:
    """This process's peak resident set size so far (it never goes down)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # Linux reports kilobytes, macOS bytes.
    return peak if sys.platform == 'darwin' else peak * 1024


def machine_info(device: str) -> dict:
    """CPU model, core and thread counts, versions (and GPU) for a report."""
    cpu = platform.processor()
    with contextlib.suppress(OSError):
        with open('/proc/cpuinfo') as f:
            for line in f:
                if line.startswith('model name'):
                    cpu = line.split(':', 1)[1].strip()
                    break
    machine = dict(cpu=cpu, cpu_count=os.cpu_count(),
                   torch_threads=torch.get_num_threads(),
                   torch=torch.__version__, python=platform.python_version())
    if device.startswith('cuda'):
        machine['gpu'] = torch.cuda.get_device_name(device)
    return machine
