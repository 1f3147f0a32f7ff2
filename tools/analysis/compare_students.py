# Is one student's gain over another real? Compare tools/test.py predictions.
# mmscalekd (torch, scipy) is imported once the arguments are parsed, so that
# `--help` answers at once.
import argparse
import json
from typing import Dict, List, Optional, Sequence

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
it comes from McNemar's test. The statistics are
mmscalekd.analysis.compare_students, which tools/quickstart.py runs too.
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
    parser.add_argument('--verbose',
                        action='store_true',
                        help='print the traceback of an error')
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


def main(argv: Optional[Sequence[str]] = None) -> dict:
    args = parse_args(argv)
    from mmscalekd.utils.command_line import report_errors
    report_errors(verbose=args.verbose)
    from mmscalekd.analysis import compare_students, render_comparison
    report = compare_students(args.methods, args.alpha, args.n_resamples,
                              args.seed)
    print(render_comparison(report))
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(report, f, indent=2)
    return report


if __name__ == '__main__':
    main()
