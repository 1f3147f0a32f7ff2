"""The results table of a work root of ``tools/reproduce.py``.

Per ScaleKD config: the mean and standard deviation of top-1 over the seeds
for the student alone, logit KD and ScaleKD, the gain of ScaleKD over each
baseline with its tests (:func:`~.student_comparison.compare_students`:
Welch's t-test across seeds decides with two seeds or more, McNemar's test
on the images of each seed's pair beside it) and the paper's figure. The
tests pair the three methods seed by seed, so a row uses the seeds that
all three have finished; every job without its result is listed.
``tools/analysis/collect_results.py`` is the command line; it also writes
the means into configs/scalekd/metafile.yml and README.md.
"""
import os.path as osp
import re
from typing import Dict, List, Optional

from .reproduce import (METHOD_TITLES, METHODS, PLAN, RESULT, job_result,
                        read_plan)
from .student_comparison import compare_students
from .sweep import write_json
from .tables import format_table

__all__ = [
    'REPRODUCED_METRIC', 'collect_results', 'render_results',
    'reproduced_values', 'update_metafile', 'update_readme'
]

REPRODUCED_METRIC = 'Reproduced Top 1 Accuracy'
README_COLUMN = 'Top-1 (%), reproduced'


def _gain(report: dict, reference: str) -> dict:
    """ScaleKD against ``reference`` in a compare_students report."""
    (decided, ) = [c for c in report['comparisons']
                   if c['reference'] == reference]
    paired = [p for p in report['paired'] if p['reference'] == reference]
    welch = [s for s in report['across_seeds'] if s['reference'] == reference]
    pvalue = welch[0]['pvalue'] if decided['test'] == 'welch' else \
        paired[0]['mcnemar_pvalue']
    return dict(difference=decided['difference'], test=decided['test'],
                pvalue=pvalue, significant=decided['significant'],
                verdict=decided['verdict'],
                paired_pvalues=[p['mcnemar_pvalue'] for p in paired])


def collect_results(work_root: str, alpha: float = 0.05,
                    n_resamples: int = 9999) -> dict:
    """Every row of the table and every job without its result."""
    plan = read_plan(work_root)
    if plan is None:
        raise FileNotFoundError(
            f'{work_root} has no {PLAN}: it is no work root of '
            'tools/reproduce.py. Give the `--work-root` the jobs were '
            'planned in.')
    results = {j.index: job_result(j) for j in plan.jobs}
    missing = [j for j in plan.jobs if results[j.index] is None]
    if len(missing) == len(plan.jobs):
        raise FileNotFoundError(
            f'None of the {len(plan.jobs)} jobs of {work_root} has its '
            f'{RESULT} yet: run them (the slurm array '
            'or the command lines tools/reproduce.py wrote there), then '
            'collect.')
    rows = []
    for name, row in plan.rows.items():
        jobs = {m: {j.seed: j for j in plan.jobs
                    if name in j.rows and j.method == m} for m in METHODS}
        seeds = sorted(set.intersection(*(
            {s for s, j in jobs[m].items() if results[j.index]}
            for m in METHODS)))
        entry = dict(name=name, config=row['config'], seeds=seeds,
                     paper=row['paper'], configs=row['configs'],
                     missing=sorted(
                         f'{j.name}/seed{j.seed}' for m in METHODS
                         for j in jobs[m].values()
                         if results[j.index] is None))
        if seeds:
            files = {m: [results[jobs[m][s].index]['preds'] for s in seeds]
                     for m in METHODS}
            report = compare_students(
                files, alpha, n_resamples,
                pairs=[('alone', 'scalekd'), ('logit_kd', 'scalekd')],
                labels=METHOD_TITLES)
            entry['methods'] = {
                m['name']: dict(accuracies=m['accuracies'],
                                mean=m['mean_accuracy'],
                                std=m['std_accuracy'])
                for m in report['methods']}
            entry['gains'] = {ref: _gain(report, ref)
                              for ref in ('alone', 'logit_kd')}
            entry['verdicts'] = report['verdicts']
        rows.append(entry)
    return dict(work_root=work_root, alpha=alpha, rows=rows,
                configs=reproduced_values(plan, results),
                missing=[dict(index=j.index, name=j.name, seed=j.seed,
                              work_dir=j.work_dir) for j in missing])


def reproduced_values(plan, results: dict) -> Dict[str, dict]:
    """Config name -> mean and std top-1 over all its finished seeds (what
    the metafile and README receive)."""
    import numpy as np
    values = {}
    for job in plan.jobs:
        result = results[job.index]
        if result is not None:
            values.setdefault(job.name, {})[job.seed] = result['accuracy']
    return {
        name: dict(seeds=sorted(by_seed),
                   mean=float(np.mean(list(by_seed.values()))),
                   std=float(np.std(list(by_seed.values()), ddof=1))
                   if len(by_seed) > 1 else None)
        for name, by_seed in values.items()}


def _spread(mean: float, std: Optional[float]) -> str:
    return f'{mean:.2f}' if std is None else f'{mean:.2f} ± {std:.2f}'


def _figure(value: Optional[float]) -> str:
    return '-' if value is None else f'{value:.2f}'


def _p(value: Optional[float]) -> str:
    return 'n/a' if value is None else f'{value:.2g}'


def render_results(results: dict) -> str:
    """The table as markdown: one row per ScaleKD config, then the
    verdicts and the jobs still missing."""
    table = []
    for row in results['rows']:
        if 'methods' not in row:
            table.append([row['name'], 0] + ['-'] * 5 + [
                _figure(row['paper']['alone']),
                _figure(row['paper']['scalekd'])])
            continue
        m, g = row['methods'], row['gains']
        table.append([row['name'], len(row['seeds'])] + [
            _spread(m[k]['mean'], m[k]['std']) for k in METHODS
        ] + [
            f'{g[k]["difference"]:+.2f} (p {_p(g[k]["pvalue"])}, '
            f'{g[k]["test"]})' for k in ('alone', 'logit_kd')
        ] + [_figure(row['paper']['alone']),
             _figure(row['paper']['scalekd'])])
    lines = [
        f'# Reproduced top-1 (%), {results["work_root"]}', '',
        'Mean ± std over the seeds all three methods have finished; the '
        'gain of ScaleKD with its p-value (Welch\'s t-test across seeds '
        'with two seeds or more, else McNemar\'s on the images), at alpha '
        f'{results["alpha"]:g}. Paper: the ScaleKD paper\'s figures '
        '(configs/scalekd/metafile.yml), - where it reports none.', '',
        format_table(['config', 'seeds', 'student alone', 'logit KD',
                      'ScaleKD', 'ScaleKD - alone', 'ScaleKD - logit KD',
                      'paper alone', 'paper ScaleKD'], table,
                     style='markdown')
    ]
    for row in results['rows']:
        if row.get('verdicts'):
            lines += ['', f'## {row["name"]}', '']
            lines += [f'- {v}' for v in row['verdicts']]
            for ref in ('alone', 'logit_kd'):
                pvalues = ', '.join(_p(p) for p in
                                    row['gains'][ref]['paired_pvalues'])
                lines.append(f'- McNemar p per seed (seeds '
                             f'{", ".join(map(str, row["seeds"]))}), '
                             f'ScaleKD vs {METHOD_TITLES[ref]}: {pvalues}')
    lines += ['', '## Missing or unfinished jobs', '']
    lines += [f'- job {j["index"]}: {j["name"]} seed {j["seed"]} '
              f'({j["work_dir"]})' for j in results['missing']] or ['none']
    return '\n'.join(lines) + '\n'


def write_results(results: dict, work_root: str) -> List[str]:
    """``results.md`` and ``results.json`` in the work root."""
    paths = [osp.join(work_root, 'results.md'),
             osp.join(work_root, 'results.json')]
    with open(paths[0], 'w') as f:
        f.write(render_results(results))
    write_json(paths[1], results)
    return paths


def _entry_lines(lines: List[str], name: str) -> Optional[tuple]:
    """First and end line of the metafile entry ``- Name: name``."""
    start = next((i for i, line in enumerate(lines)
                  if line.rstrip() == f'  - Name: {name}'), None)
    if start is None:
        return None
    end = next((i for i in range(start + 1, len(lines))
                if lines[i].startswith('  - Name: ')
                or (lines[i].strip() and not lines[i].startswith(' '))),
               len(lines))
    return start, end


def update_metafile(path: str, values: Dict[str, dict]) -> List[str]:
    """Write ``Reproduced Top 1 Accuracy`` (the mean) into the metafile
    entry of each config of ``values``, editing its text so that its
    comments and layout stay; returns the names updated."""
    with open(path) as f:
        lines = f.read().splitlines(keepends=True)
    updated = []
    for name, value in values.items():
        span = _entry_lines(lines, name)
        if span is None:
            continue
        start, end = span
        figure = f'{value["mean"]:.2f}'
        block = lines[start:end]
        metric = next((i for i, line in enumerate(block)
                       if line.strip().startswith(REPRODUCED_METRIC + ':')),
                      None)
        metrics = next((i for i, line in enumerate(block)
                        if line.strip() == 'Metrics:'), None)
        if metric is not None:
            indent = block[metric][:len(block[metric]) -
                                   len(block[metric].lstrip())]
            block[metric] = f'{indent}{REPRODUCED_METRIC}: {figure}\n'
        elif metrics is not None:
            indent = ' ' * (len(block[metrics]) - len(
                block[metrics].lstrip()) + 2)
            last = metrics + 1
            while last < len(block) and block[last].startswith(indent):
                last += 1
            block.insert(last, f'{indent}{REPRODUCED_METRIC}: {figure}\n')
        else:
            config = next(i for i, line in enumerate(block)
                          if line.startswith('    Config:'))
            block[config:config] = [
                '    Results:\n', '      - Task: Image Classification\n',
                '        Dataset: ImageNet-1k\n', '        Metrics:\n',
                f'          {REPRODUCED_METRIC}: {figure}\n']
        lines[start:end] = block
        updated.append(name)
    with open(path, 'w') as f:
        f.write(''.join(lines))
    return updated


def _cells(line: str) -> List[str]:
    return [c.strip() for c in line.strip().strip('|').split('|')]


def update_readme(path: str, values: Dict[str, dict]) -> List[str]:
    """Fill the reproduced column of the README's tables (mean ± std and
    the number of seeds) for each config of ``values``; returns the names
    updated."""
    with open(path) as f:
        lines = f.read().splitlines(keepends=True)
    column, updated = None, []
    for i, line in enumerate(lines):
        if not line.startswith('|'):
            column = None
            continue
        cells = _cells(line)
        if README_COLUMN in cells:
            column = cells.index(README_COLUMN)
            continue
        match = re.match(r'\[([^\]]+)\]', cells[0])
        if column is None or not match or match.group(1) not in values:
            continue
        value = values[match.group(1)]
        seeds = len(value['seeds'])
        cells[column] = (f'{_spread(value["mean"], value["std"])} '
                         f'({seeds} seed{"s" if seeds > 1 else ""})')
        lines[i] = '| ' + ' | '.join(cells) + ' |\n'
        updated.append(match.group(1))
    with open(path, 'w') as f:
        f.write(''.join(lines))
    return updated
