"""A shortened quick start: its report holds the numbers its runs produced."""
import json
import os.path as osp
import re

import numpy as np
import pytest
from PIL import Image

from mmscalekd.analysis import statistics as st
from tests.conftest import run_command

METHODS = ('alone', 'logit_kd', 'scalekd')


@pytest.mark.slow
def test_shortened_quickstart_report_matches_its_runs(tmp_path):
    work_dir = tmp_path / 'quickstart'
    result = run_command([
        'python', 'tools/quickstart.py', '--work-dir',
        str(work_dir), '--data-root',
        str(tmp_path / 'digits'), '--seeds', '2', '--teacher-epochs', '1',
        '--student-epochs', '1'
    ])
    output = result.stdout
    assert 'step 7/7' in output  # progress: teacher + 3 methods x 2 seeds
    # Each run shows its progress and results, about 15 lines (330 with the
    # environment, config and hooks, which its log file keeps).
    runs = output.split('[quickstart] step ')[1:]
    assert len(runs) == 7
    for run in runs[:-1]:
        assert len(run.splitlines()) <= 18, run
        assert 'Epoch(test)' in run and 'System environment' not in run
    assert 'MultiScaleDeformableAttention' not in result.stderr

    with open(work_dir / 'report.json') as f:
        report = json.load(f)
    with open(work_dir / 'report.md') as f:
        markdown = f.read()

    teacher = st.load_predictions(str(work_dir / 'teacher' / 'preds.pkl'))
    assert report['teacher_accuracy'] == pytest.approx(
        100 * teacher.correct.mean())
    for method in METHODS:
        files = [
            str(work_dir / f'{method}_seed{seed}' / 'preds.pkl')
            for seed in range(2)
        ]
        accuracies = [
            100 * st.load_predictions(f).correct.mean() for f in files
        ]
        (entry, ) = [m for m in report['methods'] if m['name'] == method]
        assert entry['files'] == files
        assert entry['accuracies'] == pytest.approx(accuracies)
        for value in accuracies:  # the table shows the same numbers
            assert f'{value:.2f}' in markdown
        assert len(st.load_predictions(files[0]).correct) == 540

    by_pair = {(c['reference'], c['method']): c
               for c in report['comparisons']}
    assert set(by_pair) == {('alone', 'logit_kd'), ('alone', 'scalekd'),
                            ('logit_kd', 'scalekd')}
    scalekd = by_pair[('alone', 'scalekd')]
    a, b = (next(m['accuracies'] for m in report['methods']
                 if m['name'] == name) for name in ('alone', 'scalekd'))
    assert scalekd['difference'] == pytest.approx(np.mean(b) - np.mean(a))
    # two seeds each: Welch's test across seeds decides, as in
    # compare_students.py; every seed's paired test is in the table too
    assert scalekd['test'] == 'welch'
    assert scalekd['verdict'].startswith(
        'ScaleKD vs student alone over 2 vs 2 seeds: ')
    assert len(report['paired']) == 3 * 2
    for p in report['paired']:
        assert f'| {p["difference"]:+.2f} |' in markdown
    assert scalekd['verdict'] in markdown and scalekd['verdict'] in output
    assert re.search(r'significant at 0\.05|untestable', scalekd['verdict'])
    # the honest sentence is there, whichever way the result went
    assert 'ScaleKD beats' in markdown or 'does **not** beat' in markdown

    for name in ('accuracy.png', 'scalekd_losses.png'):
        image = Image.open(work_dir / name)
        assert image.size[0] > 100 and image.size[1] > 100
        assert len(set(image.convert('L').getdata())) > 2  # not blank
    assert osp.isfile(tmp_path / 'digits' / 'meta' / 'train.txt')
