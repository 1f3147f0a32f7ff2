"""The quick start: a small, honest test of the paper's claim, on a CPU.

The claim (ScaleKD, tables 2-4): a ViT teacher pre-trained on more data than
the student sees makes the student better through ScaleKD than alone or
through logit distillation, and more so the more pre-training data the
teacher had. The quick start asks the same on scikit-learn's digits
(nothing downloaded; mmscalekd/analysis/quickstart.py has the design):

- students: an MLP-Mixer (8x8 tokens) on 150 labelled digits;
- teachers: a plain ViT (8x8 tokens) pre-trained on 25, 50 and 100% of a
  pool of deformed variants of 847 other digits, for the same number of
  steps;
- choices (logit KD's temperature, ScaleKD's loss weights) on 300
  validation digits; the verdict on 500 test digits nothing was tuned on.

Writes ``report.md``, ``report.json`` and ``gain.png`` to the work dir.
Usage: ``python tools/quickstart.py [--fast] [--work-dir DIR]``; ``make
quickstart`` runs the default. Stopped and started again with the same
arguments, it trains only what is unfinished.
"""
import argparse
import os.path as osp
import sys
import time

REPO_ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Test the paper\'s claim on the digits: teachers '
        'pre-trained on 25/50/100%% of a pool, students alone, with logit KD '
        'and with ScaleKD over seeds, a report with verdicts')
    parser.add_argument('--work-dir', default='work_dirs/quickstart')
    parser.add_argument('--data-root', default='data/digits_pool')
    parser.add_argument(
        '--fast',
        action='store_true',
        help="2 pool sizes (25, 100%%), 2 seeds, shorter schedules: about "
        'a third of the time')
    parser.add_argument('--seeds', type=int, default=None,
                        help='seeds per student (default 3, 2 with --fast)')
    parser.add_argument('--teacher-epochs', type=int, default=None,
                        help='epochs of the teacher on the 100%% pool (the '
                        'others train as many steps); shortens the runs')
    parser.add_argument('--student-epochs', type=int, default=None)
    parser.add_argument(
        '--workers',
        type=int,
        default=2,
        help='runs trained at once, in processes of --threads threads each '
        '(default 2: one per core of a 2-core machine)')
    parser.add_argument('--threads', type=int, default=1)
    parser.add_argument('--alpha', type=float, default=0.05)
    parser.add_argument(
        '--verbose',
        action='store_true',
        help="also print each run's environment, config and hook order "
        '(always in its log file), and the traceback of an error')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    start = time.time()
    sys.path.insert(0, REPO_ROOT)
    from mmscalekd.utils.command_line import report_errors
    report_errors(verbose=args.verbose)
    from mmscalekd.analysis import quickstart as qs
    from mmscalekd.analysis.quickstart_report import write_report
    from mmscalekd.datasets.digits_pool import prepare_digits_pool

    profile = dict(qs.PROFILES['fast' if args.fast else 'default'])
    for key in ('seeds', 'teacher_epochs', 'student_epochs'):
        if getattr(args, key) is not None:
            profile[key] = getattr(args, key)
    for key, least in (('seeds', 2), ('workers', 1), ('threads', 1)):
        value = profile.get(key, getattr(args, key))
        if value < least:
            raise ValueError(
                f'`--{key} {value}` must be at least {least}' +
                (" (Welch's test across seeds needs two)." if key == 'seeds'
                 else '.'))
    work_dir = osp.abspath(args.work_dir)
    data_root = osp.abspath(args.data_root)
    counts = prepare_digits_pool(data_root)
    print(f'[quickstart] digits in {data_root}: {counts["train"]} train, '
          f'{counts["val"]} val, {counts["test"]} test; pool of '
          f'{counts["pool_sources"]} digits x 6 variants', flush=True)
    jobs = qs.plan_jobs(profile['percents'], profile['seeds'])
    print(f'[quickstart] {len(jobs)} runs, {args.workers} at a time with '
          f'{args.threads} thread(s) each; work dir {work_dir}', flush=True)
    results = qs.run_jobs(jobs, work_dir, data_root, profile, args.workers,
                          args.threads, args.verbose)
    minutes = (time.time() - start) / 60
    report = write_report(work_dir, results, profile, counts, args.alpha,
                          minutes)
    print('\n' + report['summary'] + '\n')
    print(f'[quickstart] report: {osp.join(work_dir, "report.md")} '
          f'({minutes:.1f} min)')


if __name__ == '__main__':
    main()
