"""The report of a sweep (:mod:`.sweep`): the setting chosen on the
validation split, compare_students' verdicts on the held-out test split,
a plot, and the recommended config.

Files written to the work dir: ``sweep.md``, ``sweep.json``,
``sweep_accuracy.png`` and ``recommended_<config stem>.py``.
"""
import json
import os.path as osp
import pprint
from typing import Dict, List, Optional, Sequence

import numpy as np

from .student_comparison import compare_students
from .tables import format_table

__all__ = ['sweep_report', 'write_recommended_config', 'write_sweep_report']

LABELS = {'alone': 'student alone', 'logit_kd': 'logit KD'}


def _label(method: str) -> str:
    return LABELS.get(method, method.replace('scalekd ', 'ScaleKD '))


def _by_method(results: Sequence[dict]) -> Dict[str, List[dict]]:
    """method label -> its results, ordered by seed (compare_students
    pairs files by position)."""
    methods = {}
    for result in sorted(results, key=lambda r: r['seed']):
        methods.setdefault(result['label'], []).append(result)
    return methods


def sweep_report(results: Sequence[dict], alpha: float = 0.05) -> dict:
    """Choose on val, judge on test.

    The ScaleKD setting with the best mean validation accuracy over seeds is
    the chosen one. On the test split every setting is compared with the
    student alone and with logit KD (``compare_students``: Welch's test
    across seeds decides); ``beats_both`` lists the settings that are
    significantly better than both.
    """
    methods = _by_method(results)
    settings = [m for m in methods if m.startswith('scalekd')]
    val_mean = {m: float(np.mean([r['val_accuracy'] for r in rs]))
                for m, rs in methods.items()}
    chosen = max(settings, key=lambda m: val_mean[m])
    pairs = [('alone', 'logit_kd')]
    pairs += [(ref, s) for s in settings for ref in ('alone', 'logit_kd')]
    comparison = compare_students(
        {m: [r['test_preds'] for r in rs] for m, rs in methods.items()},
        alpha, pairs=pairs, labels={m: _label(m) for m in methods})
    decided = {(c['reference'], c['method']): c
               for c in comparison['comparisons']}

    def wins(setting, reference):
        c = decided[(reference, setting)]
        return bool(c['significant'] and c['difference'] > 0)

    rows = []
    for method, rs in methods.items():
        test = [r['test_accuracy'] for r in rs]
        row = dict(method=method, setting=rs[0]['setting'],
                   seeds=[r['seed'] for r in rs],
                   runs=[r['name'] for r in rs],
                   val_accuracies=[r['val_accuracy'] for r in rs],
                   val_mean=val_mean[method], test_accuracies=test,
                   test_mean=float(np.mean(test)),
                   test_std=float(np.std(test, ddof=1))
                   if len(test) > 1 else None)
        if method in settings:
            row.update(beats_alone=wins(method, 'alone'),
                       beats_logit_kd=wins(method, 'logit_kd'))
        rows.append(row)
    beats_both = [s for s in settings
                  if wins(s, 'alone') and wins(s, 'logit_kd')]
    if beats_both:
        summary = ('On the held-out split, ' + ', '.join(
            _label(s) for s in beats_both) + ' beat both the student alone '
            'and logit KD by more than the seed-to-seed noise.')
    else:
        summary = ('On the held-out split, no ScaleKD setting beats both '
                   'the student alone and logit KD by more than the '
                   'seed-to-seed noise.')
    return dict(chosen=chosen,
                chosen_setting=methods[chosen][0]['setting'],
                chosen_verdicts=[decided[(ref, chosen)]['verdict']
                                 for ref in ('alone', 'logit_kd')],
                beats_both=beats_both,
                summary=summary,
                methods=rows,
                comparison=comparison)


def plot_sweep(report: dict, alpha: float, path: str) -> None:
    """Test accuracy per method and setting: seeds as dots, mean and
    t-interval over seeds; the chosen setting in red."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    from scipy import stats
    rows = report['methods']
    fig, ax = plt.subplots(figsize=(max(6, 0.9 * len(rows)), 4.5))
    for x, row in enumerate(rows):
        values = np.asarray(row['test_accuracies'])
        color = 'C3' if row['method'] == report['chosen'] else 'k'
        if len(values) > 1:
            half = stats.t.ppf(1 - alpha / 2, len(values) - 1) * \
                values.std(ddof=1) / np.sqrt(len(values))
            ax.errorbar(x, values.mean(), yerr=half, fmt='o', capsize=5,
                        color=color)
        ax.scatter([x] * len(values), values, alpha=0.5, color=color)
    ax.set_xticks(range(len(rows)))
    ax.set_xticklabels([_label(r['method']).replace('ScaleKD ', 'ScaleKD\n')
                        .replace(' ', '\n') for r in rows], fontsize=7)
    ax.set_ylabel('held-out test top-1 (%)')
    ax.set_title(f'Mean and {100 * (1 - alpha):g}% t-interval over seeds '
                 '(red: chosen on val)')
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _nested(options: Dict[str, object]) -> dict:
    """``{'model.teacher.checkpoint': x}`` -> nested dicts
    ``{'model': {'teacher': {'checkpoint': x}}}``."""
    nested = {}
    for key, value in options.items():
        *parents, last = key.split('.')
        node = nested
        for parent in parents:
            node = node.setdefault(parent, {})
        node[last] = value
    return nested


def _merge(a: dict, b: dict) -> dict:
    for key, value in b.items():
        if isinstance(value, dict) and isinstance(a.get(key), dict):
            _merge(a[key], value)
        else:
            a[key] = value
    return a


def write_recommended_config(config_path: str, cfg, setting: dict,
                             options: Optional[dict], out_dir: str) -> str:
    """A config file inheriting ``config_path`` with the chosen setting
    (and the sweep's ``--cfg-options``), for ``tools/train.py``: the full
    recipe, not the sweep's shortened schedule. Returns its path."""
    from .sweep import GRID_KEYS, STAGES
    model = {}
    for key, value in setting.items():
        where, part = GRID_KEYS[key]
        if where == 'logit_kd':
            model.setdefault('logit_kd', {})[key] = value
        else:
            for stage in STAGES:
                if cfg.model.get(stage) is not None:
                    model.setdefault(stage, {}).setdefault(part,
                                                           {})[key] = value
    overrides = _merge(_nested(options or {}), dict(model=model))
    stem = osp.splitext(osp.basename(config_path))[0]
    path = osp.join(out_dir, f'recommended_{stem}.py')
    lines = [
        f'# {stem} with the setting a sweep chose on the validation split '
        f'({", ".join(f"{k}={v:g}" for k, v in setting.items())}).',
        f'_base_ = [{osp.abspath(config_path)!r}]', ''
    ]
    lines += [f'{key} = {pprint.pformat(value, width=74)}'
              for key, value in overrides.items()]
    with open(path, 'w') as f:
        f.write('\n'.join(lines) + '\n')
    return path


def _markdown(report: dict, recommended: str, alpha: float) -> str:
    comparison = report['comparison']
    level = f'{100 * (1 - alpha):g}%'
    rows = [[
        _label(r['method']) + (' (chosen)' if r['method'] == report['chosen']
                               else ''),
        len(r['seeds']), f'{r["val_mean"]:.2f}',
        ', '.join(f'{v:.2f}' for v in r['test_accuracies']),
        f'{r["test_mean"]:.2f}',
        '-' if r['test_std'] is None else f'{r["test_std"]:.2f}',
        {True: 'yes', False: 'no', None: '-'}[r.get('beats_alone')],
        {True: 'yes', False: 'no', None: '-'}[r.get('beats_logit_kd')]
    ] for r in report['methods']]
    table = format_table([
        'method', 'seeds', 'val mean (%)', 'test per seed (%)',
        'test mean (%)', 'test std', 'beats alone', 'beats logit KD'
    ], rows, style='markdown')
    lines = [
        '# Sweep report', '',
        'Settings are chosen on the validation split (`val_dataloader`); '
        'every verdict is on the held-out test split (`test_dataloader`, '
        f'{comparison["num_images"]} images), which nothing was chosen on. '
        "Verdicts are those of `tools/analysis/compare_students.py` "
        f"(Welch's test across seeds at alpha={alpha:g}).", '',
        '## Answer', '', report['summary'], '',
        f'Chosen on val: **{_label(report["chosen"])}**; on the test split:',
        ''
    ] + [f'- {v}' for v in report['chosen_verdicts']] + [
        '', f'Recommended config: `{recommended}` '
        '(train it with `tools/train.py`).', '',
        '## Accuracy', '', table, '', '![accuracy](sweep_accuracy.png)', '',
        f'## Every verdict (test split, {level} intervals)', ''
    ] + [f'- {v}' for v in comparison['verdicts']] + ['']
    return '\n'.join(lines)


def write_sweep_report(results: Sequence[dict], config_path: str, cfg,
                       options: Optional[dict], work_dir: str,
                       alpha: float = 0.05) -> dict:
    """``sweep.md``, ``sweep.json``, ``sweep_accuracy.png`` and the
    recommended config in ``work_dir``; returns the report."""
    report = sweep_report(results, alpha)
    recommended = write_recommended_config(config_path, cfg,
                                           report['chosen_setting'], options,
                                           work_dir)
    report['recommended_config'] = recommended
    plot_sweep(report, alpha, osp.join(work_dir, 'sweep_accuracy.png'))
    with open(osp.join(work_dir, 'sweep.json'), 'w') as f:
        json.dump(report, f, indent=2)
    with open(osp.join(work_dir, 'sweep.md'), 'w') as f:
        f.write(_markdown(report, recommended, alpha))
    return report
