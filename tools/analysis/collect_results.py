# The results table of a tools/reproduce.py work root: per ScaleKD config the
# mean and std top-1 over the seeds of the student alone, logit KD and
# ScaleKD, the gains with their tests, and the paper's figures; see
# mmscalekd/analysis/reproduce_results.py. mmscalekd (torch, scipy) is
# imported once the arguments are parsed, so that `--help` answers at once.
import argparse
import os.path as osp
import sys

REPO_ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Collect the jobs of a tools/reproduce.py work root into '
        'the results table (results.md and results.json there)')
    parser.add_argument('work_root', help='the --work-root of reproduce.py')
    parser.add_argument('--alpha', type=float, default=0.05,
                        help='significance level of the tests (default: '
                        '0.05)')
    parser.add_argument('--n-resamples', type=int, default=9999,
                        help='bootstrap resamples of the paired intervals '
                        '(default: 9999)')
    parser.add_argument(
        '--update-metafile', action='store_true',
        help='write each config\'s mean top-1 as `Reproduced Top 1 '
        'Accuracy` into the metafile and fill the README\'s reproduced '
        'column')
    parser.add_argument('--metafile',
                        help='default: configs/scalekd/metafile.yml')
    parser.add_argument('--readme',
                        help='default: the README.md beside the metafile')
    parser.add_argument('--verbose', action='store_true',
                        help='print the traceback of an error')
    args = parser.parse_args(argv)
    if not 0 < args.alpha < 1:
        parser.error(f'--alpha {args.alpha} must be between 0 and 1.')
    return args


def main(argv=None) -> dict:
    args = parse_args(argv)
    sys.path.insert(0, REPO_ROOT)
    from mmscalekd.utils.command_line import report_errors
    report_errors(verbose=args.verbose)
    from mmscalekd.analysis import reproduce_results as collect
    from mmscalekd.config_builder.writer import shipped_file
    work_root = osp.abspath(args.work_root)
    results = collect.collect_results(work_root, args.alpha,
                                      args.n_resamples)
    paths = collect.write_results(results, work_root)
    print(collect.render_results(results))
    print(f'[collect] {" and ".join(paths)}')
    if args.update_metafile:
        metafile = args.metafile or shipped_file('scalekd', 'metafile.yml')
        readme = args.readme or osp.join(osp.dirname(metafile), 'README.md')
        names = collect.update_metafile(metafile, results['configs'])
        in_readme = collect.update_readme(readme, results['configs'])
        print(f'[collect] {collect.REPRODUCED_METRIC} of '
              f'{", ".join(names) or "no config"} in {metafile}; the '
              f'reproduced column of {", ".join(in_readme) or "no config"} '
              f'in {readme}')
    return results


if __name__ == '__main__':
    main()
