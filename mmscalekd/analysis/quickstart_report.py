"""The quick start's report: the paper's claim beside what was measured.

At each teacher pool size the three students are compared on the test split
with :func:`~mmscalekd.analysis.compare_students` (Welch's test across seeds
decides, each seed's paired McNemar test is listed); whether the gain grows
with the teacher's pre-training is Welch's test of ScaleKD's accuracies with
the largest against the smallest pool.
"""
import json
import os.path as osp
from typing import Dict, List

import numpy as np

from .quickstart import CHOICES, LABELS, chosen, largest_pool, teacher_name
from .statistics import compare_across_seeds, seeds_verdict
from .student_comparison import compare_students
from .tables import format_table

__all__ = ['student_runs', 'write_report']

PAPER_CLAIM = (
    'The paper (ScaleKD, NeurIPS 2024, tables 2-4) distils ViT teachers '
    'pre-trained on ImageNet-22K or LAION into students trained on '
    'ImageNet-1K and reports gains over the student alone of +2.02 to '
    '+5.52 top-1 points with a Swin-L teacher, ScaleKD above logit '
    'distillation, and larger gains from teachers with more pre-training '
    'data.')


def student_runs(results: Dict[str, dict], method: str,
                 percent: int) -> List[dict]:
    """The runs of ``method`` with the teacher of ``percent``, by seed."""
    largest = largest_pool(results)
    runs = []
    for result in results.values():
        if result['kind'] != method:
            continue
        if method != 'alone' and result['percent'] != percent:
            continue
        if result['candidate'] is not None and (
                percent != largest
                or result['candidate'] != chosen(method, results)):
            continue
        runs.append(result)
    return sorted(runs, key=lambda r: r['seed'])


def _plot(rows: List[dict], alpha: float, path: str) -> None:
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6, 4))
    for offset, method in ((-0.6, 'logit_kd'), (0.6, 'scalekd')):
        x = [row['percent'] + offset for row in rows]
        gains = [row['gains'][method] for row in rows]
        ax.errorbar(x, [g['difference'] for g in gains],
                    yerr=[[g['difference'] - g['ci_low'] for g in gains],
                          [g['ci_high'] - g['difference'] for g in gains]],
                    fmt='o-', capsize=5, label=LABELS[method])
    ax.axhline(0, color='gray', lw=0.8)
    ax.set_xticks([row['percent'] for row in rows])
    ax.set_xlabel("teacher's pre-training pool (% of the pool)")
    ax.set_ylabel('test top-1 gain over the student alone (points)')
    ax.set_title(f'Mean gain over seeds, {100 * (1 - alpha):g}% Welch '
                 'interval')
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _verdict(rows: List[dict], trend: dict) -> str:
    """The plain answer, whichever way the numbers went."""
    beats = [
        row['percent'] for row in rows
        if all(row['comparisons'][pair]['significant']
               and row['comparisons'][pair]['difference'] > 0
               for pair in (('alone', 'scalekd'), ('logit_kd', 'scalekd')))
    ]
    over_alone = [
        row['percent'] for row in rows
        if row['comparisons'][('alone', 'scalekd')]['significant']
        and row['comparisons'][('alone', 'scalekd')]['difference'] > 0
    ]
    lines = []
    if beats:
        lines.append('ScaleKD beats both the student alone and logit KD by '
                     'more than the seed-to-seed noise with the teacher of '
                     + ', '.join(f'{p}%' for p in beats) + ' of the pool.')
    elif over_alone:
        lines.append('ScaleKD beats the student alone by more than the '
                     'noise with the teacher of ' +
                     ', '.join(f'{p}%' for p in over_alone) +
                     ' of the pool, but not logit KD.')
    else:
        lines.append('ScaleKD does **not** beat the student alone by more '
                     'than the seed-to-seed noise with any teacher here.')
    if not trend['significant']:
        trend_text = ('neither growing nor shrinking with the teacher\'s '
                      'pre-training by more than the noise')
    elif trend['difference'] > 0:
        trend_text = 'growing with the teacher\'s pre-training'
    else:
        trend_text = 'shrinking as the teacher\'s pre-training grows'
    lines.append(
        f"ScaleKD's accuracy with the {trend['largest']}% teacher against "
        f"the {trend['smallest']}% one: {trend['verdict']}; the gain is "
        f'{trend_text}.')
    return ' '.join(lines)


def write_report(work_dir: str, results: Dict[str, dict], profile: dict,
                 counts: dict, alpha: float, minutes: float) -> dict:
    """Write report.md, report.json and gain.png; returns the report."""
    percents = sorted(profile['percents'])
    teachers = [results[teacher_name(p)] for p in percents]
    choices = {}
    for method, candidates in CHOICES.items():
        choices[method] = dict(
            chosen=chosen(method, results),
            val_accuracy={
                c: results[f'{method}_{c}_pool{percents[-1]}_seed0']
                ['val_accuracy']
                for c in candidates
            })
    rows = []
    for percent in percents:
        runs = {m: student_runs(results, m, percent) for m in LABELS}
        comparison = compare_students(
            {m: [r['test_preds'] for r in rs]
             for m, rs in runs.items()}, alpha,
            pairs=[('alone', 'logit_kd'), ('alone', 'scalekd'),
                   ('logit_kd', 'scalekd')], labels=LABELS)
        by_pair = {(c['reference'], c['method']): dict(c)
                   for c in comparison['comparisons']}
        for welch in comparison['across_seeds']:
            by_pair[(welch['reference'], welch['method'])]['pvalue'] = \
                welch['pvalue']
        gains = {}
        for method in ('logit_kd', 'scalekd'):
            welch = compare_across_seeds(
                [r['test_accuracy'] for r in runs['alone']],
                [r['test_accuracy'] for r in runs[method]], 1 - alpha)
            gains[method] = dict(difference=welch.difference,
                                 ci_low=welch.ci_low, ci_high=welch.ci_high,
                                 pvalue=welch.pvalue)
        rows.append(dict(
            percent=percent,
            accuracies={m: [r['test_accuracy'] for r in rs]
                        for m, rs in runs.items()},
            comparisons=by_pair, gains=gains, report=comparison))
    smallest, largest = rows[0], rows[-1]
    welch = compare_across_seeds(smallest['accuracies']['scalekd'],
                                 largest['accuracies']['scalekd'], 1 - alpha)
    trend = dict(smallest=smallest['percent'], largest=largest['percent'],
                 difference=welch.difference, pvalue=welch.pvalue,
                 significant=bool(welch.pvalue < alpha),
                 verdict=seeds_verdict(f'ScaleKD ({largest["percent"]}%)',
                                       f'ScaleKD ({smallest["percent"]}%)',
                                       welch, alpha))
    verdict = _verdict(rows, trend)
    _plot(rows, alpha, osp.join(work_dir, 'gain.png'))

    teacher_table = format_table(
        ['teacher', 'pre-training images', 'val top-1 (%)', 'test top-1 (%)'],
        [[f'ViT, {p}% of the pool', counts[f'pool_{p}'],
          f'{t["val_accuracy"]:.2f}', f'{t["test_accuracy"]:.2f}']
         for p, t in zip(percents, teachers)], style='markdown')
    choice_table = format_table(
        ['method', 'candidate', 'val top-1 (%)', 'chosen'],
        [[LABELS[m], c, f'{v:.2f}', 'yes' if c == ch['chosen'] else '']
         for m, ch in choices.items() for c, v in ch['val_accuracy'].items()],
        style='markdown')

    def mean_std(values):
        std = f' ± {np.std(values, ddof=1):.2f}' if len(values) > 1 else ''
        return f'{np.mean(values):.2f}{std}'

    student_table = format_table(
        ['teacher pool', 'student alone', 'logit KD', 'ScaleKD',
         'ScaleKD - alone', 'ScaleKD - logit KD'],
        [[f'{row["percent"]}%'] +
         [mean_std(row['accuracies'][m]) for m in LABELS] +
         [f'{row["comparisons"][pair]["difference"]:+.2f} (p '
          f'{row["comparisons"][pair]["pvalue"]:.2g})'
          if row['comparisons'][pair].get('pvalue') is not None else
          f'{row["comparisons"][pair]["difference"]:+.2f}'
          for pair in (('alone', 'scalekd'), ('logit_kd', 'scalekd'))]
         for row in rows], style='markdown')
    seeds = profile['seeds']
    lines = [
        '# mmscalekd quick start: does ScaleKD help here?', '',
        '## The question', '', PAPER_CLAIM, '',
        'The same question at toy size: scikit-learn\'s handwritten digits, '
        f'split by source image. Students: an MLP-Mixer (8x8 tokens) on '
        f'{counts["train"]} labelled digits. Teachers: a plain ViT (8x8 '
        'tokens) pre-trained on ' +
        ', '.join(f'{p}%' for p in percents) +
        f' of a pool of deformed variants of {counts["pool_sources"]} other '
        'digits (6 each: rotated, scaled, sheared, shifted, some with '
        'thicker strokes), each for the same number of steps. Choices on '
        f'{counts["val"]} validation digits; the verdict on {counts["test"]} '
        'test digits that nothing was tuned on. Every image is 16 px.', '',
        '## Teachers', '', teacher_table, '',
        '## Choices (on val, largest teacher, seed 0)', '', choice_table, '',
        f'## Students on test ({seeds} seeds, mean ± std, top-1 %)', '',
        student_table, '',
        '(p: Welch\'s test across seeds, as `tools/analysis/'
        'compare_students.py` computes it.)', '',
        '![gain](gain.png)', '', '## Verdicts', ''
    ]
    for row in rows:
        lines.append(f'Teacher of {row["percent"]}% of the pool:')
        lines += [f'- {v}' for v in row['report']['verdicts']]
        lines.append('')
    lines += [f'- {trend["verdict"]}', '', '## Answer', '', verdict, '',
              'Paper beside measured: the paper reports ScaleKD above the '
              'student alone and above logit KD, with gains growing with '
              'the teacher\'s pre-training; the table above is what this '
              'toy version of that setting measured.', '',
              f'Total time: {minutes:.1f} minutes.', '']
    with open(osp.join(work_dir, 'report.md'), 'w') as f:
        f.write('\n'.join(lines))
    report = dict(
        profile=profile, counts=counts, choices=choices,
        teachers={p: dict(val_accuracy=t['val_accuracy'],
                          test_accuracy=t['test_accuracy'])
                  for p, t in zip(percents, teachers)},
        rows=[dict(percent=r['percent'], accuracies=r['accuracies'],
                   gains=r['gains'], comparisons=r['report']['comparisons'],
                   paired=r['report']['paired']) for r in rows],
        trend=trend, verdict=verdict, minutes=minutes,
        summary=student_table + '\n\n' + verdict)
    with open(osp.join(work_dir, 'report.json'), 'w') as f:
        json.dump(report, f, indent=2, default=float)
    return report
