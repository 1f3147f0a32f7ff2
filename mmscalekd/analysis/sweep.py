"""Does ScaleKD help on this data, and with which weights? A sweep.

From one ScaleKD distillation config the sweep derives the student alone
(``model.student`` with the same recipe and data) and logit KD (the
distiller without its two stages), and trains them and ScaleKD over a grid
of settings, times seeds, on a shortened schedule and a subset of the
training images. Each run lives in its own folder of the work dir and is
finished once its ``result.json`` is written, so a sweep that is stopped and
started again with the same arguments trains only what is unfinished (an
unfinished run resumes from its newest checkpoint). A run trained with other
arguments (its config's hash differs) counts as unfinished and starts anew.

Settings are chosen on the config's validation split; the verdict is given
on its test split, which must be other data (:func:`check_held_out`).
``tools/analysis/sweep.py`` is the command line; :mod:`.sweep_report` writes
the report.
"""
import copy
import hashlib
import json
import os
import os.path as osp
import shutil
import time
from dataclasses import dataclass, field
from itertools import product
from typing import Dict, List, Optional, Sequence, Union

__all__ = [
    'GRID_KEYS', 'PRESETS', 'Run', 'check_distillation_config',
    'check_grid_fits', 'check_held_out', 'check_seeds', 'is_scalekd_config',
    'fingerprint', 'parse_grid', 'plan_runs', 'prepared_config',
    'preset_grid', 'run_config', 'train_run', 'train_and_test',
    'read_result', 'unfinished', 'run_sweep', 'write_json'
]

# Grid key -> where it goes: a key of every stage's `loss` or `projector`,
# or of `model.logit_kd`.
GRID_KEYS = {
    'spatial_weight': ('stage', 'loss'),
    'frequency_weight': ('stage', 'loss'),
    'softmax_scale': ('stage', 'projector'),
    'tau': ('logit_kd', None),
    'alpha': ('logit_kd', None),
}
STAGES = ('perception_stage', 'final_stage')

# Named grids: key -> factors on the config's own value, so that a preset
# fits any config's released weights.
PRESETS = {
    'weights': dict(
        help='spatial and frequency loss weights at 0.5x, 1x and 2x the '
        "config's (9 settings)",
        factors=dict(spatial_weight=(0.5, 1, 2),
                     frequency_weight=(0.5, 1, 2))),
    'kd': dict(
        help="logit KD temperature tau at 1x, 2x and 4x and alpha at 0.5x "
        "and 1x the config's (6 settings)",
        factors=dict(tau=(1, 2, 4), alpha=(0.5, 1))),
    'attention': dict(
        help="projector softmax scale at 0.5x, 1x and 2x the config's (3 "
        'settings)',
        factors=dict(softmax_scale=(0.5, 1, 2))),
}


@dataclass
class Run:
    """One training run of the sweep."""
    method: str  # 'alone', 'logit_kd' or 'scalekd'
    seed: int
    setting: Dict[str, float] = field(default_factory=dict)

    @property
    def label(self) -> str:
        """How the report calls the method (with its setting)."""
        if self.method != 'scalekd':
            return self.method
        return 'scalekd ' + ' '.join(f'{k}={v:g}'
                                     for k, v in self.setting.items())

    @property
    def name(self) -> str:
        """The run's folder in the work dir."""
        parts = [self.method] + [f'{k}-{v:g}' for k, v in self.setting.items()]
        return '_'.join(parts + [f'seed{self.seed}'])


def _is_distiller(cfg) -> bool:
    model = cfg.get('model') or {}
    return str(model.get('type', '')).split('.')[-1] == 'ScaleKDDistiller'


def _stages(cfg) -> List[str]:
    return [s for s in STAGES if cfg.model.get(s) is not None]


def is_scalekd_config(cfg) -> bool:
    """Whether ``cfg`` trains a ScaleKD distiller with at least one
    feature stage (not the student alone, not logit KD alone)."""
    return _is_distiller(cfg) and bool(_stages(cfg))


def check_distillation_config(cfg, path: str) -> None:
    """The sweep needs a ScaleKD distiller with at least one stage."""
    if not is_scalekd_config(cfg):
        raise ValueError(
            f'{path} is not a ScaleKD distillation config: `model.type` must '
            "be 'ScaleKDDistiller' with a `model.perception_stage` or "
            '`model.final_stage` (the sweep derives the student alone and '
            'logit KD from it); pass a config such as '
            'configs/quickstart/mixer-tiny_digits_scalekd.py.')


def parse_grid(items: Sequence[str]) -> Dict[str, List[float]]:
    """``['spatial_weight=0.04,0.08', ...]`` -> key -> values."""
    grid = {}
    for item in items:
        key, _, values = item.partition('=')
        key = key.strip()
        if key not in GRID_KEYS:
            raise KeyError(
                f'`--grid {item}`: unknown grid key {key!r}; the keys are '
                f'{", ".join(GRID_KEYS)} (e.g. `--grid '
                'spatial_weight=0.04,0.08`).')
        values = [v for v in values.split(',') if v.strip()]
        if not values:
            raise ValueError(
                f'`--grid {item}` gives {key} no values: list them after '
                f'the `=`, comma-separated (`--grid {key}=0.04,0.08`).')
        try:
            grid[key] = [float(v) for v in values]
        except ValueError:
            raise ValueError(
                f'`--grid {item}`: the values of {key} must be numbers, '
                f'comma-separated (`--grid {key}=0.04,0.08`).') from None
    if not grid:
        raise ValueError(
            'The grid is empty: give `--grid KEY=V1,V2 ...` (keys: '
            f'{", ".join(GRID_KEYS)}) or `--preset` '
            f'({", ".join(PRESETS)}).')
    return grid


def _config_value(cfg, key: str):
    """The config's value of a grid key (that of the first stage)."""
    where, part = GRID_KEYS[key]
    if where == 'logit_kd':
        return cfg.model.logit_kd.get(key)
    return cfg.model[_stages(cfg)[0]][part].get(key)


def check_grid_fits(cfg, grid: Dict[str, list]) -> None:
    if cfg.model.get('logit_kd') is None:
        kd_keys = [k for k in grid if GRID_KEYS[k][0] == 'logit_kd']
        if kd_keys:
            raise ValueError(
                f'The grid sets {", ".join(kd_keys)}, keys of '
                '`model.logit_kd`, but this config has `model.logit_kd='
                'None`: drop them from the grid, or sweep a config with '
                'logit KD.')


def preset_grid(cfg, name: str) -> Dict[str, List[float]]:
    """The grid of preset ``name`` for this config's values."""
    grid = {}
    for key, factors in PRESETS[name]['factors'].items():
        value = _config_value(cfg, key)
        if value is None:
            value = _DEFAULTS[key]
        grid[key] = [round(value * f, 10) for f in factors]
    return grid


# The defaults of DualViewFeatureLoss, CrossAttentionProjector and
# LogitKDLoss, for a config that leaves a preset's key out.
_DEFAULTS = dict(spatial_weight=1.0, frequency_weight=1.0, softmax_scale=5.0,
                 tau=1.0, alpha=0.5)


def check_seeds(seeds: Sequence[int]) -> None:
    """A verdict across seeds (Welch's test) needs two seeds or more."""
    if len(set(seeds)) < 2:
        raise ValueError(
            f'`--seeds {" ".join(map(str, seeds))}` gives one seed; the '
            'verdict compares the spread across seeds and needs at least '
            'two (`--seeds 0 1`).')


def _data_of(loader) -> dict:
    """What decides a dataloader's images: its dataset, without the
    pipeline."""
    dataset = copy.deepcopy(dict(loader.get('dataset') or {}))
    dataset.pop('pipeline', None)
    return dataset


def check_held_out(cfg) -> None:
    """Settings are chosen on ``val_dataloader``; the verdict on
    ``test_dataloader`` needs images that nothing was chosen on."""
    val, test = cfg.get('val_dataloader'), cfg.get('test_dataloader')
    if not test:
        raise ValueError(
            'The config has no `test_dataloader`: the sweep chooses on '
            '`val_dataloader` and gives its verdict on a held-out '
            '`test_dataloader`; add one.')
    if val and _data_of(val) == _data_of(test):
        raise ValueError(
            '`test_dataloader.dataset` is the same data as '
            '`val_dataloader.dataset`: settings chosen on the validation '
            'split would be judged on it again. Point '
            '`test_dataloader.dataset.ann_file` at a held-out split (for '
            'the digits: `tools/dataset_converters/prepare_digits.py '
            '--test-fraction 0.2` writes meta/test.txt; then '
            '`--cfg-options test_dataloader.dataset.ann_file=meta/test.txt`).')


def plan_runs(grid: Dict[str, List[float]], seeds: Sequence[int]) -> List[Run]:
    """Every run: per seed, the student alone, logit KD, and ScaleKD at each
    setting of the grid (the product of its values)."""
    settings = [dict(zip(grid, values)) for values in product(*grid.values())]
    runs = []
    for seed in seeds:
        runs += [Run('alone', seed), Run('logit_kd', seed)]
        runs += [Run('scalekd', seed, setting) for setting in settings]
    return runs


def apply_setting(cfg, setting: Dict[str, float]) -> None:
    """Put a grid setting into a distiller config, in place."""
    for key, value in setting.items():
        where, part = GRID_KEYS[key]
        if where == 'logit_kd':
            cfg.model.logit_kd[key] = value
        else:
            for stage in _stages(cfg):
                cfg.model[stage][part][key] = value


def run_config(cfg, run: Run):
    """The config of one run (full schedule), from the distiller's."""
    cfg = copy.deepcopy(cfg)
    if run.method == 'alone':
        student = copy.deepcopy(cfg.model.student)
        if cfg.model.get('data_preprocessor') is not None and \
                student.get('data_preprocessor') is None:
            student.data_preprocessor = cfg.model.data_preprocessor
        cfg.model = student
    elif run.method == 'logit_kd':
        for stage in STAGES:
            cfg.model[stage] = None
    else:
        apply_setting(cfg, run.setting)
    cfg.randomness = dict(seed=run.seed, deterministic=False)
    return cfg


def shorten(cfg, epochs: int) -> None:
    """Train for ``epochs`` with the same schedule shape and no validation
    (:func:`train_run` evaluates the end)."""
    original = cfg.train_cfg.max_epochs
    cfg.train_cfg.max_epochs = epochs
    cfg.train_cfg.val_begin = epochs + 1
    for scheduler in cfg.get('param_scheduler') or []:
        for key in ('begin', 'end'):
            if key in scheduler:
                scheduler[key] = min(
                    epochs, int(round(scheduler[key] * epochs / original)))
        if scheduler.get('end', 1) <= scheduler.get('begin', 0):
            scheduler['end'] = scheduler['begin'] + 1


def subset_indices(cfg, subset: Union[int, float]) -> Optional[List[int]]:
    """The training images of the sweep: ``subset`` images (an int) or that
    share of them (a float in (0, 1)), drawn once with a fixed seed so that
    every run sees the same ones."""
    if subset is None:
        return None
    import numpy as np
    from mmpretrain.registry import DATASETS
    dataset = copy.deepcopy(cfg.train_dataloader.dataset)
    dataset.pop('indices', None)
    total = len(DATASETS.build(dataset))
    count = int(round(subset * total)) if isinstance(subset, float) \
        else subset
    if not 1 <= count <= total:
        raise ValueError(
            f'`--subset {subset}` gives {count} of the {total} training '
            f'images; give a number in 1..{total} or a fraction in (0, 1).')
    chosen = np.random.default_rng(0).choice(total, count, replace=False)
    return sorted(int(i) for i in chosen)


RESULT = 'result.json'


def prepared_config(cfg, run: Run, work_dir: str,
                    epochs: Optional[int] = None,
                    indices: Optional[List[int]] = None):
    """The config one run trains with: the run's model and seed, its own
    work dir (auto-resumed), the sweep's schedule and training images."""
    cfg = run_config(cfg, run)
    cfg.work_dir = osp.join(work_dir, run.name)
    cfg.experiment_name = run.name
    cfg.resume = True  # auto-resume: a requeued or re-run sweep continues
    cfg.load_from = None
    if epochs is not None:
        shorten(cfg, epochs)
    if indices is not None:
        cfg.train_dataloader.dataset.indices = indices
    return cfg


def fingerprint(cfg) -> str:
    """What a run's files were trained with: a hash of its whole config."""
    text = json.dumps(cfg.to_dict(), sort_keys=True, default=repr)
    return hashlib.sha256(text.encode()).hexdigest()


ARGUMENTS = 'sweep_config.sha256'


def _read(path: str) -> Optional[str]:
    if not osp.isfile(path):
        return None
    with open(path) as f:
        return f.read().strip()


def read_result(run_dir: str,
                expected: Optional[str] = None) -> Optional[dict]:
    """The final metrics of a finished run, or None; with ``expected`` (a
    :func:`fingerprint`), None as well when the run was trained with
    another config (other weights, epochs, images or options)."""
    path = osp.join(run_dir, RESULT)
    if not osp.isfile(path):
        return None
    if expected is not None and \
            _read(osp.join(run_dir, ARGUMENTS)) != expected:
        return None
    with open(path) as f:
        return json.load(f)


def write_json(path: str, data) -> None:
    # Written beside, then renamed: a killed run never leaves a result that
    # reads as finished.
    partial = path + '.partial'
    with open(partial, 'w') as f:
        json.dump(data, f, indent=2)
    os.replace(partial, path)


def train_run(cfg, run: Run, work_dir: str, epochs: Optional[int] = None,
              indices: Optional[List[int]] = None,
              verbose: bool = False) -> dict:
    """Train one run, evaluate it on the validation and the test split
    and write its ``result.json`` (:func:`train_and_test`). An earlier,
    unfinished attempt in the same folder is resumed."""
    start = time.time()
    cfg = prepared_config(cfg, run, work_dir, epochs, indices)
    result = dict(name=run.name, method=run.method, label=run.label,
                  seed=run.seed, setting=run.setting)
    return train_and_test(cfg, result, verbose, start)


def train_and_test(cfg, result: dict, verbose: bool = False,
                   start: Optional[float] = None) -> dict:
    """Train ``cfg`` in its ``work_dir``, evaluate it on the validation and
    the test split (``val_preds.pkl``, ``test_preds.pkl``) and write
    ``result`` with the accuracies and the time as its ``result.json``.

    An earlier, unfinished attempt with the same config is resumed
    (``cfg.resume`` is set); the files of one with another config go."""
    from mmengine.runner import TestLoop

    from mmscalekd.analysis.statistics import accuracy, load_predictions
    from mmscalekd.engine import run as run_method
    from mmscalekd.utils.command_line import build_runner

    start = time.time() if start is None else start
    cfg.resume = True
    run_dir = cfg.work_dir
    # Files of the same run trained with another config (another --epochs,
    # --subset, grid value or option) are not resumed from: they go.
    expected = fingerprint(cfg)
    if osp.isdir(run_dir) and _read(osp.join(run_dir, ARGUMENTS)) != expected:
        shutil.rmtree(run_dir)
    os.makedirs(run_dir, exist_ok=True)
    with open(osp.join(run_dir, ARGUMENTS), 'w') as f:
        f.write(expected + '\n')
    runner = build_runner(cfg, verbose)
    run_method(runner, cfg, 'train')
    # Evaluated in loops of their own, not by the validation of training:
    # there TeacherValHook evaluates the teacher with a copy of the
    # metrics, and a copied DumpResults would write the teacher's
    # predictions over the student's.
    preds = {}
    for split in ('val', 'test'):
        preds[split] = osp.join(run_dir, f'{split}_preds.pkl')
        metrics = cfg[f'{split}_evaluator']
        metrics = list(metrics) if isinstance(metrics, list) else [metrics]
        TestLoop(runner, cfg[f'{split}_dataloader'], metrics + [
            dict(type='DumpResults', out_file_path=preds[split])
        ]).run()
    result = dict(result)
    for split, path in preds.items():
        result[f'{split}_preds'] = path
        result[f'{split}_accuracy'] = accuracy(load_predictions(path).correct)
    with open(osp.join(run_dir, 'last_checkpoint')) as f:
        result['checkpoint'] = f.read().strip()
    result['seconds'] = time.time() - start
    write_json(osp.join(run_dir, RESULT), result)
    return result


def unfinished(cfg, runs: Sequence[Run], work_dir: str,
               epochs: Optional[int] = None,
               indices: Optional[List[int]] = None) -> List[Run]:
    """The runs without final metrics of this sweep's config."""
    return [
        r for r in runs if read_result(
            osp.join(work_dir, r.name),
            fingerprint(prepared_config(cfg, r, work_dir, epochs, indices)))
        is None
    ]


def _minutes(seconds: float) -> str:
    return f'{seconds / 60:.1f} min'


def run_sweep(cfg, runs: Sequence[Run], work_dir: str,
              epochs: Optional[int] = None,
              indices: Optional[List[int]] = None, verbose: bool = False,
              print_fn=print) -> List[dict]:
    """Train every unfinished run, one after another, with one progress line
    per run (the ETA is the mean duration of the runs trained so far times
    the runs left). Returns the results of all runs, in order."""
    todo = unfinished(cfg, runs, work_dir, epochs, indices)
    done = len(runs) - len(todo)
    if done:
        print_fn(f'[sweep] {done} of {len(runs)} runs already finished in '
                 f'{work_dir}; training the {len(todo)} others')
    durations = []
    for i, run in enumerate(todo):
        result = train_run(cfg, run, work_dir, epochs, indices, verbose)
        durations.append(result['seconds'])
        left = len(todo) - i - 1
        eta = sum(durations) / len(durations) * left
        print_fn(f'[sweep] run {done + i + 1}/{len(runs)} {run.label} seed '
                 f'{run.seed}: val {result["val_accuracy"]:.2f}%, '
                 f'{_minutes(result["seconds"])}; {left} left, ETA '
                 f'{_minutes(eta)}', flush=True)
    return [read_result(osp.join(work_dir, r.name)) for r in runs]
