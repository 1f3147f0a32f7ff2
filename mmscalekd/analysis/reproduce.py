"""The paper's table in one command: every training job of a set of ScaleKD
configs, and what they will cost.

For each ScaleKD config the plan holds one job per seed for each of the
three methods of the paper's comparison: the student alone, logit KD and
ScaleKD. The baselines are the shipped siblings of the config
(``student_<student>_<recipe>.py`` and ``logit-kd_<teacher>_<student>_...``
beside it); a config without them gets both derived the way the sweep
derives them (:func:`mmscalekd.analysis.sweep.run_config`) and written under
the work root. Jobs that are the same config and seed (the ablations share
the Swin-L -> ResNet-50 baselines) are one job.

Everything lives in the work root: ``jobs.json`` (every job planned there,
by index; a later plan keeps the indices and appends), ``jobs.txt`` (the
same for a reader), the launcher's file (a slurm array script, or one
command line per job) and one folder per job, ``<config name>/seed<k>``.
A job trains with ``tools/train.py --resume`` (so a requeued or rerun job
continues from its newest checkpoint), tests its last checkpoint with
``tools/test.py --out preds.pkl`` and then writes ``result.json``; a job
with its ``result.json`` is skipped. ``tools/reproduce.py`` is the command
line; :mod:`.reproduce_results` collects the table.
"""
import contextlib
import copy
import json
import logging
import math
import os
import os.path as osp
import shlex
import shutil
import sys
import tempfile
from dataclasses import asdict, dataclass, field
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import yaml
from mmengine.config import Config

from mmscalekd.config_builder.writer import shipped_file
from .sweep import Run, fingerprint, is_scalekd_config, run_config, write_json
from .tables import format_table

__all__ = [
    'TABLES', 'METHODS', 'VARIANT_OF', 'IMAGENET_TRAIN_IMAGES', 'Job',
    'Plan', 'metafile_models', 'paper_top1', 'table_configs', 'check_seeds',
    'check_scalekd_config', 'baseline_configs', 'plan_jobs', 'read_plan',
    'write_plan', 'job_fingerprint', 'job_result', 'train_arguments',
    'test_arguments', 'run_job',
    'job_command', 'slurm_script', 'array_ranges', 'dataset_images',
    'schedule_images', 'job_cost', 'estimate_costs', 'render_costs'
]

TABLES = ('advanced', 'traditional', 'ablations')
METHODS = ('alone', 'logit_kd', 'scalekd')
METHOD_TITLES = dict(alone='student alone', logit_kd='logit KD',
                     scalekd='ScaleKD')
# The train step of tools/analysis/benchmark.py that each method runs.
VARIANT_OF = dict(alone='student', logit_kd='logit_kd', scalekd='scalekd')
# ImageNet-1k's training split (ILSVRC 2012).
IMAGENET_TRAIN_IMAGES = 1_281_167

PLAN = 'jobs.json'
RESULT = 'result.json'
# The fingerprint of the config a job folder was trained with.
JOB_CONFIG = 'job_config.sha256'
PREDICTIONS = 'preds.pkl'


@dataclass
class Job:
    """One training run of the plan: a config at a seed."""
    index: int
    name: str  # the config's file name without .py
    config: str  # absolute path
    method: str  # one of METHODS
    seed: int
    work_dir: str
    fingerprint: str
    options: List[str] = field(default_factory=list)  # --cfg-options
    rows: List[str] = field(default_factory=list)  # ScaleKD configs served
    source: str = ''  # the ScaleKD config the train step is measured on


@dataclass
class Plan:
    """Every job of a work root, and the ScaleKD configs (rows) they serve."""
    work_root: str
    jobs: List[Job]
    rows: Dict[str, dict]  # ScaleKD config name -> config path, paper figures

    def job(self, index: int) -> Job:
        if not 0 <= index < len(self.jobs):
            raise KeyError(
                f'`--run-job {index}`: {osp.join(self.work_root, PLAN)} '
                f'plans jobs 0..{len(self.jobs) - 1}; give one of those '
                f'indices (jobs.txt lists them).')
        return self.jobs[index]


def _name(path: str) -> str:
    return osp.splitext(osp.basename(path))[0]


def metafile_models(path: Optional[str] = None) -> List[dict]:
    """The ``Models`` of configs/scalekd/metafile.yml."""
    with open(path or shipped_file('scalekd', 'metafile.yml')) as f:
        return yaml.safe_load(f)['Models']


def paper_top1(model: dict) -> Optional[float]:
    for result in model.get('Results') or []:
        value = result.get('Metrics', {}).get('Paper Top 1 Accuracy')
        if value is not None:
            return float(value)
    return None


def table_configs(table: str, models: Optional[List[dict]] = None
                  ) -> List[str]:
    """The configs of a named set, from the metafile: ``advanced`` and
    ``traditional`` are the ``scalekd_*`` configs of that ``Strategy``,
    ``ablations`` the ``scalekd-*`` and ``fd_*`` configs."""
    if table not in TABLES:
        raise KeyError(
            f'`--table {table}` is no named set; the sets are '
            f'{", ".join(TABLES)} (configs/scalekd/metafile.yml), or give '
            'the config files themselves.')
    models = metafile_models() if models is None else models
    chosen = []
    for model in models:
        name, strategy = model['Name'], model['Metadata'].get('Strategy')
        if table == 'ablations':
            if name.startswith(('scalekd-', 'fd_')):
                chosen.append(model)
        elif name.startswith('scalekd_') and strategy == table:
            chosen.append(model)
    root = osp.dirname(osp.dirname(osp.dirname(
        shipped_file('scalekd', 'metafile.yml'))))
    return [osp.join(root, m['Config']) for m in chosen]


def check_seeds(seeds: Sequence[int]) -> None:
    repeated = sorted({s for s in seeds if list(seeds).count(s) > 1})
    if repeated:
        raise ValueError(
            f'`--seeds {" ".join(map(str, seeds))}` repeats seed(s) '
            f'{", ".join(map(str, repeated))}: a seed trains the same run '
            'again, and the spread across seeds needs distinct ones; give '
            'each once (`--seeds 0 1 2`).')
    if not seeds:
        raise ValueError('`--seeds` gives no seed; give at least one '
                         '(`--seeds 0 1 2`).')


def check_scalekd_config(cfg, path: str) -> None:
    if not is_scalekd_config(cfg):
        raise ValueError(
            f'{path} is not a ScaleKD distillation config: `model.type` must '
            "be 'ScaleKDDistiller' with a `model.perception_stage` or "
            '`model.final_stage`. The table trains each ScaleKD config '
            'beside its student alone and logit KD, so give the ScaleKD '
            'config (e.g. configs/scalekd/scalekd_swin-l_resnet50_8xb32_'
            'in1k.py), not a baseline.')


def baseline_configs(path: str) -> Dict[str, Optional[str]]:
    """The shipped student-alone and logit-KD configs beside a ScaleKD
    config, by name: ``scalekd[-ablation]_<teacher>_<rest>.py`` goes with
    ``logit-kd_<teacher>_<rest>.py`` and ``student_<rest>.py`` (the
    config builder's ``scalekd_<name>.py`` with ``student_<name>.py``);
    None where the folder has none."""
    folder, name = osp.dirname(path), _name(path)
    _, _, rest = name.partition('_')
    _, _, student_rest = rest.partition('_')

    def existing(*names):
        for candidate in names:
            file = osp.join(folder, candidate + '.py')
            if candidate and osp.isfile(file):
                return osp.abspath(file)
        return None

    return dict(
        alone=existing(*(['student_' + student_rest] if student_rest else [])
                       + ['student_' + rest]),
        logit_kd=existing('logit-kd_' + rest))


def _seed_options(seed: int, options: Sequence[str]) -> List[str]:
    return [f'randomness.seed={seed}', *options]


def _options_dict(options: Sequence[str]) -> dict:
    import argparse

    from mmscalekd.utils.command_line import dict_options
    return dict_options(argparse.Namespace(o=list(options)), 'o').o or {}


def job_fingerprint(config: str, seed: int,
                    options: Sequence[str] = ()) -> str:
    """What a job trains: the hash of its config file's settings with its
    seed and ``--cfg-options``."""
    cfg = Config.fromfile(config)
    cfg.merge_from_dict(_options_dict(_seed_options(seed, options)))
    return fingerprint(cfg)


def _derive(cfg, method: str, path: str) -> str:
    """Write the ``method`` baseline of a ScaleKD config to ``path``, as the
    sweep derives it; the seed is left to the job."""
    derived = run_config(cfg, Run(method, 0))
    if cfg.get('randomness') is not None:
        derived.randomness = copy.deepcopy(cfg.randomness)
    else:
        derived.pop('randomness')
    derived.dump(path)
    return path


def read_plan(work_root: str) -> Optional[Plan]:
    path = osp.join(work_root, PLAN)
    if not osp.isfile(path):
        return None
    with open(path) as f:
        data = json.load(f)
    return Plan(work_root, [Job(**job) for job in data['jobs']],
                data['rows'])


def _job_folder_fingerprint(work_dir: str) -> Optional[str]:
    path = osp.join(work_dir, JOB_CONFIG)
    if not osp.isfile(path):
        return None
    with open(path) as f:
        return f.read().strip()


def plan_jobs(configs: Sequence[str], seeds: Sequence[int], work_root: str,
              options: Sequence[str] = (),
              models: Optional[List[dict]] = None) -> Tuple[Plan, List[int]]:
    """The plan of ``configs`` x ``seeds`` in ``work_root``, merged into the
    plan already there, and the indices of this selection's jobs.

    Derived baselines are written to ``work_root/configs/``. A job folder
    that was planned or trained with another config than this plan's
    refuses the plan, before anything is written.
    """
    check_seeds(seeds)
    work_root = osp.abspath(work_root)
    models = metafile_models() if models is None else models
    papers = {m['Name']: paper_top1(m) for m in models}
    old = read_plan(work_root) or Plan(work_root, [], {})
    jobs = {(j.name, j.seed): j for j in old.jobs}
    order = [(j.name, j.seed) for j in old.jobs]
    rows = dict(old.rows)
    selected, conflicts, derived, fingerprints = [], [], {}, {}
    staging = tempfile.mkdtemp(prefix='.configs-', dir=_made(work_root))
    try:
        for config in configs:
            config = osp.abspath(config)
            cfg = Config.fromfile(config)
            check_scalekd_config(cfg, config)
            name = _name(config)
            sources = baseline_configs(config)
            sources['scalekd'] = config
            for method in ('alone', 'logit_kd'):
                if sources[method] is None:
                    suffix = dict(alone='alone', logit_kd='logit-kd')[method]
                    file = f'{name}_{suffix}.py'
                    sources[method] = _derive(cfg, method,
                                              osp.join(staging, file))
                    derived[sources[method]] = osp.join(
                        work_root, 'configs', file)
            final = {m: derived.get(p, p) for m, p in sources.items()}
            rows[name] = dict(
                config=config,
                configs={m: _name(p) for m, p in final.items()},
                paper=dict(scalekd=papers.get(name),
                           alone=papers.get(_name(final['alone']))))
            for seed in seeds:
                for method in METHODS:
                    job_name = _name(final[method])
                    key = (job_name, seed)
                    if (sources[method], seed) not in fingerprints:
                        fingerprints[sources[method], seed] = \
                            job_fingerprint(sources[method], seed, options)
                    planned = fingerprints[sources[method], seed]
                    work_dir = osp.join(work_root, job_name, f'seed{seed}')
                    job = jobs.get(key)
                    trained = _job_folder_fingerprint(work_dir)
                    if (job is not None and
                            job.fingerprint != planned) or (
                                trained not in (None, planned)):
                        conflicts.append(work_dir)
                        continue
                    if job is None:
                        job = Job(len(order), job_name, final[method],
                                  method, seed, work_dir, planned,
                                  list(options), [], config)
                        jobs[key] = job
                        order.append(key)
                    if name not in job.rows:
                        job.rows.append(name)
                    if job.index not in selected:
                        selected.append(job.index)
        if conflicts:
            raise ValueError(
                f'{work_root} holds jobs of another plan: '
                f'{", ".join(sorted(set(conflicts)))} '
                f'{"was" if len(set(conflicts)) == 1 else "were"} planned or '
                'trained with another config (a changed config file or '
                '--cfg-options), and their checkpoints would be resumed '
                'under this one. Give this plan its own `--work-root`, or '
                f'remove those job folders and {osp.join(work_root, PLAN)} '
                '(the plan, made anew) to train them anew here.')
        for staged, final_path in derived.items():
            os.makedirs(osp.dirname(final_path), exist_ok=True)
            os.replace(staged, final_path)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return Plan(work_root, [jobs[key] for key in order], rows), selected


def _made(folder: str) -> str:
    os.makedirs(folder, exist_ok=True)
    return folder


def write_plan(plan: Plan) -> None:
    """``jobs.json`` (read by every job and by the collection) and
    ``jobs.txt`` (one line per job, by index)."""
    write_json(osp.join(plan.work_root, PLAN),
               dict(jobs=[asdict(j) for j in plan.jobs], rows=plan.rows))
    rows = [[j.index, j.name, METHOD_TITLES[j.method], j.seed,
             'done' if job_result(j) else '', j.work_dir]
            for j in plan.jobs]
    with open(osp.join(plan.work_root, 'jobs.txt'), 'w') as f:
        f.write(format_table(['index', 'config', 'method', 'seed', 'status',
                              'work dir'], rows) + '\n')


def job_result(job: Job) -> Optional[dict]:
    """The ``result.json`` of a finished job, or None (none yet, or one of
    another config)."""
    path = osp.join(job.work_dir, RESULT)
    if not osp.isfile(path):
        return None
    with open(path) as f:
        result = json.load(f)
    return result if result.get('fingerprint') == job.fingerprint else None


def train_arguments(job: Job, launcher: str) -> List[str]:
    """``tools/train.py`` arguments of a job: its own work dir, resumed
    from its newest checkpoint."""
    return [job.config, '--work-dir', job.work_dir, '--resume',
            '--launcher', launcher, '--cfg-options',
            *_seed_options(job.seed, job.options)]


def test_arguments(job: Job, checkpoint: str, launcher: str) -> List[str]:
    """``tools/test.py`` arguments of a job: its last checkpoint, the
    predictions that the collection reads."""
    return [job.config, checkpoint, '--work-dir', job.work_dir, '--out',
            osp.join(job.work_dir, PREDICTIONS), '--launcher', launcher,
            '--cfg-options', *_seed_options(job.seed, job.options),
            f'experiment_name={job.name}_seed{job.seed}_test']


def run_job(work_root: str, index: int, train: Callable[[List[str]], None],
            test: Callable[[List[str]], Optional[dict]],
            launcher: str = 'none', print_fn=print) -> dict:
    """Run job ``index`` of the plan in ``work_root``: train (resumed),
    test the last checkpoint, write ``result.json``. A finished job is
    skipped. ``train`` and ``test`` run ``tools/train.py`` and
    ``tools/test.py`` with the given arguments (test returns its metrics).
    """
    from mmengine.dist import get_rank

    from mmscalekd.engine.training_checkpoint import find_latest_checkpoint
    from .statistics import accuracy, load_predictions
    plan = read_plan(work_root)
    if plan is None:
        raise FileNotFoundError(
            f'{work_root} has no {PLAN}: plan the jobs first '
            '(tools/reproduce.py --table NAME or CONFIG ... --work-root '
            f'{work_root}).')
    job = plan.job(index)
    done = job_result(job)
    if done is not None:
        print_fn(f'[reproduce] job {index} ({job.name} seed {job.seed}) is '
                 f'done: top-1 {done["accuracy"]:.2f}%; skipped.')
        return done
    if job_fingerprint(job.config, job.seed, job.options) != job.fingerprint:
        raise ValueError(
            f'The config of job {index}, {job.config}, has changed since the '
            f'plan in {osp.join(work_root, PLAN)} was made: its checkpoints '
            'and the other seeds would mix two configs. Plan again in a new '
            '`--work-root` (or restore the file).')
    os.makedirs(job.work_dir, exist_ok=True)
    if get_rank() == 0:
        with open(osp.join(job.work_dir, JOB_CONFIG), 'w') as f:
            f.write(job.fingerprint + '\n')
    print_fn(f'[reproduce] job {index}: {job.name} seed {job.seed} in '
             f'{job.work_dir}', flush=True)
    train(train_arguments(job, launcher))
    checkpoint = find_latest_checkpoint(job.work_dir)
    metrics = test(test_arguments(job, checkpoint, launcher)) or {}
    preds = osp.join(job.work_dir, PREDICTIONS)
    result = dict(index=index, name=job.name, method=job.method,
                  seed=job.seed, config=job.config,
                  fingerprint=job.fingerprint, checkpoint=checkpoint,
                  preds=preds, metrics={k: float(v)
                                        for k, v in metrics.items()})
    if get_rank() == 0:
        result['accuracy'] = accuracy(load_predictions(preds).correct)
        write_json(osp.join(job.work_dir, RESULT), result)
        print_fn(f'[reproduce] job {index} done: top-1 '
                 f'{result["accuracy"]:.2f}%', flush=True)
    return result


def job_command(tool: str, work_root: str, index: int, gpus: int,
                python: str = sys.executable) -> str:
    """The command line of one job: plain python on one GPU, torchrun with
    one process per GPU on several."""
    args = [tool, '--run-job', str(index), '--work-root', work_root]
    if gpus > 1:
        words = ['torchrun', f'--nproc_per_node={gpus}', *args,
                 '--job-launcher', 'pytorch']
    else:
        words = [python, '-u', *args]
    return ' '.join(map(shlex.quote, words))


def array_ranges(indices: Sequence[int]) -> str:
    """``[0, 1, 2, 5, 7, 8]`` -> ``'0-2,5,7-8'`` (sbatch --array)."""
    ranges, indices = [], sorted(indices)
    for i in indices:
        if ranges and ranges[-1][1] == i - 1:
            ranges[-1][1] = i
        else:
            ranges.append([i, i])
    return ','.join(f'{a}' if a == b else f'{a}-{b}' for a, b in ranges)


def slurm_script(tool: str, work_root: str, indices: Sequence[int],
                 gpus: int, partition: str, gpus_per_node: int = 8,
                 cpus_per_gpu: int = 5, python: str = sys.executable) -> str:
    """An array job, one task per job index; a task that is pre-empted is
    requeued and its job resumes from its newest checkpoint. Outside slurm
    (no ``srun`` or no ``SLURM_JOB_ID``) the task runs the job's own command
    line, for a machine of one's own."""
    per_node = min(gpus, gpus_per_node)
    nodes = math.ceil(gpus / per_node)
    job = [python, '-u', tool, '--run-job', '"$JOB"', '--work-root',
           work_root]
    quoted = ' '.join(w if w == '"$JOB"' else shlex.quote(w) for w in job)
    local = job_command(tool, work_root, 0, gpus, python).replace(
        "--run-job 0", '--run-job "$JOB"')
    launcher = 'slurm' if gpus > 1 else 'none'
    return f'''#!/usr/bin/env bash
#SBATCH --job-name=reproduce
#SBATCH --partition={partition}
#SBATCH --array={array_ranges(indices)}
#SBATCH --nodes={nodes}
#SBATCH --ntasks-per-node={per_node}
#SBATCH --gres=gpu:{per_node}
#SBATCH --cpus-per-task={cpus_per_gpu}
#SBATCH --requeue
#SBATCH --open-mode=append
#SBATCH --output={work_root}/slurm/%A_%a.out
# One array task per job of {work_root}/jobs.txt (by index). A task that is
# pre-empted is requeued; its job resumes from the newest checkpoint of its
# own work dir, and a job that is done is skipped.
JOB=${{SLURM_ARRAY_TASK_ID:?a job index of jobs.txt}}
export OMP_NUM_THREADS=${{SLURM_CPUS_PER_TASK:-1}}
if [ -n "${{SLURM_JOB_ID:-}}" ] && command -v srun >/dev/null 2>&1; then
    srun --kill-on-bad-exit=1 {quoted} --job-launcher {launcher}
else
    {local}
fi
'''


def dataset_images(dataset: dict) -> Tuple[Optional[int], str]:
    """How many images a dataset config holds, and where that comes from:
    the lines of its annotation file where it exists (``ann_file``, or
    ``meta/<split>.txt`` of an ``ImageNet`` with a ``split``), a synthetic
    dataset's ``num_samples``, else ImageNet-1k's training split for an
    ``ImageNet`` train set; None where none of these says."""
    dataset = dict(dataset or {})
    kind = str(dataset.get('type', '')).split('.')[-1]
    root = dataset.get('data_root') or ''
    ann_file = dataset.get('ann_file') or ''
    split = dataset.get('split') or ''
    if not ann_file and split and kind == 'ImageNet':
        ann_file = osp.join('meta', f'{split}.txt')
    count, how = None, None
    if ann_file:
        path = ann_file if osp.isabs(ann_file) or not root else osp.join(
            root, ann_file)
        if osp.isfile(path):
            with open(path) as f:
                count = sum(1 for line in f if line.strip())
            how = f'the lines of {path}'
    if count is None and isinstance(dataset.get('num_samples'), int):
        count, how = dataset['num_samples'], '`num_samples`'
    if count is None and kind == 'ImageNet' and (
            split == 'train' or 'train' in osp.basename(ann_file)):
        count, how = IMAGENET_TRAIN_IMAGES, 'ImageNet-1k train'
    if count is None:
        return None, (f'unknown: a {kind or "dataset"} without an '
                      'annotation file here')
    indices = dataset.get('indices')
    if isinstance(indices, int):
        count = min(count, indices)
    elif isinstance(indices, (list, tuple)):
        count = len(indices)
    return count, how


def schedule_images(cfg, gpus: int) -> Tuple[Optional[int], str]:
    """The images one training run goes through: epochs x dataset size for
    an epoch-based schedule, iterations x batch per GPU x GPUs for an
    iteration-based one; None (with why) where the size is unknown."""
    train_cfg = cfg.get('train_cfg') or {}
    if train_cfg.get('max_iters') is not None and \
            train_cfg.get('max_epochs') is None:
        batch = cfg.train_dataloader.batch_size
        return (train_cfg.max_iters * batch * gpus,
                f'{train_cfg.max_iters} iterations x {batch} x {gpus} GPUs')
    epochs = train_cfg.get('max_epochs')
    count, how = dataset_images(cfg.train_dataloader.get('dataset'))
    if count is None or epochs is None:
        return None, how
    return epochs * count, f'{epochs} epochs x {count:,} images ({how})'


def job_cost(images_per_s: float, images: int, gpus: int) -> dict:
    """GPU-hours of a run at ``images_per_s`` per GPU, and its wall-clock
    hours on ``gpus`` GPUs (the same rate on each: data-parallel training
    with no loss to communication)."""
    gpu_hours = images / images_per_s / 3600
    return dict(gpu_hours=gpu_hours, wall_hours=gpu_hours / gpus)


def estimate_costs(plan: Plan, indices: Sequence[int], gpus: int,
                   device: str = 'cpu', steps: int = 3,
                   batch_size: Optional[int] = None,
                   measure: Optional[Callable[..., dict]] = None,
                   progress=print) -> dict:
    """The cost of the jobs ``indices``: each method's train step measured
    once per ScaleKD config (:func:`~.step_cost.measure_variant`, the
    measurement of tools/analysis/benchmark.py) at the config's batch per
    GPU (or ``batch_size``), times the images of its schedule."""
    from .timing import machine_info
    if measure is None:
        from .step_cost import measure_variant as measure
    measured, rows = {}, []
    for index in indices:
        job = plan.jobs[index]
        cfg = Config.fromfile(job.config)
        cfg.merge_from_dict(_options_dict(job.options))
        key = (job.source, VARIANT_OF[job.method])
        if key not in measured:
            batch = batch_size or cfg.train_dataloader.batch_size
            progress(f'[reproduce] measuring {METHOD_TITLES[job.method]} of '
                     f'{_name(job.source)}: {steps} steps of {batch} images '
                     f'on {device}', flush=True)
            with _quiet_logger():
                result = measure(job.source, key[1],
                                 _options_dict(job.options),
                                 batch_size=batch, device=device, warmup=1,
                                 iters=steps)
            measured[key] = dict(
                images_per_s=result['images_per_s'], batch_size=batch,
                peak_cuda_bytes=result.get('peak_cuda_allocated_bytes'))
        images, how = schedule_images(cfg, gpus)
        row = dict(index=index, name=job.name, method=job.method,
                   seed=job.seed, images=images, schedule=how,
                   **measured[key])
        if images is not None:
            row.update(job_cost(row['images_per_s'], images, gpus))
        rows.append(row)
    known = [r for r in rows if 'gpu_hours' in r]
    return dict(device=device, machine=machine_info(device), gpus=gpus,
                steps=steps, jobs=rows,
                total_gpu_hours=sum(r['gpu_hours'] for r in known),
                unknown=[r['index'] for r in rows if 'gpu_hours' not in r])


@contextlib.contextmanager
def _quiet_logger():
    """mmengine's current logger at WARNING: building a model logs every
    initialised weight."""
    from mmengine.logging import MMLogger
    logger = MMLogger.get_current_instance()
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(level)


def render_costs(costs: dict) -> str:
    machine = costs['machine']
    where = machine.get('gpu') or machine['cpu']
    lines = [
        f'Cost estimate: each train step measured on {costs["device"]} '
        f'({where}), {costs["steps"]} timed steps after one warm-up; '
        f'GPU-hours = images of the schedule / measured img/s / 3600, '
        f'wall-clock = GPU-hours / {costs["gpus"]} GPUs per job.'
    ]
    if costs['device'] == 'cpu':
        lines.append('Measured on the CPU: a GPU trains many times faster; '
                     'measure on the cluster\'s GPU (`--estimate-device '
                     'cuda`) for its figures.')
    lines.append(format_table(
        ['job', 'config', 'method', 'seed', 'img/s', 'images', 'GPU-h',
         'wall-h', 'peak GPU GB'],
        [[r['index'], r['name'], METHOD_TITLES[r['method']], r['seed'],
          f'{r["images_per_s"]:.1f}',
          f'{r["images"]:,}' if r['images'] is not None else 'unknown',
          f'{r["gpu_hours"]:.3g}' if 'gpu_hours' in r else '?',
          f'{r["wall_hours"]:.3g}' if 'wall_hours' in r else '?',
          '' if r['peak_cuda_bytes'] is None else
          f'{r["peak_cuda_bytes"] / 1e9:.3g}'] for r in costs['jobs']]))
    lines.append(f'Total: {costs["total_gpu_hours"]:.3g} GPU-hours')
    for r in costs['jobs']:
        if 'gpu_hours' not in r:
            lines.append(f'job {r["index"]} ({r["name"]}): dataset size '
                         f'{r["schedule"]}; not estimated')
    return '\n'.join(lines)
