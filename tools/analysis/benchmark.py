# What does ScaleKD cost? Time, memory and multiply-adds of a training step.
import argparse
import contextlib
import copy
import json
import os
import os.path as osp
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from typing import Callable, Dict, List, Optional, Sequence

import torch
from mmengine.config import Config, DictAction
from mmengine.optim import build_optim_wrapper
from mmengine.registry import init_default_scope
from torch.utils.flop_counter import (FlopCounterMode, sdpa_backward_flop_count,
                                      sdpa_flop_count)

__all__ = ['count_macs', 'main']

DESCRIPTION = """\
Time one training step (forward, backward, optimizer step with the config's
optimizer) of three variants built from CONFIG:

  (a) student   the student classifier alone, its own loss
  (b) logit_kd  student + frozen teacher forward, logit distillation only
                (CONFIG's model with both feature stages set to None)
  (c) scalekd   the full ScaleKD distiller of CONFIG

Weights are random (the teacher checkpoint is forced to None) and the batch is
synthetic, at the config's `model.input_size`; no data set is read and the
data preprocessor is not timed. Each variant runs in its own child process
(the same script with --variant), so its peak memory is its own: on CPU the
process's peak resident set size (ru_maxrss, which never goes down, so one
process cannot measure three variants), on CUDA torch.cuda.max_memory_allocated.

Multiply-adds (MACs) are counted with torch.utils.flop_counter.FlopCounterMode
on one step, backward included; for (c) they are split into the teacher
forward, the projectors (3x3 convolutions vs. attention and MLP) and the runs
of the teacher's tail for teacher parameter perception, each also timed alone.

Example:
    PYTHONPATH=. python tools/analysis/benchmark.py \\
        configs/scalekd/scalekd_swin-l_resnet50_8xb32_in1k.py \\
        --batch-size 4 --json work_dirs/benchmark.json
"""

VARIANTS = ('student', 'logit_kd', 'scalekd')
VARIANT_TITLES = {
    'student': '(a) student alone',
    'logit_kd': '(b) + teacher, logit KD',
    'scalekd': '(c) full ScaleKD',
}
DEFAULT_LOGIT_KD = dict(type='LogitKDLoss', tau=1.0, alpha=0.5)
PRECISIONS = {'fp32': None, 'bf16': torch.bfloat16, 'fp16': torch.float16}


# ----------------------------------------------------------------- counting
def _cpu_sdpa_flop(query, key, value, *args, out_val=None, **kwargs) -> int:
    return sdpa_flop_count(query, key, value)


def _cpu_sdpa_backward_flop(grad_out, query, key, value, *args,
                            out_val=None, **kwargs) -> int:
    return sdpa_backward_flop_count(grad_out, query, key, value)


# torch's registry knows the CUDA attention kernels only; without these the
# CPU fused attention (what F.scaled_dot_product_attention runs on CPU)
# would count as free.
_EXTRA_FORMULAS = {
    torch.ops.aten._scaled_dot_product_flash_attention_for_cpu:
    _cpu_sdpa_flop,
    torch.ops.aten._scaled_dot_product_flash_attention_for_cpu_backward:
    _cpu_sdpa_backward_flop,
}


def count_macs(fn: Callable[[], object],
               by_module: bool = False) -> Dict[str, int]:
    """Multiply-adds of the aten ops ``fn`` runs, forward and backward.

    FlopCounterMode counts a multiply-add as 2 FLOPs (``2*m*n*k`` for a
    matmul); this halves its counts. Element-wise ops, normalisation and
    softmax are not counted (they are memory-bound and small in MACs).

    Returns:
        dict: aten op name -> multiply-adds, or with ``by_module`` the
        module path (``'Global'`` for everything) -> multiply-adds.
    """
    with FlopCounterMode(display=False,
                         custom_mapping=_EXTRA_FORMULAS) as counter:
        fn()
    flops = counter.get_flop_counts()
    if by_module:
        return {name: sum(ops.values()) // 2 for name, ops in flops.items()}
    return {str(op): count // 2
            for op, count in flops.get('Global', {}).items()}


def _split_convolution(macs_by_module: Dict[str, int]) -> Dict[str, int]:
    """A projector's MACs: its 3x3 convolution vs. everything else.

    Split by module, not by op: the convolution may run as a matrix product
    (``Conv3x3`` with ``impl='gemm'``).
    """
    conv = sum(v for k, v in macs_by_module.items()
               if k.endswith('.student_conv'))
    return dict(convolution=conv, other=macs_by_module['Global'] - conv)


# ----------------------------------------------------------------- building
def _load_config(path: str, options: Optional[dict] = None) -> Config:
    cfg = Config.fromfile(path)
    if options:
        cfg.merge_from_dict(options)
    init_default_scope(cfg.get('default_scope', 'mmpretrain'))
    return cfg


def build_variant(cfg: Config, variant: str) -> tuple:
    """The model of ``variant`` from ``cfg`` and notes on what changed."""
    from mmpretrain.registry import MODELS
    notes = []
    torch.manual_seed(0)
    if variant == 'student':
        model = MODELS.build(copy.deepcopy(cfg.model.student))
    else:
        model_cfg = copy.deepcopy(cfg.model)
        model_cfg.teacher.checkpoint = None
        if variant == 'logit_kd':
            model_cfg.perception_stage = None
            model_cfg.final_stage = None
            if not model_cfg.get('logit_kd'):
                model_cfg.logit_kd = DEFAULT_LOGIT_KD
                notes.append('the config has no logit_kd: (b) uses '
                             'LogitKDLoss(tau=1, alpha=0.5)')
        model = MODELS.build(model_cfg)
    model.init_weights()
    return model, notes


def _optim_wrapper_cfg(cfg: Config, precision: str) -> dict:
    """The config's optimizer; its own AMP settings give way to --precision.

    fp16 needs loss scaling, which mmengine's AmpOptimWrapper does (CUDA
    only); bf16 runs under our own autocast with a plain OptimWrapper.
    """
    wrapper = copy.deepcopy(cfg.optim_wrapper).to_dict()
    for key in ('dtype', 'loss_scale'):
        wrapper.pop(key, None)
    if precision == 'fp16':
        wrapper.update(type='AmpOptimWrapper', dtype='float16')
    elif wrapper.get('type') == 'AmpOptimWrapper':
        wrapper['type'] = 'OptimWrapper'
    return wrapper


def _compile(model: torch.nn.Module, variant: str) -> None:
    """torch.compile, in place, of what the student and projectors run.

    The distiller calls the student's ``extract_feat`` and ``head``, not
    its ``forward``, so the parts are compiled one by one.
    """
    student = model if variant == 'student' else model.student
    parts = [student.backbone, student.head]
    if getattr(student, 'neck', None) is not None:
        parts.append(student.neck)
    if variant == 'scalekd':
        parts += list(model.projectors.values())
    for part in parts:
        part.compile()


def _synthetic_batch(cfg: Config, model, batch_size: int, device: str,
                     channels_last: bool) -> tuple:
    from mmpretrain.structures import DataSample
    size = cfg.model.get('input_size', 224)
    height, width = (size, size) if isinstance(size, int) else size
    channels = cfg.model.get('input_channels', 3)
    generator = torch.Generator().manual_seed(0)
    # Already "preprocessed": zero-mean, unit-variance images.
    inputs = torch.randn(batch_size, channels, height, width,
                         generator=generator).to(device)
    if channels_last:
        inputs = inputs.contiguous(memory_format=torch.channels_last)
    student = model if hasattr(model, 'backbone') else model.student
    num_classes = student.head.num_classes
    samples = [
        DataSample().set_gt_label(i % num_classes).to(device)
        for i in range(batch_size)
    ]
    return inputs, samples


# ----------------------------------------------------------------- timing
def _sync(device: str) -> None:
    if device.startswith('cuda'):
        torch.cuda.synchronize()


def _time(fn: Callable[[], object], warmup: int, iters: int,
          device: str) -> List[float]:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(iters):
        _sync(device)
        start = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - start)
    return times


def _summary(times: Sequence[float]) -> dict:
    ordered = sorted(times)
    if len(ordered) >= 2:
        q1, _, q3 = statistics.quantiles(ordered, n=4, method='inclusive')
    else:
        q1 = q3 = ordered[0]
    return dict(median=statistics.median(ordered), q1=q1, q3=q3,
                min=ordered[0], max=ordered[-1], all=list(times))


def _peak_rss_bytes() -> int:
    # Linux reports kilobytes, macOS bytes.
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == 'darwin' else peak * 1024


def make_train_step(model, optim_wrapper, inputs: torch.Tensor,
                    samples: list,
                    autocast: Callable = contextlib.nullcontext
                    ) -> Callable[[], None]:
    """One training step: ``BaseModel.train_step`` without the data
    preprocessor (the batch is already preprocessed)."""

    from mmscalekd.engine import FiniteCheckHook

    # Every training run checks each step for non-finite values; so does
    # the timed step.
    FiniteCheckHook().attach(model, optim_wrapper, iteration=lambda: 0)

    def train_step():
        with optim_wrapper.optim_context(model), autocast():
            losses = model.loss(inputs, samples)
        loss, _ = model.parse_losses(losses)
        optim_wrapper.update_params(loss)

    return train_step


def run_variant(args: argparse.Namespace) -> dict:
    """Build, warm up, time and count one variant in this process."""
    rss_at_start = _peak_rss_bytes()
    device, variant = args.device, args.variant
    cfg = _load_config(args.config, args.cfg_options)
    model, notes = build_variant(cfg, variant)
    model.to(device)
    if args.channels_last:
        model.to(memory_format=torch.channels_last)
    model.train()  # the distiller keeps its teacher in eval mode
    optim_wrapper = build_optim_wrapper(
        model, _optim_wrapper_cfg(cfg, args.precision))
    if args.compile:
        _compile(model, variant)
    inputs, samples = _synthetic_batch(cfg, model, args.batch_size, device,
                                       args.channels_last)
    dtype = PRECISIONS[args.precision]

    def autocast():
        # fp16 autocast comes from AmpOptimWrapper.optim_context.
        if dtype is torch.bfloat16:
            return torch.autocast(device.split(':')[0], dtype=dtype)
        return contextlib.nullcontext()

    train_step = make_train_step(model, optim_wrapper, inputs, samples,
                                 autocast)

    if device.startswith('cuda'):
        torch.cuda.reset_peak_memory_stats()
    times = _time(train_step, args.warmup, args.iters, device)
    result = dict(
        variant=variant,
        notes=notes,
        step_time_s=_summary(times),
        images_per_s=args.batch_size / statistics.median(times),
        peak_rss_bytes=_peak_rss_bytes(),
        rss_at_start_bytes=rss_at_start,
        peak_cuda_allocated_bytes=(torch.cuda.max_memory_allocated()
                                   if device.startswith('cuda') else None),
    )
    # Counted after the timing, so that counting adds nothing to the peak.
    macs = count_macs(train_step)
    result['macs_per_step'] = sum(macs.values())
    result['macs_by_op'] = macs
    if variant == 'scalekd':
        with autocast():
            result['parts'] = _scalekd_parts(model, inputs, device,
                                             args.warmup, args.iters)
    return result


def _scalekd_parts(model, inputs: torch.Tensor, device: str, warmup: int,
                   iters: int) -> Dict[str, dict]:
    """MACs and time of the teacher forward and of the method's own parts.

    Each part runs alone on the tensors the distiller gives it, forward and
    (for the parts that train) backward, as in a training step: a projector
    back-propagates into its weights and its inputs, a teacher-tail run into
    its input tokens only (the teacher is frozen).
    """
    reps = max(1, min(iters, 3))
    with torch.no_grad():
        teacher = model.teacher_adapter(inputs)
        projector_inputs = model.projector_inputs(inputs)

    def teacher_forward():
        with torch.no_grad():
            model.teacher_adapter(inputs)

    def run_projector(name):
        feature, queries = projector_inputs[name]
        feature = feature.detach().requires_grad_()
        if queries is not None:
            queries = queries.detach().requires_grad_()
        model.projectors[name](feature, queries).float().sum().backward()

    def run_teacher_tail():
        tokens = teacher.split_tokens.detach().requires_grad_()
        model.teacher_adapter.forward_rest(
            tokens, teacher.split_size,
            teacher.split_extra_tokens).float().sum().backward()

    parts = {}

    def measure(name, fn, repeat=1):
        macs = count_macs(fn, by_module=True)
        times = _time(fn, min(warmup, 1), reps, device)
        parts[name] = dict(
            macs=repeat * macs['Global'],
            macs_split=_split_convolution(
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


# ----------------------------------------------------------------- driver
def _machine(device: str) -> dict:
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


def _child_command(args: argparse.Namespace, variant: str,
                   out: str) -> List[str]:
    cmd = [sys.executable, osp.abspath(__file__), args.config,
           '--variant', variant, '--json', out,
           '--batch-size', str(args.batch_size),
           '--precision', args.precision, '--device', args.device,
           '--warmup', str(args.warmup), '--iters', str(args.iters)]
    if args.channels_last:
        cmd.append('--channels-last')
    if args.compile:
        cmd.append('--compile')
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


def run_all(args: argparse.Namespace) -> dict:
    """Each variant in a child process, in turn; then ratios and parts."""
    load_before = os.getloadavg()
    variants = {}
    with tempfile.TemporaryDirectory() as tmp:
        for variant in VARIANTS:
            out = osp.join(tmp, f'{variant}.json')
            print(f'benchmark: running {VARIANT_TITLES[variant]} ...',
                  flush=True)
            child = subprocess.run(_child_command(args, variant, out),
                                   capture_output=True, text=True)
            if child.returncode != 0:
                sys.exit(f'benchmark.py: variant {variant} failed:\n'
                         f'{child.stderr[-5000:]}')
            with open(out) as f:
                variants[variant] = json.load(f)
    report = dict(
        config=args.config,
        date=datetime.now(timezone.utc).isoformat(timespec='seconds'),
        machine=_machine(args.device),
        load_average=dict(before=load_before, after=os.getloadavg()),
        cfg_options=args.cfg_options or {},
        settings=dict(batch_size=args.batch_size, precision=args.precision,
                      channels_last=args.channels_last, compile=args.compile,
                      device=args.device, warmup=args.warmup,
                      iters=args.iters),
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
    report['breakdown'] = _breakdown(variants)
    return report


def _breakdown(variants: Dict[str, dict]) -> List[dict]:
    """Where the MACs and time of (c) go, per part."""
    parts = variants['scalekd']['parts']
    student = variants['student']
    rows = [dict(part='teacher forward', **_row(parts['teacher_forward'])),
            dict(part='student forward + backward + step',
                 macs=student['macs_per_step'],
                 time_s=student['step_time_s']['median'])]
    for name, part in parts.items():
        if name.startswith('projector_'):
            split = part['macs_split']
            rows.append(dict(part=f'{name[len("projector_"):]} projector: '
                             '3x3 conv', macs=split['convolution']))
            rows.append(dict(part=f'{name[len("projector_"):]} projector: '
                             'attention + MLP', macs=split['other']))
            rows.append(dict(part=f'{name[len("projector_"):]} projector '
                             '(both, f+b)', **_row(part)))
    if 'teacher_tail_runs' in parts:
        tail = parts['teacher_tail_runs']
        rows.append(dict(part=f'teacher tail runs (x{tail["runs"]}, f+b)',
                         **_row(tail)))
    counted = (parts['teacher_forward']['macs'] + student['macs_per_step'] +
               sum(p['macs'] for k, p in parts.items()
                   if k != 'teacher_forward'))
    rows.append(dict(part='rest of (c) (losses, uncounted adds)',
                     macs=variants['scalekd']['macs_per_step'] - counted))
    for row in rows:
        if row.get('time_s'):
            row['achieved_macs_per_s'] = row['macs'] / row['time_s']
    return rows


def _row(part: dict) -> dict:
    return dict(macs=part['macs'], time_s=part['time_s'])


def _g(value: Optional[float]) -> str:
    """Giga-units, three significant digits."""
    return 'n/a' if value is None else f'{value / 1e9:.3g}'


def format_table(headers: Sequence[str], rows: Sequence[Sequence]) -> str:
    cells = [list(map(str, headers))] + [list(map(str, r)) for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = ['  '.join(c.rjust(w) if i else c.ljust(w)
                       for i, (c, w) in enumerate(zip(row, widths)))
             for row in cells]
    lines.insert(1, '  '.join('-' * w for w in widths))
    return '\n'.join(lines)


def render(report: dict) -> str:
    s = report['settings']
    batch = s['batch_size']
    memory = 'peak CUDA GB' if s['device'].startswith('cuda') \
        else 'peak RSS GB'
    rows = []
    for name in VARIANTS:
        v = report['variants'][name]
        t = v['step_time_s']
        peak = v['peak_cuda_allocated_bytes'] if s['device'].startswith(
            'cuda') else v['peak_rss_bytes']
        rows.append([
            VARIANT_TITLES[name], f'{t["median"]:.3f}',
            f'{t["q1"]:.3f}-{t["q3"]:.3f}', f'{t["min"]:.3f}-{t["max"]:.3f}',
            f'{v["images_per_s"]:.2f}', _g(peak), _g(v['macs_per_step'] /
                                                     batch),
            _g(v['achieved_macs_per_s'])
        ])
    r = report['ratios']
    lines = [
        f'config: {report["config"]}' + (
            ' with ' + ' '.join(f'{k}={v}'
                                for k, v in report['cfg_options'].items())
            if report.get('cfg_options') else ''),
        f'batch {batch}, {s["precision"]}, device {s["device"]}, '
        f'channels_last={s["channels_last"]}, compile={s["compile"]}, '
        f'warm-up {s["warmup"]}, {s["iters"]} timed steps',
        f'machine: {report["machine"]["cpu"]}, '
        f'{report["machine"]["cpu_count"]} CPUs, '
        f'{report["machine"]["torch_threads"]} torch threads'
        + (f', {report["machine"]["gpu"]}' if 'gpu' in report['machine']
           else ''),
        'load average (1, 5, 15 min) before: '
        + ', '.join(f'{x:.2f}' for x in report['load_average']['before'])
        + '; after: '
        + ', '.join(f'{x:.2f}' for x in report['load_average']['after']),
        '',
        format_table(['variant', 'step s (median)', 'IQR s', 'min-max s',
                      'img/s', memory, 'GMAC/img (f+b)', 'GMAC/s'], rows),
        '',
        f'(c)/(b) = {r["scalekd_over_logit_kd"]:.2f}x   '
        f'(c)/(a) = {r["scalekd_over_student"]:.2f}x   '
        f'(b)/(a) = {r["logit_kd_over_student"]:.2f}x',
        '',
        'Where (c) goes (MACs per image; time of the part run alone at '
        f'batch {batch}):',
        format_table(['part', 'GMAC/img', 'time s', 'GMAC/s'], [[
            row['part'], _g(row['macs'] / batch),
            f'{row["time_s"]:.3f}' if row.get('time_s') else '',
            _g(row.get('achieved_macs_per_s'))
            if row.get('time_s') else ''
        ] for row in report['breakdown']]),
    ]
    lines += [f'note: {n}' for n in report['notes']]
    return '\n'.join(lines)


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('config', help='an mmscalekd ScaleKD config file')
    parser.add_argument('--batch-size', type=int, default=4,
                        help='images per step (default: 4)')
    parser.add_argument('--precision', choices=sorted(PRECISIONS),
                        default='fp32',
                        help='fp32, or AMP through torch.autocast with bf16 '
                        'or fp16 (fp16: CUDA only) (default: fp32)')
    parser.add_argument('--channels-last', action='store_true',
                        help='channels-last inputs and 4-D weights')
    parser.add_argument('--compile', action='store_true',
                        help='torch.compile the student and the projectors')
    parser.add_argument('--device', default='cpu',
                        help='cpu or cuda[:N] (default: cpu)')
    parser.add_argument('--warmup', type=int, default=2,
                        help='untimed steps first (default: 2)')
    parser.add_argument('--iters', type=int, default=10,
                        help='timed steps (default: 10)')
    parser.add_argument('--json', metavar='OUT',
                        help='also write every number to this file')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config keys, as in tools/train.py, '
                        'e.g. optim_wrapper.optimizer.fused=False '
                        'model.final_stage.conv_impl=native')
    parser.add_argument('--variant', choices=VARIANTS,
                        help='run only this variant, in this process, and '
                        'write its raw result to --json (what the tool runs '
                        'in each child process)')
    args = parser.parse_args(argv)
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
    return args


def main(argv: Optional[Sequence[str]] = None) -> dict:
    args = parse_args(argv)
    if args.variant:
        report = run_variant(args)
    else:
        report = run_all(args)
        print(render(report))
    if args.json:
        os.makedirs(osp.dirname(osp.abspath(args.json)), exist_ok=True)
        with open(args.json, 'w') as f:
            json.dump(report, f, indent=2)
    return report


if __name__ == '__main__':
    main()
