# Is one student's gain over another real? Compare tools/test.py predictions.
import argparse
import json
import math
import sys
from dataclasses import asdict
from typing import Dict, List, Optional, Sequence

import numpy as np

from mmscalekd.analysis import (PredictionFileError, accuracy,
                                align_predictions, compare_across_seeds,
                                compare_paired, load_predictions,
                                paired_verdict, seeds_verdict)

DESCRIPTION = """\
Compare students evaluated on the same validation set.

Write one prediction file per checkpoint with
    python tools/test.py CONFIG CHECKPOINT --out work_dirs/NAME/preds.pkl
then name each file:
    compare_students.py baseline=work_dirs/a/preds.pkl \\
        scalekd=work_dirs/b/preds.pkl
The first name is the reference; every other model is compared with it on the
same images: accuracy difference with a paired bootstrap confidence interval
(level 1 - alpha) and an exact McNemar test on the images where the two
disagree.

Several training seeds per method: give each method all its files, either
with --method (one per method, do not mix with NAME=FILE)
    compare_students.py --method baseline a_s0.pkl a_s1.pkl a_s2.pkl \\
        --method scalekd b_s0.pkl b_s1.pkl b_s2.pkl
or by repeating a name: baseline=a_s0.pkl baseline=a_s1.pkl ...
Files are paired by position (the i-th file of a method with the i-th of the
reference: list seeds in the same order) for the per-pair paired tests, and,
when both methods have >= 2 seeds, Welch's t-test compares the mean accuracies
across seeds. The verdict then comes from Welch's test, since seed-to-seed
variation is what a single paired test cannot see; with one file per method
it comes from McNemar's test.
"""


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        'models',
        nargs='*',
        metavar='NAME=FILE',
        help='a named prediction file from tools/test.py --out; the first '
        'name is the reference; repeat a name for several seeds')
    parser.add_argument(
        '--method',
        nargs='+',
        action='append',
        metavar=('NAME', 'FILE'),
        help='a method and its prediction files, one per seed (repeat '
        '--method per method; the first is the reference)')
    parser.add_argument('--alpha',
                        type=float,
                        default=0.05,
                        help='significance level; intervals are at 1 - alpha '
                        '(default: 0.05)')
    parser.add_argument(
        '--n-resamples',
        type=int,
        default=9999,
        help='bootstrap resamples for the confidence intervals '
        '(default: 9999)')
    parser.add_argument('--seed',
                        type=int,
                        default=0,
                        help='seed of the bootstrap resampling (default: 0)')
    parser.add_argument('--json',
                        metavar='OUT',
                        help='also write every number to this file')
    args = parser.parse_args(argv)
    if not 0 < args.alpha < 1:
        parser.error(f'--alpha {args.alpha} must be between 0 and 1, e.g. '
                     '0.05.')
    if args.n_resamples < 1:
        parser.error(f'--n-resamples {args.n_resamples} must be positive, '
                     'e.g. 9999.')
    args.methods = methods_from_args(parser, args.models, args.method)
    return args


def methods_from_args(
        parser: argparse.ArgumentParser, models: List[str],
        method: Optional[List[List[str]]]) -> Dict[str, List[str]]:
    """Method name -> its prediction files, in the order given."""
    if models and method:
        parser.error('give models either as NAME=FILE arguments or with '
                     '--method NAME FILE..., not both.')
    methods: Dict[str, List[str]] = {}
    for item in models:
        name, sep, path = item.partition('=')
        if not sep or not name or not path:
            parser.error(f'{item!r} is not NAME=FILE; write e.g. '
                         'baseline=work_dirs/a/preds.pkl.')
        methods.setdefault(name, []).append(path)
    for name, *paths in method or []:
        if not paths:
            parser.error(f'--method {name} has no files; write --method '
                         f'{name} FILE [FILE ...].')
        if name in methods:
            parser.error(f'--method {name} is given twice; list all its '
                         'files after one --method.')
        methods[name] = paths
    if len(methods) < 2:
        parser.error(f'got {len(methods)} method(s) ({list(methods)}); '
                     'compare at least two, e.g. baseline=a.pkl '
                     'scalekd=b.pkl.')
    return methods


def _finite_or_none(value):
    """NaN and inf as JSON null (json would write the non-standard NaN)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def compare(methods: Dict[str, List[str]], alpha: float, n_resamples: int,
            seed: int) -> dict:
    """Every statistic of every method against the first, as plain data."""
    paths = [path for files in methods.values() for path in files]
    predictions = [load_predictions(path) for path in paths]
    correct = dict(zip(paths, align_predictions(predictions)))
    confidence_level = 1 - alpha
    names = list(methods)
    reference = names[0]
    report = dict(reference=reference,
                  num_images=int(predictions[0].sample_idx.size),
                  alpha=alpha,
                  confidence_level=confidence_level,
                  n_resamples=n_resamples,
                  seed=seed,
                  methods=[],
                  paired=[],
                  across_seeds=[],
                  verdicts=[])
    for name, files in methods.items():
        accuracies = [accuracy(correct[path]) for path in files]
        report['methods'].append(
            dict(name=name,
                 files=files,
                 accuracies=accuracies,
                 mean_accuracy=float(np.mean(accuracies)),
                 std_accuracy=float(np.std(accuracies, ddof=1))
                 if len(files) > 1 else None))
    reference_files = methods[reference]
    for name in names[1:]:
        files = methods[name]
        pair_verdicts = []
        for pair, (ref_path, path) in enumerate(zip(reference_files, files)):
            result = compare_paired(correct[ref_path], correct[path],
                                    confidence_level, n_resamples, seed)
            verdict = paired_verdict(name, reference, result, alpha)
            if len(files) > 1 or len(reference_files) > 1:
                verdict = f'[pair {pair + 1}] {verdict}'
            pair_verdicts.append(verdict)
            report['paired'].append(
                dict(method=name,
                     reference=reference,
                     pair=pair + 1,
                     file=path,
                     reference_file=ref_path,
                     **asdict(result),
                     significant=result.mcnemar_pvalue < alpha,
                     verdict=verdict))
        if len(files) >= 2 and len(reference_files) >= 2:
            accuracies = report['methods'][names.index(name)]['accuracies']
            result = compare_across_seeds(report['methods'][0]['accuracies'],
                                          accuracies, confidence_level)
            verdict = seeds_verdict(name, reference, result, alpha)
            report['across_seeds'].append(
                dict(method=name,
                     reference=reference,
                     **{
                         k: _finite_or_none(v)
                         for k, v in asdict(result).items()
                     },
                     significant=bool(result.pvalue < alpha),
                     verdict=verdict))
            report['verdicts'].append(verdict)
        else:
            report['verdicts'].extend(pair_verdicts)
    return report


def format_table(header: Sequence[str], rows: Sequence[Sequence]) -> str:
    """Columns padded to their widest cell; numbers right-aligned."""
    cells = [list(header)] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    numeric = [
        all(_looks_numeric(row[i]) for row in cells[1:])
        for i in range(len(header))
    ]
    lines = []
    for row in cells:
        lines.append('  '.join(
            cell.rjust(width) if is_number else cell.ljust(width)
            for cell, width, is_number in zip(row, widths, numeric)).rstrip())
    lines.insert(1, '  '.join('-' * width for width in widths))
    return '\n'.join(lines)


def _looks_numeric(cell: str) -> bool:
    try:
        float(cell.strip('[]%,+'))
        return True
    except ValueError:
        return False


def _p(value: Optional[float]) -> str:
    return 'n/a' if value is None else f'{value:.2g}'


def render(report: dict) -> str:
    """The report as the tables and verdict lines a reader scans."""
    level = f'{100 * report["confidence_level"]:g}% CI'
    sections = [
        f'Top-1 accuracy (%) on {report["num_images"]} images',
        format_table(['method', 'file', 'accuracy'],
                     [[m['name'], path, f'{acc:.2f}']
                      for m in report['methods']
                      for path, acc in zip(m['files'], m['accuracies'])])
    ]
    seeded = [m for m in report['methods'] if len(m['files']) > 1]
    if seeded:
        sections += [
            '', 'Across seeds',
            format_table(['method', 'seeds', 'mean', 'std'], [[
                m['name'],
                len(m['files']), f'{m["mean_accuracy"]:.2f}',
                '' if m['std_accuracy'] is None else f'{m["std_accuracy"]:.2f}'
            ] for m in report['methods']])
        ]
    sections += [
        '', f'Paired on the same images (method - {report["reference"]}, '
        'points)',
        format_table([
            'method', 'pair', 'difference', level, 'only ref right',
            'only method right', 'McNemar p'
        ], [[
            p['method'], p['pair'], f'{p["difference"]:+.2f}',
            f'[{p["ci_low"]:.2f}, {p["ci_high"]:.2f}]', p['only_a_correct'],
            p['only_b_correct'],
            _p(p['mcnemar_pvalue'])
        ] for p in report['paired']])
    ]
    if report['across_seeds']:
        sections += [
            '', f'Welch\'s t-test across seeds (method - '
            f'{report["reference"]}, points)',
            format_table([
                'method', 'seeds', 'difference', level, 't', 'df', 'p'
            ], [[
                s['method'], f'{s["num_seeds_b"]} vs {s["num_seeds_a"]}',
                f'{s["difference"]:+.2f}', 'n/a' if s['ci_low'] is None else
                f'[{s["ci_low"]:.2f}, {s["ci_high"]:.2f}]',
                'n/a' if s['statistic'] is None else f'{s["statistic"]:.2f}',
                'n/a' if s['df'] is None else f'{s["df"]:.1f}',
                _p(s['pvalue'])
            ] for s in report['across_seeds']])
        ]
    sections += ['', 'Verdict'] + report['verdicts']
    return '\n'.join(sections)


def main(argv: Optional[Sequence[str]] = None) -> dict:
    args = parse_args(argv)
    try:
        report = compare(args.methods, args.alpha, args.n_resamples, args.seed)
    except PredictionFileError as error:
        sys.exit(f'compare_students.py: error: {error}')
    print(render(report))
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(report, f, indent=2)
    return report


if __name__ == '__main__':
    main()
