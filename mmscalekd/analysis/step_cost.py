"""What a ScaleKD training step costs: time, memory and multiply-adds of
the three variants of :mod:`mmscalekd.analysis.train_step`, and where the
full method's cost goes.

Peak memory on CPU is the process's peak resident set size, which never goes
down: measure each variant in its own process
(``tools/analysis/benchmark.py`` does) and join the results with
:func:`assemble_report`.
"""
import os
import statistics
import time
from datetime import datetime, timezone
from typing import Callable, Dict, List, Optional

import torch

from .cost import count_macs, split_convolution
from .tables import format_table
from .timing import (machine_info, peak_rss_bytes, summarize_times,
                     time_calls)
from .train_step import VARIANTS, build_train_step

__all__ = [
    'VARIANT_TITLES', 'measure_variant', 'scalekd_parts', 'assemble_report',
    'breakdown', 'render_report'
]

VARIANT_TITLES = {
    'student': '(a) student alone',
    'logit_kd': '(b) + teacher, logit KD',
    'scalekd': '(c) full ScaleKD',
}


def measure_variant(config: str,
                    variant: str,
                    options: Optional[dict] = None,
                    batch_size: int = 4,
                    device: str = 'cpu',
                    precision: str = 'fp32',
                    channels_last: bool = False,
                    compile: bool = False,
                    warmup: int = 2,
                    iters: int = 10,
                    progress: Optional[Callable[[str], None]] = None,
                    checks: str = 'all') -> dict:
    """Build, warm up, time and count one variant in this process.

    ``progress``, if given, receives a line at each stage: the build, every
    warm-up and timed step (:func:`time_calls`), the MAC count and each
    part of (c). ``checks`` says which of FiniteCheckHook's checks the step
    runs (:func:`~mmscalekd.analysis.train_step.make_train_step`).

    Returns:
        dict: ``step_time_s`` (see :func:`summarize_times`),
        ``images_per_s``, peak memory (``peak_rss_bytes``,
        ``rss_at_start_bytes``, ``peak_cuda_allocated_bytes``),
        ``macs_per_step`` and ``macs_by_op`` of the whole step, and for
        ``'scalekd'`` its ``parts`` (:func:`scalekd_parts`).
    """
    say = progress or (lambda line: None)
    rss_at_start = peak_rss_bytes()
    start = time.perf_counter()
    built = build_train_step(config, options, variant, batch_size, device,
                             precision, channels_last, compile,
                             checks=checks)
    say(f'built in {time.perf_counter() - start:.1f} s')
    cuda = device.startswith('cuda')
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    times = time_calls(built.step, warmup, iters, device, progress)
    result = dict(
        variant=variant,
        notes=built.notes,
        step_time_s=summarize_times(times),
        images_per_s=batch_size / statistics.median(times),
        peak_rss_bytes=peak_rss_bytes(),
        rss_at_start_bytes=rss_at_start,
        peak_cuda_allocated_bytes=(torch.cuda.max_memory_allocated()
                                   if cuda else None),
    )
    # Counted after the timing, so that counting adds nothing to the peak.
    say('counting multiply-adds (one more step)')
    macs = count_macs(built.step)
    result['macs_per_step'] = sum(macs.values())
    result['macs_by_op'] = macs
    if variant == 'scalekd':
        with built.autocast():
            result['parts'] = scalekd_parts(built.model, built.inputs,
                                            device, warmup, iters, say)
    return result


def scalekd_parts(model,
                  inputs: torch.Tensor,
                  device: str,
                  warmup: int,
                  iters: int,
                  progress: Optional[Callable[[str], None]] = None
                  ) -> Dict[str, dict]:
    """MACs and time of the teacher forward and of the method's own parts.

    Each part runs alone on the tensors the distiller gives it, forward and
    (for the parts that train) backward, as in a training step: a projector
    back-propagates into its weights and its inputs, a teacher-tail run into
    its input tokens only (the teacher is frozen).

    Returns:
        dict: part name -> ``macs``, ``macs_split`` (see
        :func:`split_convolution`), ``time_s`` (median of up to 3 runs) and
        ``runs`` (how many times a step runs the part).
    """
    reps = max(1, min(iters, 3))
    with torch.no_grad():
        teacher = model.teacher(inputs)
        projector_inputs = model.projector_inputs(inputs)

    def teacher_forward():
        model.teacher(inputs)  # gradient-free: the teacher is frozen

    def run_projector(name):
        feature, queries = projector_inputs[name]
        feature = feature.detach().requires_grad_()
        if queries is not None:
            queries = queries.detach().requires_grad_()
        model.projectors[name](feature, queries).float().sum().backward()

    def run_teacher_tail():
        tokens = teacher.split_tokens.detach().requires_grad_()
        model.teacher.forward_rest(
            tokens, teacher.split_size,
            teacher.split_extra_tokens).float().sum().backward()

    parts = {}

    def measure(name, fn, repeat=1):
        if progress is not None:
            progress(f'part {name}')
        macs = count_macs(fn, by_module=True)
        times = time_calls(fn, min(warmup, 1), reps, device)
        parts[name] = dict(
            macs=repeat * macs['Global'],
            macs_split=split_convolution(
                {k: repeat * v for k, v in macs.items()}),
            time_s=repeat * statistics.median(times),
            runs=repeat)

    measure('teacher_forward', teacher_forward)
    for name in model.projectors:
        measure(f'projector_{name}', lambda n=name: run_projector(n))
    # One run of the teacher's tail per perception-stage projector.
    tail_runs = sum(1 for n in model.projectors if n.startswith('perception'))
    if tail_runs:
        measure('teacher_tail_runs', run_teacher_tail, repeat=tail_runs)
    model.zero_grad(set_to_none=True)
    return parts


def assemble_report(variants: Dict[str, dict], config: str, settings: dict,
                    load_before: tuple,
                    cfg_options: Optional[dict] = None) -> dict:
    """The report of a run: the three variants' results (from
    :func:`measure_variant`), their time ratios, achieved MAC rates and the
    breakdown of (c).

    Args:
        variants (dict): variant name -> its result, all of ``VARIANTS``.
        config (str): the config file measured.
        settings (dict): batch_size, precision, channels_last, compile,
            device, warmup, iters.
        load_before (tuple): ``os.getloadavg()`` before the first variant.
        cfg_options (dict, optional): the config overrides used.
    """
    missing = set(VARIANTS) - set(variants)
    if missing:
        raise ValueError(f'No result of variant(s) {sorted(missing)}; '
                         f'measure each of {VARIANTS}.')
    report = dict(
        config=config,
        date=datetime.now(timezone.utc).isoformat(timespec='seconds'),
        machine=machine_info(settings['device']),
        load_average=dict(before=list(load_before),
                          after=list(os.getloadavg())),
        cfg_options=cfg_options or {},
        settings=settings,
        notes=sorted({n for v in variants.values() for n in v['notes']}),
        variants=variants)
    median = {k: v['step_time_s']['median'] for k, v in variants.items()}
    report['ratios'] = dict(
        scalekd_over_logit_kd=median['scalekd'] / median['logit_kd'],
        scalekd_over_student=median['scalekd'] / median['student'],
        logit_kd_over_student=median['logit_kd'] / median['student'])
    for result in variants.values():
        result['achieved_macs_per_s'] = (result['macs_per_step'] /
                                         result['step_time_s']['median'])
    report['breakdown'] = breakdown(variants)
    return report


def breakdown(variants: Dict[str, dict]) -> List[dict]:
    """Where the MACs and time of (c) go, per part; the last row, "rest of
    (c)", is what the parts leave unexplained."""
    parts = variants['scalekd']['parts']
    student = variants['student']

    def timed(part):
        return dict(macs=part['macs'], time_s=part['time_s'])

    rows = [dict(part='teacher forward', **timed(parts['teacher_forward'])),
            dict(part='student forward + backward + step',
                 macs=student['macs_per_step'],
                 time_s=student['step_time_s']['median'])]
    for name, part in parts.items():
        if name.startswith('projector_'):
            stage = name[len('projector_'):]
            split = part['macs_split']
            rows.append(dict(part=f'{stage} projector: 3x3 conv',
                             macs=split['convolution']))
            rows.append(dict(part=f'{stage} projector: attention + MLP',
                             macs=split['other']))
            rows.append(dict(part=f'{stage} projector (both, f+b)',
                             **timed(part)))
    if 'teacher_tail_runs' in parts:
        tail = parts['teacher_tail_runs']
        rows.append(dict(part=f'teacher tail runs (x{tail["runs"]}, f+b)',
                         **timed(tail)))
    counted = (parts['teacher_forward']['macs'] + student['macs_per_step'] +
               sum(p['macs'] for k, p in parts.items()
                   if k != 'teacher_forward'))
    rows.append(dict(part='rest of (c) (losses, uncounted adds)',
                     macs=variants['scalekd']['macs_per_step'] - counted))
    for row in rows:
        if row.get('time_s'):
            row['achieved_macs_per_s'] = row['macs'] / row['time_s']
    return rows


def _giga(value: Optional[float]) -> str:
    """Giga-units, three significant digits."""
    return 'n/a' if value is None else f'{value / 1e9:.3g}'


def render_report(report: dict) -> str:
    """The report of :func:`assemble_report` as the text a reader scans."""
    s = report['settings']
    batch = s['batch_size']
    cuda = s['device'].startswith('cuda')
    rows = []
    for name in VARIANTS:
        v = report['variants'][name]
        t = v['step_time_s']
        peak = v['peak_cuda_allocated_bytes'] if cuda else v['peak_rss_bytes']
        rows.append([
            VARIANT_TITLES[name], f'{t["median"]:.3f}',
            f'{t["q1"]:.3f}-{t["q3"]:.3f}', f'{t["min"]:.3f}-{t["max"]:.3f}',
            f'{v["images_per_s"]:.2f}',
            _giga(peak),
            _giga(v['macs_per_step'] / batch),
            _giga(v['achieved_macs_per_s'])
        ])
    r = report['ratios']
    machine = report['machine']
    options = ' '.join(f'{k}={v}' for k, v in report['cfg_options'].items())
    lines = [
        f'config: {report["config"]}' + (f' with {options}'
                                         if options else ''),
        f'batch {batch}, {s["precision"]}, device {s["device"]}, '
        f'channels_last={s["channels_last"]}, compile={s["compile"]}, '
        f'warm-up {s["warmup"]}, {s["iters"]} timed steps',
        f'machine: {machine["cpu"]}, {machine["cpu_count"]} CPUs, '
        f'{machine["torch_threads"]} torch threads' +
        (f', {machine["gpu"]}' if 'gpu' in machine else ''),
        'load average (1, 5, 15 min) before: ' +
        ', '.join(f'{x:.2f}' for x in report['load_average']['before']) +
        '; after: ' +
        ', '.join(f'{x:.2f}' for x in report['load_average']['after']),
        '',
        format_table([
            'variant', 'step s (median)', 'IQR s', 'min-max s', 'img/s',
            'peak CUDA GB' if cuda else 'peak RSS GB', 'GMAC/img (f+b)',
            'GMAC/s'
        ], rows),
        '',
        f'(c)/(b) = {r["scalekd_over_logit_kd"]:.2f}x   '
        f'(c)/(a) = {r["scalekd_over_student"]:.2f}x   '
        f'(b)/(a) = {r["logit_kd_over_student"]:.2f}x',
        '',
        'Where (c) goes (MACs per image; time of the part run alone at '
        f'batch {batch}):',
        format_table(['part', 'GMAC/img', 'time s', 'GMAC/s'], [[
            row['part'],
            _giga(row['macs'] / batch),
            f'{row["time_s"]:.3f}' if row.get('time_s') else '',
            _giga(row['achieved_macs_per_s']) if row.get('time_s') else ''
        ] for row in report['breakdown']]),
    ]
    lines += [f'note: {n}' for n in report['notes']]
    return '\n'.join(lines)
