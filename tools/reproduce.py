# The paper's table in one command: plan every job of a set of ScaleKD configs
# (student alone, logit KD, ScaleKD, per seed) for slurm or any scheduler,
# estimate their cost, and run one job; see mmscalekd/analysis/reproduce.py.
# torch and mmscalekd are imported once the arguments are parsed, so that
# `--help` answers at once.
import argparse
import os.path as osp
import sys

REPO_ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
TOOLS = osp.dirname(osp.abspath(__file__))

# mmscalekd.analysis.reproduce.TABLES (tested to agree), so that `--help`
# imports no model code.
TABLE_NAMES = ('advanced', 'traditional', 'ablations')

EPILOG = """\
Examples:
  reproduce.py --table advanced --seeds 0 1 2 --work-root work_dirs/table \\
      --gpus 8 --launcher slurm --partition gpu
  reproduce.py configs/smoke/scalekd_smoke_synthetic.py --seeds 0 1 \\
      --work-root work_dirs/smoke_table --launcher list --no-estimate
  bash work_dirs/smoke_table/commands.txt
  python tools/analysis/collect_results.py work_dirs/smoke_table
"""


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Plan the training jobs of the paper\'s table: for each '
        'ScaleKD config the student alone, logit KD and ScaleKD at each '
        'seed; write a slurm array script or a file of command lines, and '
        'estimate the cost',
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('configs', nargs='*', metavar='CONFIG',
                        help='ScaleKD configs (instead of, or beside, '
                        '--table)')
    parser.add_argument(
        '--table',
        help='a named set of configs/scalekd/metafile.yml: advanced or '
        'traditional (the scalekd_* configs of that Strategy), ablations '
        '(the scalekd-* and fd_* configs)')
    parser.add_argument('--seeds', nargs='+', type=int, default=[0, 1, 2],
                        help='training seeds of every job (default: 0 1 2)')
    parser.add_argument('--work-root', required=True,
                        help='where the plan, the configs derived for it and '
                        'one folder per job (<config name>/seed<k>) go')
    parser.add_argument('--gpus', type=int, default=1,
                        help='GPUs per job (default: 1)')
    parser.add_argument(
        '--launcher', choices=['slurm', 'torchrun', 'list'], default='list',
        help='slurm: an array script (one task per job, requeued and '
        'resumed on pre-emption); torchrun: commands.txt, one command line '
        'per job (torchrun --nproc_per_node N for N > 1 GPUs, python for '
        '1); list: the same file, its lines also printed (for another '
        'scheduler). Default: list')
    parser.add_argument('--partition', default='gpu',
                        help='slurm partition of the array job')
    parser.add_argument('--gpus-per-node', type=int, default=8,
                        help='GPUs of a slurm node (default: 8)')
    parser.add_argument('--cpus-per-gpu', type=int, default=5,
                        help='CPUs per slurm task (default: 5)')
    parser.add_argument('--cfg-options', nargs='+', action='extend',
                        metavar='KEY=VALUE',
                        help='override settings of every job, e.g. '
                        'model.teacher.checkpoint=teacher.pth')
    parser.add_argument('--no-estimate', action='store_true',
                        help='plan without measuring the cost')
    parser.add_argument('--estimate-steps', type=int, default=3,
                        help='timed train steps per measurement (default: 3)')
    parser.add_argument('--estimate-device',
                        help='cpu or cuda (default: cuda where there is one)')
    parser.add_argument('--estimate-batch-size', type=int,
                        help='images per measured step (default: the '
                        "config's batch per GPU; a shipped config's step "
                        'at that batch takes minutes on a CPU)')
    parser.add_argument('--run-job', type=int, metavar='K',
                        help='run job K of the plan in --work-root (what '
                        'the array tasks and the command lines run)')
    parser.add_argument('--job-launcher', default='none',
                        choices=['none', 'pytorch', 'slurm'],
                        help='with --run-job: the launcher of tools/train.py '
                        'and tools/test.py (pytorch under torchrun, slurm '
                        'under srun)')
    parser.add_argument('--verbose', action='store_true',
                        help='print the traceback of an error')
    args = parser.parse_args(argv)
    if args.run_job is None and not args.configs and args.table is None:
        parser.error('give --table NAME or CONFIG files (or --run-job K).')
    if args.gpus < 1 or args.estimate_steps < 1:
        parser.error('--gpus and --estimate-steps must be >= 1.')
    return args


def load_tool(name: str):
    """tools/<name>.py as a module (the job runs its main in-process)."""
    import importlib.util
    spec = importlib.util.spec_from_file_location(
        f'tools_{name}', osp.join(TOOLS, f'{name}.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_one(args):
    from mmscalekd.analysis.reproduce import run_job
    train, test = load_tool('train'), load_tool('test')
    run_job(osp.abspath(args.work_root), args.run_job, train.main, test.main,
            args.job_launcher)


def plan(args):
    import shlex

    import torch

    from mmscalekd.analysis import reproduce
    from mmscalekd.analysis.sweep import write_json
    configs = list(args.configs)
    if args.table is not None:
        configs = reproduce.table_configs(args.table) + configs
    work_root = osp.abspath(args.work_root)
    options = list(args.cfg_options or [])
    full, selected = reproduce.plan_jobs(configs, args.seeds, work_root,
                                         options)
    reproduce.write_plan(full)
    todo = [i for i in selected
            if reproduce.job_result(full.jobs[i]) is None]
    print(f'[reproduce] {len(selected)} jobs ({len(selected) - len(todo)} '
          f'done) for {len(configs)} ScaleKD configs x {len(args.seeds)} '
          f'seeds in {work_root}; jobs.txt lists them')
    if not args.no_estimate and todo:
        device = args.estimate_device or (
            'cuda' if torch.cuda.is_available() else 'cpu')
        costs = reproduce.estimate_costs(
            full, todo, args.gpus, device, args.estimate_steps,
            args.estimate_batch_size)
        write_json(osp.join(work_root, 'estimate.json'), costs)
        print(reproduce.render_costs(costs))
    tool = osp.abspath(__file__)
    if args.launcher == 'slurm':
        import os
        os.makedirs(osp.join(work_root, 'slurm'), exist_ok=True)
        script = osp.join(work_root, 'reproduce.sbatch')
        with open(script, 'w') as f:
            f.write(reproduce.slurm_script(
                tool, work_root, selected, args.gpus, args.partition,
                args.gpus_per_node, args.cpus_per_gpu))
        print(f'[reproduce] submit: sbatch {shlex.quote(script)}')
    else:
        lines = [reproduce.job_command(tool, work_root, i, args.gpus)
                 for i in selected]
        path = osp.join(work_root, 'commands.txt')
        with open(path, 'w') as f:
            f.write('\n'.join(lines) + '\n')
        if args.launcher == 'list':
            print('\n'.join(lines))
        print(f'[reproduce] one job per line: {path} (run them all here: '
              f'bash {shlex.quote(path)})')
    collect = osp.join(TOOLS, 'analysis', 'collect_results.py')
    print(f'[reproduce] then the table: {shlex.quote(sys.executable)} '
          f'{shlex.quote(collect)} {shlex.quote(work_root)}')


def main(argv=None):
    args = parse_args(argv)
    sys.path.insert(0, REPO_ROOT)
    from mmscalekd.utils.command_line import report_errors
    report_errors(verbose=args.verbose)
    if args.run_job is not None:
        run_one(args)
    else:
        plan(args)


if __name__ == '__main__':
    main()
