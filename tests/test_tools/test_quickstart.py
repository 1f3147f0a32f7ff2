"""A shortened quick start: its report holds the numbers its runs produced,
its choices are made on val, and a second start trains only what is
unfinished."""
import json
import os

import numpy as np
import pytest
from PIL import Image

from mmscalekd.analysis import statistics as st
from mmscalekd.analysis.quickstart import CHOICES, plan_jobs
from tests.conftest import run_command

SHORT = ['--fast', '--teacher-epochs', '1', '--student-epochs', '1']


def _accuracy(path):
    return 100 * st.load_predictions(str(path)).correct.mean()


def test_plan_lists_each_job_after_the_jobs_it_needs():
    jobs = plan_jobs((25, 50, 100), 3)
    names = [j.name for j in jobs]
    assert len(names) == len(set(names))
    # 3 teachers, 3 alone, 2 + 2 candidates, and 2 methods x 3 pools x 3
    # seeds less the two candidates' runs that are kept
    assert len(jobs) == 3 + 3 + 4 + 2 * 3 * 3 - 2
    for i, job in enumerate(jobs):
        assert set(job.needs) <= set(names[:i]), job
    chosen_later = [j for j in jobs if j.kind == 'scalekd' and
                    not j.choosing]
    assert all('scalekd_swin-weights_pool100_seed0' in j.needs
               for j in chosen_later)
    assert sorted({j.seed for j in jobs if j.kind == 'alone'}) == [0, 1, 2]


@pytest.mark.slow
def test_shortened_quickstart_report_matches_its_runs(tmp_path):
    work_dir = tmp_path / 'quickstart'
    command = ['python', 'tools/quickstart.py', '--work-dir',
               str(work_dir), '--data-root', str(tmp_path / 'digits')] + SHORT
    output = run_command(command).stdout
    # the runs' own logs go to files: the console shows one line a run
    assert 'Epoch(train)' not in output
    assert output.count('jobs left') == 14
    logs = os.listdir(work_dir / 'logs')
    assert len(logs) == 14 and 'teacher_pool25.log' in logs

    with open(work_dir / 'report.json') as f:
        report = json.load(f)
    with open(work_dir / 'report.md') as f:
        markdown = f.read()
    # the choices are the candidates' best on val, with the 100% teacher
    for method, choice in report['choices'].items():
        accuracies = {
            c: _accuracy(work_dir / f'{method}_{c}_pool100_seed0' /
                         'val_preds.pkl') for c in CHOICES[method]
        }
        assert choice['val_accuracy'] == pytest.approx(accuracies)
        # the best on val; on a tie, the first listed
        names = list(CHOICES[method])
        assert choice['chosen'] == max(
            names, key=lambda c: (accuracies[c], -names.index(c)))
    scalekd_choice = report['choices']['scalekd']['chosen']
    for row in report['rows']:
        p = row['percent']
        folders = dict(
            alone=[f'alone_seed{s}' for s in range(2)],
            logit_kd=[f'logit_kd_pool{p}_seed{s}' for s in range(2)],
            scalekd=[f'scalekd_pool{p}_seed{s}' for s in range(2)])
        if p == 100:
            logit_choice = report['choices']['logit_kd']['chosen']
            folders['logit_kd'][0] = f'logit_kd_{logit_choice}_pool100_seed0'
            folders['scalekd'][0] = f'scalekd_{scalekd_choice}_pool100_seed0'
        for method, names in folders.items():
            accuracies = [
                _accuracy(work_dir / n / 'test_preds.pkl') for n in names
            ]
            assert row['accuracies'][method] == pytest.approx(accuracies)
            assert len(st.load_predictions(
                str(work_dir / names[0] / 'test_preds.pkl')).correct) == 500
        (vs_alone, ) = [c for c in row['comparisons']
                        if (c['reference'], c['method']) ==
                        ('alone', 'scalekd')]
        assert vs_alone['difference'] == pytest.approx(
            np.mean(row['accuracies']['scalekd']) -
            np.mean(row['accuracies']['alone']))
        assert vs_alone['test'] == 'welch'
        assert vs_alone['verdict'] in markdown
        assert row['gains']['scalekd']['difference'] == pytest.approx(
            vs_alone['difference'])
    assert report['trend']['verdict'] in markdown
    assert report['verdict'] in markdown and report['verdict'] in output
    assert 'ScaleKD beats' in report['verdict'] or \
        'does **not** beat' in report['verdict']
    assert 'tables 2-4' in markdown  # the paper's claim beside the numbers
    image = Image.open(work_dir / 'gain.png')
    assert image.size[0] > 100 and len(set(image.convert('L').getdata())) > 2

    # A cut run (no result.json) is the only one trained again.
    cut = work_dir / 'scalekd_pool25_seed1'
    os.remove(cut / 'result.json')
    before = os.path.getmtime(work_dir / 'teacher_pool25' / 'result.json')
    output = run_command(command).stdout
    assert output.count('finished earlier') == 13
    assert output.count('jobs left') == 1
    assert (cut / 'result.json').is_file()
    assert os.path.getmtime(
        work_dir / 'teacher_pool25' / 'result.json') == before


def test_one_seed_is_refused(tmp_path):
    result = run_command(['python', 'tools/quickstart.py', '--seeds', '1',
                          '--work-dir', str(tmp_path / 'w')], check=False)
    assert result.returncode != 0
    assert "`--seeds 1` must be at least 2 (Welch's test" in result.stderr
