# Does ScaleKD help on this data, and with which weights? Trains the student
# alone, logit KD and ScaleKD over a grid of settings and seeds on a
# shortened schedule, chooses on the validation split, judges on the held-out
# test split; see mmscalekd/analysis/sweep.py.
import argparse
import os
import os.path as osp
import shlex
import sys

REPO_ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def subset_value(text: str):
    """'200' -> 200 images; '0.25' -> a quarter of them."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f'{text!r} is neither a number of images nor a fraction')
    return value if '.' in text or 'e' in text.lower() else int(value)


# mmscalekd.analysis.sweep.PRESETS by name (tested to agree), so that
# `--help` imports no model code.
PRESET_NAMES = ('attention', 'kd', 'weights')


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Sweep ScaleKD settings against the student alone and '
        'logit KD; choose on val, give the verdict on test',
        epilog='Example: sweep.py configs/my_scalekd.py --grid '
        'spatial_weight=0.04,0.08 frequency_weight=0.03,0.06 --seeds 0 1 '
        '--epochs 5 --subset 0.25')
    parser.add_argument('config', help='a ScaleKD distillation config')
    parser.add_argument(
        '--grid', nargs='+', default=[], metavar='KEY=V1,V2',
        help='values to sweep; keys: spatial_weight, frequency_weight '
        '(every stage\'s loss), softmax_scale (every stage\'s projector), '
        'tau, alpha (model.logit_kd). Settings are the product of the lists')
    parser.add_argument(
        '--preset', choices=PRESET_NAMES,
        help='a named grid of factors on the config\'s own values: weights '
        '(spatial and frequency loss weights at 0.5x, 1x, 2x), kd (tau and '
        'alpha), attention (projector softmax scale); sweep.md lists each '
        'run\'s values; --grid keys override its own')
    parser.add_argument('--seeds', nargs='+', type=int, default=[0, 1],
                        help='training seeds of every run (default: 0 1)')
    parser.add_argument('--epochs', type=int,
                        help='shortened schedule (same shape, fewer epochs)')
    parser.add_argument(
        '--subset', type=subset_value,
        help='train on this many training images (an integer) or this '
        'share of them (a fraction), the same ones in every run')
    parser.add_argument('--work-dir',
                        help='default: work_dirs/sweep/<config stem>')
    parser.add_argument(
        '--launcher', choices=['local', 'slurm'], default='local',
        help='local: the runs one after another here; slurm: write an array '
        'job script (one task per run) and print the --collect command')
    parser.add_argument('--partition', default='gpu',
                        help='slurm partition of the array job')
    parser.add_argument(
        '--collect', action='store_true',
        help='write the report from the finished runs in the work dir')
    parser.add_argument('--run', metavar='NAME',
                        help='train this one run (a slurm array task)')
    parser.add_argument(
        '--threads', type=int, default=1,
        help='torch and OpenMP threads of each run (default 1: on a loaded '
        'small machine, more threads than free cores slow a small model '
        'down several times)')
    parser.add_argument('--alpha', type=float, default=0.05,
                        help='significance level of the verdicts')
    parser.add_argument('--cfg-options', nargs='+', action='extend',
                        metavar='KEY=VALUE',
                        help='override config settings of every run, e.g. '
                        'model.teacher.checkpoint=teacher.pth')
    parser.add_argument('--verbose', action='store_true',
                        help='print each run\'s start-up details and the '
                        'traceback of an error')
    args = parser.parse_args(argv)
    args.raw_cfg_options = list(args.cfg_options or [])
    from mmscalekd.utils.command_line import dict_options
    return dict_options(args, 'cfg_options')


def slurm_script(args, config, runs, grid, work_dir) -> str:
    """An array job, one task per run; each task requeues on preemption and
    its run auto-resumes from its own work dir."""
    tool = osp.abspath(__file__)
    command = [sys.executable, '-u', tool, osp.abspath(config),
               '--work-dir', work_dir, '--seeds', *map(str, args.seeds),
               '--threads', str(args.threads), '--grid']
    command += [f'{k}=' + ','.join(f'{v:g}' for v in vs)
                for k, vs in grid.items()]
    if args.epochs is not None:
        command += ['--epochs', str(args.epochs)]
    if args.subset is not None:
        command += ['--subset', str(args.subset)]
    if args.raw_cfg_options:
        command += ['--cfg-options', *args.raw_cfg_options]
    names = '\n'.join(f'    {r.name}' for r in runs)
    return f'''#!/usr/bin/env bash
#SBATCH --job-name=sweep
#SBATCH --partition={args.partition}
#SBATCH --array=0-{len(runs) - 1}
#SBATCH --ntasks=1
#SBATCH --gres=gpu:1
#SBATCH --cpus-per-task={max(args.threads, 1)}
#SBATCH --requeue
#SBATCH --output={work_dir}/slurm/%A_%a.out
# One task per run of the sweep; a requeued task resumes its run from the
# newest checkpoint of the run's own work dir.
RUNS=(
{names}
)
RUN=${{RUNS[$SLURM_ARRAY_TASK_ID]}}
export OMP_NUM_THREADS=${{SLURM_CPUS_PER_TASK:-1}}
PYTHONPATH={shlex.quote(REPO_ROOT)}:$PYTHONPATH \\
srun --kill-on-bad-exit=1 {' '.join(map(shlex.quote, command))} \\
    --run "$RUN"
'''


def main(argv=None):
    # Before anything imports torch, so that OpenMP starts with these
    # threads (parse_args imports the package).
    threads = argparse.ArgumentParser(add_help=False)
    threads.add_argument('--threads', type=int, default=1)
    os.environ['OMP_NUM_THREADS'] = str(
        threads.parse_known_args(argv)[0].threads)
    sys.path.insert(0, REPO_ROOT)
    args = parse_args(argv)
    from mmscalekd.utils.command_line import report_errors
    report_errors(verbose=args.verbose)
    import torch
    from mmengine.config import Config

    from mmscalekd.analysis import sweep
    from mmscalekd.analysis.sweep_report import write_sweep_report
    torch.set_num_threads(args.threads)

    cfg = Config.fromfile(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    sweep.check_distillation_config(cfg, args.config)
    sweep.check_held_out(cfg)
    grid = sweep.preset_grid(cfg, args.preset) if args.preset else {}
    grid.update(sweep.parse_grid(args.grid) if args.grid or not grid else {})
    sweep.check_grid_fits(cfg, grid)
    sweep.check_seeds(args.seeds)
    runs = sweep.plan_runs(grid, args.seeds)
    stem = osp.splitext(osp.basename(args.config))[0]
    work_dir = osp.abspath(args.work_dir
                           or osp.join('work_dirs', 'sweep', stem))
    os.makedirs(work_dir, exist_ok=True)

    if args.run is not None:
        (run, ) = [r for r in runs if r.name == args.run] or [None]
        if run is None:
            raise KeyError(f'`--run {args.run}` is not a run of this sweep; '
                           f'its runs: {", ".join(r.name for r in runs)}.')
        sweep.train_run(cfg, run, work_dir, args.epochs,
                        sweep.subset_indices(cfg, args.subset), args.verbose)
        return
    if args.launcher == 'slurm' and not args.collect:
        script = osp.join(work_dir, 'sweep.sbatch')
        os.makedirs(osp.join(work_dir, 'slurm'), exist_ok=True)
        with open(script, 'w') as f:
            f.write(slurm_script(args, args.config, runs, grid, work_dir))
        print(f'[sweep] {len(runs)} runs: sbatch {script}')
        given = list(sys.argv[1:] if argv is None else argv)
        kept = [a for i, a in enumerate(given)
                if a != '--launcher' and not a.startswith('--launcher=')
                and (i == 0 or given[i - 1] != '--launcher')]
        print('[sweep] when they are done, the report: '
              + ' '.join(map(shlex.quote, [sys.executable, osp.abspath(
                  __file__), *kept, '--collect'])))
        return
    indices = sweep.subset_indices(cfg, args.subset)
    if args.collect:
        left = sweep.unfinished(cfg, runs, work_dir, args.epochs, indices)
        if left:
            raise FileNotFoundError(
                f'{len(left)} of the {len(runs)} runs have no result.json in '
                f'{work_dir} for these arguments yet '
                f'({", ".join(r.name for r in left)}): wait '
                'for their jobs, or rerun the sweep without --collect to '
                'train them.')
        results = [sweep.read_result(osp.join(work_dir, r.name))
                   for r in runs]
    else:
        print(f'[sweep] {len(runs)} runs in {work_dir}: '
              f'{len(args.seeds)} seeds x (student alone, logit KD, '
              f'{len(runs) // len(args.seeds) - 2} ScaleKD settings)',
              flush=True)
        results = sweep.run_sweep(cfg, runs, work_dir, args.epochs, indices,
                                  args.verbose)
    report = write_sweep_report(results, args.config, cfg, args.cfg_options,
                                work_dir, args.alpha)
    print(f'\n{report["summary"]}')
    for verdict in report['chosen_verdicts']:
        print(verdict)
    print(f'[sweep] report: {osp.join(work_dir, "sweep.md")}; recommended '
          f'config: {report["recommended_config"]}')


if __name__ == '__main__':
    main()
