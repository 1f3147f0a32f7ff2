"""Is one student's gain over another real? Every test of
:mod:`mmscalekd.analysis.statistics` on a set of prediction files.

Used by ``tools/analysis/compare_students.py`` and ``tools/quickstart.py``:
both give each method its prediction files (one per training seed) and get
the same report.
"""
import math
from dataclasses import asdict
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from .statistics import (accuracy, align_predictions, compare_across_seeds,
                         compare_paired, load_predictions, paired_verdict,
                         seeds_verdict)
from .tables import format_table

__all__ = ['compare_students', 'render_comparison']


def _finite_or_none(value):
    """NaN and inf as JSON null (json would write the non-standard NaN)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def compare_students(methods: Dict[str, List[str]],
                     alpha: float = 0.05,
                     n_resamples: int = 9999,
                     seed: int = 0,
                     pairs: Optional[Sequence[Tuple[str, str]]] = None,
                     labels: Optional[Dict[str, str]] = None) -> dict:
    """Every statistic of every compared pair of methods, as plain data.

    Files of two methods are paired by position (the i-th file of one with
    the i-th of the other: list seeds in the same order) for the paired
    bootstrap interval and McNemar test. When both methods have >= 2 files,
    Welch's t-test compares their mean accuracies across seeds and gives the
    pair's verdict, since seed-to-seed variation is what a single paired
    test cannot see; otherwise the (single) paired test gives it.

    Args:
        methods (dict): method name -> its prediction files
            (``tools/test.py --out``), one per seed; all of the same images.
        alpha (float): significance level; intervals are at ``1 - alpha``.
        n_resamples (int): bootstrap resamples.
        seed (int): seeds the bootstrap, so reruns give the same intervals.
        pairs (Sequence[tuple], optional): (reference, method) names to
            compare; default: every method against the first.
        labels (dict, optional): method name -> how verdicts call it;
            default: the name.

    Returns:
        dict: ``methods`` (accuracy per file, mean, std), ``paired`` (one
        entry per pair of files), ``across_seeds`` (one per pair of methods
        with >= 2 files each), ``comparisons`` (one per pair of methods:
        its ``difference`` in points, the ``test`` that decides,
        ``'welch'`` or ``'mcnemar'``, whether it is ``significant`` at
        ``alpha`` and the ``verdict`` line) and
        ``verdicts`` (those lines, in order).
    """
    names = list(methods)
    reference = names[0]
    if pairs is None:
        pairs = [(reference, name) for name in names[1:]]
    unknown = sorted({n for pair in pairs for n in pair} - set(names))
    if unknown:
        raise ValueError(f'pairs name {unknown}, which have no files; '
                         f'compare among {names}.')
    labels = {name: name for name in names} | dict(labels or {})
    paths = [path for files in methods.values() for path in files]
    predictions = [load_predictions(path) for path in paths]
    correct = dict(zip(paths, align_predictions(predictions)))
    confidence_level = 1 - alpha
    report = dict(reference=reference,
                  num_images=int(predictions[0].sample_idx.size),
                  alpha=alpha,
                  confidence_level=confidence_level,
                  n_resamples=n_resamples,
                  seed=seed,
                  methods=[],
                  paired=[],
                  across_seeds=[],
                  comparisons=[],
                  verdicts=[])
    accuracies = {}
    for name, files in methods.items():
        accuracies[name] = [accuracy(correct[path]) for path in files]
        report['methods'].append(
            dict(name=name,
                 files=files,
                 accuracies=accuracies[name],
                 mean_accuracy=float(np.mean(accuracies[name])),
                 std_accuracy=float(np.std(accuracies[name], ddof=1))
                 if len(files) > 1 else None))
    for ref, name in pairs:
        ref_files, files = methods[ref], methods[name]
        paired = []
        for pair, (ref_path, path) in enumerate(zip(ref_files, files)):
            result = compare_paired(correct[ref_path], correct[path],
                                    confidence_level, n_resamples, seed)
            verdict = paired_verdict(labels[name], labels[ref], result, alpha)
            if len(files) > 1 or len(ref_files) > 1:
                verdict = f'[pair {pair + 1}] {verdict}'
            paired.append(
                dict(method=name,
                     reference=ref,
                     pair=pair + 1,
                     file=path,
                     reference_file=ref_path,
                     **asdict(result),
                     significant=bool(result.mcnemar_pvalue < alpha),
                     verdict=verdict))
        report['paired'] += paired
        if len(files) >= 2 and len(ref_files) >= 2:
            result = compare_across_seeds(accuracies[ref], accuracies[name],
                                          confidence_level)
            verdict = seeds_verdict(labels[name], labels[ref], result, alpha)
            report['across_seeds'].append(
                dict(method=name,
                     reference=ref,
                     **{
                         k: _finite_or_none(v)
                         for k, v in asdict(result).items()
                     },
                     significant=bool(result.pvalue < alpha),
                     verdict=verdict))
            decided = dict(test='welch', difference=result.difference,
                           significant=report['across_seeds'][-1]
                           ['significant'], verdict=verdict)
        else:
            # One of the two has a single file, so there is one pair.
            (only, ) = paired
            decided = dict(test='mcnemar', difference=only['difference'],
                           significant=only['significant'],
                           verdict=only['verdict'])
        report['comparisons'].append(
            dict(reference=ref, method=name, **decided))
        report['verdicts'].append(decided['verdict'])
    return report


def _p(value: Optional[float]) -> str:
    return 'n/a' if value is None else f'{value:.2g}'


def render_comparison(report: dict) -> str:
    """The report of :func:`compare_students` as the tables and verdict
    lines a reader scans."""
    level = f'{100 * report["confidence_level"]:g}% CI'
    sections = [
        f'Top-1 accuracy (%) on {report["num_images"]} images',
        format_table(['method', 'file', 'accuracy'],
                     [[m['name'], path, f'{acc:.2f}']
                      for m in report['methods']
                      for path, acc in zip(m['files'], m['accuracies'])])
    ]
    if any(len(m['files']) > 1 for m in report['methods']):
        sections += [
            '', 'Across seeds',
            format_table(['method', 'seeds', 'mean', 'std'], [[
                m['name'],
                len(m['files']), f'{m["mean_accuracy"]:.2f}',
                '' if m['std_accuracy'] is None else f'{m["std_accuracy"]:.2f}'
            ] for m in report['methods']])
        ]
    sections += [
        '', 'Paired on the same images (method - reference, points)',
        format_table([
            'method', 'reference', 'pair', 'difference', level,
            'only ref right', 'only method right', 'McNemar p'
        ], [[
            p['method'], p['reference'], p['pair'], f'{p["difference"]:+.2f}',
            f'[{p["ci_low"]:.2f}, {p["ci_high"]:.2f}]', p['only_a_correct'],
            p['only_b_correct'],
            _p(p['mcnemar_pvalue'])
        ] for p in report['paired']])
    ]
    if report['across_seeds']:
        sections += [
            '', 'Welch\'s t-test across seeds (method - reference, points)',
            format_table([
                'method', 'reference', 'seeds', 'difference', level, 't',
                'df', 'p'
            ], [[
                s['method'], s['reference'],
                f'{s["num_seeds_b"]} vs {s["num_seeds_a"]}',
                f'{s["difference"]:+.2f}', 'n/a' if s['ci_low'] is None else
                f'[{s["ci_low"]:.2f}, {s["ci_high"]:.2f}]',
                'n/a' if s['statistic'] is None else f'{s["statistic"]:.2f}',
                'n/a' if s['df'] is None else f'{s["df"]:.1f}',
                _p(s['pvalue'])
            ] for s in report['across_seeds']])
        ]
    sections += ['', 'Verdict'] + report['verdicts']
    return '\n'.join(sections)
