"""The quick start: a small test of the paper's claim on the digits.

The claim (paper tables 2-4): a teacher pre-trained on more data than the
student can see transfers what it knows through ScaleKD, better than through
its logits alone, and the gain grows with the teacher's pre-training. Here:

1. The digits are split by source image (:mod:`mmscalekd.datasets.
   digits_pool`): a small labelled ``train`` split for the students, ``val``
   for every choice, ``test`` for the verdict, and a pool of deformed
   variants of the other images for the teachers.
2. One teacher per pool size (25 / 50 / 100% of the pool), each trained for
   the same number of steps.
3. The settings are chosen on ``val`` with the largest teacher and seed 0:
   logit KD's temperature and ScaleKD's feature-loss weights, each from two
   candidates (:data:`CHOICES`).
4. At each teacher size, the student is trained with logit KD and with
   ScaleKD over the seeds, and alone over the same seeds (once: it has no
   teacher).
5. :func:`write_report` compares them on ``test`` with the tests of
   ``tools/analysis/compare_students.py``.

Every run is a job with its own folder; a job is finished once its
``result.json`` is written (:func:`mmscalekd.analysis.sweep.train_and_test`),
so a quick start that was stopped and started again trains only what is
unfinished (a run cut short trains again from its start: the runs save
their weights only at their end). Jobs run in ``workers`` processes of one
thread each.
"""
import os
import os.path as osp
import sys
import time
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence

__all__ = [
    'CHOICES', 'Job', 'plan_jobs', 'job_config', 'run_jobs', 'chosen',
    'PROFILES'
]

TEACHER_CONFIG = 'vit-tiny-p2_digits-pool_teacher.py'
STUDENT_CONFIGS = {
    'alone': 'mixer-tiny-p2_digits-small_alone.py',
    'logit_kd': 'mixer-tiny-p2_digits-small_logit-kd.py',
    'scalekd': 'mixer-tiny-p2_digits-small_scalekd.py',
}
LABELS = {
    'alone': 'student alone',
    'logit_kd': 'logit KD',
    'scalekd': 'ScaleKD',
}

# The candidates chosen between on `val`, per method: name -> config keys.
# logit KD: the temperature of the released configs (1) or a softer one
# (4). ScaleKD: the feature weights released with the Swin teachers
# (0.08 / 0.06), or both at a fifth (0.016 / 0.012; the BEiT-L teachers'
# configs have that spatial weight and a frequency weight of 0.008,
# docs/method.md, section 5).
CHOICES = {
    'logit_kd': {
        'tau1': {'model.logit_kd.tau': 1.0},
        'tau4': {'model.logit_kd.tau': 4.0},
    },
    'scalekd': {
        'swin-weights': {},
        'fifth-weights': {
            f'model.{stage}.loss.{key}': value
            for stage in ('perception_stage', 'final_stage')
            for key, value in (('spatial_weight', 0.016),
                               ('frequency_weight', 0.012))
        },
    },
}

# How much is trained: the default and --fast.
PROFILES = {
    'default': dict(percents=(25, 50, 100), seeds=3, teacher_epochs=None,
                    student_epochs=None),
    'fast': dict(percents=(25, 100), seeds=2, teacher_epochs=8,
                 student_epochs=30),
}


@dataclass
class Job:
    """One training run of the quick start."""
    name: str
    kind: str  # 'teacher', 'alone', 'logit_kd' or 'scalekd'
    seed: int = 0
    percent: Optional[int] = None  # the teacher's pool
    candidate: Optional[str] = None  # a setting chosen between on val
    needs: List[str] = field(default_factory=list)

    @property
    def choosing(self) -> bool:
        return self.candidate is not None


def teacher_name(percent: int) -> str:
    return f'teacher_pool{percent}'


def plan_jobs(percents: Sequence[int], seeds: int) -> List[Job]:
    """Every job, in an order where each comes after the jobs it needs."""
    largest = max(percents)
    # The largest teacher first: the choices, which every later student
    # needs, wait for it alone.
    jobs = [
        Job(teacher_name(p), 'teacher', percent=p)
        for p in sorted(percents, reverse=True)
    ]
    jobs += [Job(f'alone_seed{s}', 'alone', seed=s) for s in range(seeds)]
    choice_jobs = {}
    for method, candidates in CHOICES.items():
        choice_jobs[method] = [
            Job(f'{method}_{c}_pool{largest}_seed0', method, 0, largest, c,
                [teacher_name(largest)]) for c in candidates
        ]
        jobs += choice_jobs[method]
    for percent in percents:
        for method in CHOICES:
            for seed in range(seeds):
                if percent == largest and seed == 0:
                    continue  # the chosen candidate's run
                jobs.append(
                    Job(f'{method}_pool{percent}_seed{seed}', method, seed,
                        percent, None, [teacher_name(percent)] +
                        [j.name for j in choice_jobs[method]]))
    return jobs


def chosen(method: str, results: Dict[str, dict]) -> str:
    """The candidate of ``method`` with the best val accuracy (the first
    listed on a tie)."""
    candidates = list(CHOICES[method])
    accuracies = {
        c: results[f'{method}_{c}_pool{largest_pool(results)}_seed0']
        ['val_accuracy']
        for c in candidates
    }
    return max(candidates, key=lambda c: (accuracies[c],
                                          -candidates.index(c)))


def largest_pool(results: Dict[str, dict]) -> int:
    """The pool size of the largest teacher among ``results``."""
    return max(r['percent'] for r in results.values()
               if r.get('kind') == 'teacher')


def job_config(job: Job, work_dir: str, data_root: str,
               results: Dict[str, dict], profile: dict):
    """The mmengine config of one job: its config file with the data root,
    seed, teacher pool or teacher checkpoint and setting it runs with."""
    from mmengine.config import Config

    from mmscalekd.config_builder.writer import shipped_file
    from .sweep import shorten
    kind = job.kind
    path = shipped_file('quickstart', TEACHER_CONFIG if kind == 'teacher'
                        else STUDENT_CONFIGS[kind])
    cfg = Config.fromfile(path)
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        cfg[loader].dataset.data_root = data_root
        cfg[loader].dataset.classes = osp.join(data_root, 'meta',
                                               'classes.txt')
    options = {}
    if kind == 'teacher':
        from mmscalekd.datasets.digits_pool import pool_file
        options['train_dataloader.dataset.ann_file'] = pool_file(job.percent)
        # The same number of steps for every pool: epochs x 100 / percent.
        epochs = profile['teacher_epochs'] or cfg.train_cfg.max_epochs
        epochs = int(round(epochs * 100 / job.percent))
    else:
        epochs = profile['student_epochs'] or cfg.train_cfg.max_epochs
        if kind != 'alone':
            options['model.teacher.checkpoint'] = results[teacher_name(
                job.percent)]['checkpoint']
            candidate = job.candidate or chosen(kind, results)
            options.update(CHOICES[kind][candidate])
    cfg.merge_from_dict(options)
    shorten(cfg, epochs)
    cfg.work_dir = osp.join(work_dir, job.name)
    cfg.experiment_name = job.name
    cfg.randomness = dict(seed=job.seed, deterministic=False)
    cfg.load_from = None
    cfg.resume = True  # as train_and_test runs it: the same fingerprint
    return cfg


def _limit_threads(threads: int) -> None:
    import torch
    torch.set_num_threads(threads)


def _run_job(job: Job, cfg_dict: dict, verbose: bool) -> dict:
    """Train one job in a worker process. Unless ``verbose``, what the run
    prints goes to ``<work dir>/logs/<job>.log``, not the console."""
    from mmengine.config import Config

    from .sweep import train_and_test
    cfg = Config(cfg_dict)
    result = dict(name=job.name, kind=job.kind, seed=job.seed,
                  percent=job.percent, candidate=job.candidate)
    if verbose:
        return train_and_test(cfg, result, verbose)
    logs = osp.join(osp.dirname(cfg.work_dir), 'logs')
    os.makedirs(logs, exist_ok=True)
    saved = [os.dup(1), os.dup(2)]
    with open(osp.join(logs, f'{job.name}.log'), 'a') as log:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
        try:
            return train_and_test(cfg, result, verbose)
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)


def _finished(cfg) -> Optional[dict]:
    from .sweep import fingerprint, read_result
    return read_result(cfg.work_dir, fingerprint(cfg))


def run_jobs(jobs: Sequence[Job],
             work_dir: str,
             data_root: str,
             profile: dict,
             workers: int = 2,
             threads: int = 1,
             verbose: bool = False,
             print_fn: Callable = print) -> Dict[str, dict]:
    """Run every unfinished job, ``workers`` at a time, each job once the
    jobs it needs are finished. Returns name -> result of every job."""
    import multiprocessing as mp
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    start = time.time()
    results: Dict[str, dict] = {}
    waiting = list(jobs)
    running = {}
    # Threads of the worker processes: fixed here, not left to the
    # machine's default (one per core each), which oversubscribes the cores
    # as soon as two processes, or another job, share them.
    os.environ['OMP_NUM_THREADS'] = str(threads)
    os.environ['MKL_NUM_THREADS'] = str(threads)
    pool = ProcessPoolExecutor(
        max_workers=workers, mp_context=mp.get_context('spawn'),
        initializer=_limit_threads, initargs=(threads, ))
    try:
        while waiting or running:
            for job in list(waiting):
                if len(running) >= workers:
                    break
                if any(n not in results for n in job.needs):
                    continue
                waiting.remove(job)
                cfg = job_config(job, work_dir, data_root, results, profile)
                done = _finished(cfg)
                if done is not None:
                    results[job.name] = done
                    print_fn(f'[quickstart] {job.name}: finished earlier '
                             f'(val {done["val_accuracy"]:.2f}%)')
                    continue
                running[pool.submit(_run_job, job, cfg.to_dict(),
                                    verbose)] = job
            if not running:
                continue
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in finished:
                job = running.pop(future)
                result = future.result()
                results[job.name] = result
                left = len(waiting) + len(running)
                print_fn(f'[quickstart] {job.name}: val '
                         f'{result["val_accuracy"]:.2f}%, '
                         f'{result["seconds"]:.0f} s; {left} jobs left '
                         f'({(time.time() - start) / 60:.1f} min)',
                         flush=True)
    finally:
        pool.shutdown(cancel_futures=True)
    return results
