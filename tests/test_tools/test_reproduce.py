"""tools/reproduce.py and tools/analysis/collect_results.py end to end on the
smoke config with two seeds: the plan with its cost estimate, one task of
the slurm array script (no sbatch or srun here) and the command lines run
with bash, a rerun that skips finished jobs, a killed job that resumes, and
the table, checked against compare_students on the same prediction files."""
import json
import os
import os.path as osp
import re
import shlex
import shutil
import sys

import numpy as np
import pytest

from mmscalekd.analysis import (accuracy, compare_students, load_predictions,
                                reproduce)
from mmscalekd.analysis.reproduce_results import (REPRODUCED_METRIC,
                                                  collect_results)
from tests.conftest import REPO_ROOT, SMOKE_CONFIG, load_tool, run_command

TOOL = osp.join(REPO_ROOT, 'tools', 'reproduce.py')
COLLECT = osp.join(REPO_ROOT, 'tools', 'analysis', 'collect_results.py')
# Two epochs of 64 images: seconds per job, and accuracies that differ.
SHORT = ['--cfg-options', 'train_cfg.max_epochs=2',
         'train_dataloader.dataset.num_samples=64']
SMOKE_ENTRY = """\
  - Name: scalekd_smoke_synthetic
    In Collection: ScaleKD
    Metadata:
      Strategy: traditional
    Config: configs/smoke/scalekd_smoke_synthetic.py
"""
SMOKE_ROW = ('| [scalekd_smoke_synthetic](../smoke/scalekd_smoke_synthetic.py)'
             ' | smoke | – |')


def _bash(line):
    return run_command(['bash', '-c', f'OMP_NUM_THREADS=1 {line}'])


def _output(result):
    return result.stdout + result.stderr


@pytest.mark.slow
def test_the_table_end_to_end(tmp_path):
    root = str(tmp_path / 'table')
    # the plan, its cost measured here, one command line per job
    plan_args = [sys.executable, TOOL, SMOKE_CONFIG, '--seeds', '0', '1',
                 '--work-root', root, '--estimate-steps', '1', *SHORT]
    planned = run_command(plan_args + ['--launcher', 'list']).stdout
    assert 'measured on cpu' in planned
    costs = json.load(open(osp.join(root, 'estimate.json')))
    assert costs['device'] == 'cpu' and len(costs['jobs']) == 6
    for row in costs['jobs']:
        assert row['images'] == 2 * 64 and row['images_per_s'] > 0
        assert row['gpu_hours'] == pytest.approx(
            128 / row['images_per_s'] / 3600)
    with open(osp.join(root, 'commands.txt')) as f:
        lines = f.read().splitlines()
    assert lines == [f'{shlex.quote(sys.executable)} -u {TOOL} --run-job {i} '
                     f'--work-root {root}' for i in range(6)]
    assert '\n'.join(lines) in planned  # printed too
    plan = reproduce.read_plan(root)
    assert [(j.method, j.seed) for j in plan.jobs] == [
        (m, s) for s in (0, 1) for m in reproduce.METHODS]

    # the same plan for slurm: the same indices, one array task each
    output = run_command(plan_args + ['--launcher', 'slurm',
                                      '--no-estimate']).stdout
    script = osp.join(root, 'reproduce.sbatch')
    assert f'sbatch {script}' in output and 'measured' not in output
    text = open(script).read()
    assert '#SBATCH --array=0-5' in text and '#SBATCH --requeue' in text
    assert reproduce.read_plan(root).jobs == plan.jobs
    # task 0 through the script; without slurm it runs the job itself
    assert shutil.which('srun') is None and shutil.which('sbatch') is None
    _bash(f'SLURM_ARRAY_TASK_ID=0 bash {script}')
    assert reproduce.job_result(plan.jobs[0])['seed'] == 0

    # what is not finished is listed, not dropped
    partial = collect_results(root, n_resamples=99)
    assert [j['index'] for j in partial['missing']] == [1, 2, 3, 4, 5]
    (row, ) = partial['rows']
    assert 'methods' not in row and len(row['missing']) == 5

    # every command line: job 0 is skipped, the others train
    ran = _output(_bash(f'bash {osp.join(root, "commands.txt")}'))
    assert ran.count('is done') == 1 and 'job 0 (' in ran
    results = [reproduce.job_result(j) for j in plan.jobs]
    assert all(results)

    # a job killed after its first epoch: its files as the kill left them
    killed = plan.jobs[5]
    for name in ('result.json', 'preds.pkl', 'epoch_2.pth',
                 'epoch_2_student.pth'):
        os.remove(osp.join(killed.work_dir, name))
    first = osp.join(killed.work_dir, 'epoch_1.pth')
    with open(osp.join(killed.work_dir, 'last_checkpoint'), 'w') as f:
        f.write(first)
    mtime = os.stat(first).st_mtime_ns
    resumed = _output(_bash(lines[5]))
    assert 'resumed epoch: 1' in resumed
    assert os.stat(first).st_mtime_ns == mtime  # epoch 1 not trained again
    assert osp.isfile(osp.join(killed.work_dir, 'epoch_2.pth'))
    assert reproduce.job_result(killed) is not None

    # the table, the metafile and README of a copy updated
    metafile, readme = tmp_path / 'metafile.yml', tmp_path / 'README.md'
    shutil.copy(osp.join(REPO_ROOT, 'configs', 'scalekd', 'metafile.yml'),
                metafile)
    metafile.write_text(metafile.read_text() + SMOKE_ENTRY)
    readme.write_text('| Config | Change | Top-1 (%), reproduced |\n'
                      '| :-- | :-- | :-: |\n' + SMOKE_ROW + '\n')
    collected = run_command([sys.executable, COLLECT, root,
                             '--update-metafile', '--metafile',
                             str(metafile), '--readme', str(readme)]).stdout
    table = json.load(open(osp.join(root, 'results.json')))
    assert table['missing'] == []
    (row, ) = table['rows']
    assert row['seeds'] == [0, 1]
    assert row['paper'] == dict(scalekd=None, alone=None)
    files = {m: [osp.join(root, row['configs'][m], f'seed{s}', 'preds.pkl')
                 for s in (0, 1)] for m in reproduce.METHODS}
    for method, paths in files.items():
        accuracies = [accuracy(load_predictions(p).correct) for p in paths]
        assert row['methods'][method]['accuracies'] == accuracies
        assert row['methods'][method]['mean'] == pytest.approx(
            np.mean(accuracies))
        assert row['methods'][method]['std'] == pytest.approx(
            np.std(accuracies, ddof=1))
    report = compare_students(files, pairs=[('alone', 'scalekd'),
                                            ('logit_kd', 'scalekd')])
    for reference in ('alone', 'logit_kd'):
        gain = row['gains'][reference]
        (welch, ) = [s for s in report['across_seeds']
                     if s['reference'] == reference]
        assert gain['test'] == 'welch'
        assert gain['difference'] == pytest.approx(welch['difference'])
        assert gain['pvalue'] == welch['pvalue']
        assert gain['paired_pvalues'] == [
            p['mcnemar_pvalue'] for p in report['paired']
            if p['reference'] == reference]
    markdown = open(osp.join(root, 'results.md')).read()
    mean, std = (row['methods']['scalekd'][k] for k in ('mean', 'std'))
    assert f'| {mean:.2f} ± {std:.2f} |' in markdown
    assert markdown in collected
    assert (f'{REPRODUCED_METRIC}: {mean:.2f}\n'
            f'    Config: configs/smoke/scalekd_smoke_synthetic.py') in \
        metafile.read_text()
    assert readme.read_text().splitlines()[-1] == SMOKE_ROW.replace(
        '| – |', f'| {mean:.2f} ± {std:.2f} (2 seeds) |')


def test_readmes_commands_parse():
    """The commands of configs/scalekd/README.md's "Reproducing the table"
    are ones the tools take."""
    tool, collect = load_tool(TOOL), load_tool(COLLECT)
    with open(osp.join(REPO_ROOT, 'configs', 'scalekd', 'README.md')) as f:
        section = f.read().split('## Reproducing the table')[1]
    block = re.search(r'```shell\n(.*?)```', section, re.S).group(1)
    commands = [line for line in block.replace('\\\n', ' ').splitlines()
                if line.startswith('python ')]
    parsed = []
    for command in commands:
        words = shlex.split(command)
        module = tool if words[1] == 'tools/reproduce.py' else collect
        parsed.append(module.parse_args(words[2:]))
    assert [getattr(a, 'table', None) for a in parsed] == [
        'advanced', 'traditional', None]
    assert parsed[0].launcher == 'slurm' and parsed[0].gpus == 8
    assert parsed[2].update_metafile


def test_run_job_needs_a_plan(tmp_path):
    with pytest.raises(FileNotFoundError, match=r'has no jobs\.json: plan'):
        reproduce.run_job(str(tmp_path), 0, None, None)
    with pytest.raises(FileNotFoundError, match=r'has no jobs\.json: it is '
                       'no work root'):
        collect_results(str(tmp_path))
