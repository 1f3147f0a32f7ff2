"""tools/analysis/compare_students.py on prediction pickles in the
format ``tools/test.py --out`` writes."""
import json
import math
import os.path as osp
import sys

import mmengine
import numpy as np
import pytest
import torch

from mmscalekd.analysis import compare_paired, paired_verdict
from tests.conftest import REPO_ROOT, load_tool, run_command
from tests.test_analysis.test_statistics import (dump_results,
                                                 paired_correctness,
                                                 write_predictions)

# Runs the tool as a script, once a test: tens of seconds each.
pytestmark = pytest.mark.slow

TOOL = osp.join(REPO_ROOT, 'tools', 'analysis', 'compare_students.py')


def run_tool(*args):
    return run_command([sys.executable, TOOL, *map(str, args)], check=False)


def import_tool():
    return load_tool(TOOL)


def test_two_students(tmp_path):
    # 2,000 images: baseline 70.0%, scalekd 73.0%, 40 vs 100 disagreements
    a, b = paired_correctness(both=1360, only_a=40, only_b=100, neither=500)
    baseline = write_predictions(tmp_path / 'baseline.pkl', a)
    scalekd = write_predictions(tmp_path / 'scalekd.pkl', b)
    out = tmp_path / 'report.json'
    result = run_tool(f'baseline={baseline}', f'scalekd={scalekd}',
                      '--n-resamples', 2000, '--seed', 7, '--json', out)
    assert result.returncode == 0, result.stderr[-3000:]

    expected = compare_paired(a, b, n_resamples=2000, seed=7)
    verdict = paired_verdict('scalekd', 'baseline', expected)
    assert verdict.startswith('scalekd vs baseline: +3.00 points, 95% CI [')
    assert verdict.endswith(': significant at 0.05')
    assert result.stdout.rstrip().endswith('Verdict\n' + verdict)
    assert 'on 2000 images' in result.stdout

    report = json.loads(out.read_text())
    assert report['reference'] == 'baseline'
    assert report['num_images'] == 2000
    assert [m['accuracies'] for m in report['methods']
            ] == [pytest.approx([70.0]),
                  pytest.approx([73.0])]
    (pair, ) = report['paired']
    assert pair['file'] == scalekd and pair['reference_file'] == baseline
    assert pair['difference'] == pytest.approx(3.0)
    assert (pair['only_a_correct'], pair['only_b_correct']) == (40, 100)
    # Exact McNemar: both binomial tails of 40 of 140 discordant at 1/2.
    tail = sum(math.comb(140, i) for i in range(41)) / 2**140
    assert pair['mcnemar_pvalue'] == pytest.approx(2 * tail, rel=1e-9)
    assert (pair['ci_low'], pair['ci_high']) == (expected.ci_low,
                                                 expected.ci_high)
    assert pair['ci_low'] > 0 and pair['significant'] is True
    assert report['across_seeds'] == []
    assert report['comparisons'] == [
        dict(reference='baseline', method='scalekd', test='mcnemar',
             difference=pytest.approx(3.0), significant=True,
             verdict=verdict)]
    assert report['verdicts'] == [verdict]


def test_seeds(tmp_path, capsys):
    # three seeds each; per seed, scalekd gets 2..4 more images right out
    # of 1,000 than the baseline: tiny paired gains, but consistent ones
    files = {'baseline': [], 'scalekd': []}
    accuracies = {'baseline': [], 'scalekd': []}
    for seed, (base_right, gain) in enumerate([(700, 30), (705, 20),
                                               (698, 40)]):
        a = np.zeros(1000, bool)
        a[:base_right] = True
        b = a.copy()
        b[base_right:base_right + gain] = True
        for name, correct in (('baseline', a), ('scalekd', b)):
            files[name].append(
                write_predictions(tmp_path / f'{name}_s{seed}.pkl', correct))
            accuracies[name].append(100 * correct.mean())
    out = tmp_path / 'seeds.json'
    import_tool().main([
        '--method', 'baseline', *files['baseline'], '--method', 'scalekd',
        *files['scalekd'], '--n-resamples', '500', '--alpha', '0.01', '--json',
        str(out)
    ])
    stdout = capsys.readouterr().out
    report = json.loads(out.read_text())

    assert [p['difference'] for p in report['paired']
            ] == [pytest.approx(3.0),
                  pytest.approx(2.0),
                  pytest.approx(4.0)]
    assert [p['pair'] for p in report['paired']] == [1, 2, 3]
    assert all(p['only_a_correct'] == 0 for p in report['paired'])
    assert report['methods'][1]['std_accuracy'] == pytest.approx(
        np.std(accuracies['scalekd'], ddof=1))

    (welch, ) = report['across_seeds']
    # By hand: baseline 70.0 70.5 69.8 (mean 70.1, variance 0.13), scalekd
    # 73.0 72.5 73.8 (mean 73.1, variance 0.43); SE^2 = (0.13 + 0.43) / 3,
    # t = 3.0 / SE = 6.9437; Welch-Satterthwaite df = SE^4 /
    # ((0.13/3)^2/2 + (0.43/3)^2/2) = 3.1080.
    assert welch['difference'] == pytest.approx(3.0)
    assert welch['statistic'] == pytest.approx(6.943651, rel=1e-6)
    assert welch['df'] == pytest.approx(3.108028, rel=1e-6)
    assert welch['pvalue'] == pytest.approx(0.0055, abs=5e-5)
    # CI low = 3.0 - t_{0.995, df} * SE, with t_{0.995, 3.108} > 5.6
    # (t_{0.995, 3} = 5.841): the interval still excludes 0.
    assert 0 < welch['ci_low'] < 3.0 - 5.6 * (0.56 / 3)**0.5
    assert welch['confidence_level'] == pytest.approx(0.99)
    # the verdict comes from the seeds, at the requested level
    assert report['verdicts'] == [welch['verdict']]
    assert welch['verdict'].startswith(
        'scalekd vs baseline over 3 vs 3 seeds: +3.00 points (mean), '
        '99% CI [')
    # p = 0.0055 < 0.01 although the per-seed pairs are 2-4 images apart
    assert welch['verdict'].endswith('Welch p = 0.0055: significant at 0.01')
    assert welch['significant'] is True
    assert "Welch's t-test across seeds" in stdout
    assert stdout.rstrip().endswith(welch['verdict'])


def test_repeated_names_are_seeds():
    tool = import_tool()
    args = tool.parse_args(
        ['base=a0.pkl', 'kd=b0.pkl', 'base=a1.pkl', 'kd=b1.pkl'])
    assert args.methods == {
        'base': ['a0.pkl', 'a1.pkl'],
        'kd': ['b0.pkl', 'b1.pkl']
    }
    args = tool.parse_args(
        ['--method', 'base', 'a0.pkl', 'a1.pkl', '--method', 'kd', 'b0.pkl'])
    assert args.methods == {'base': ['a0.pkl', 'a1.pkl'], 'kd': ['b0.pkl']}


@pytest.mark.parametrize('argv, message', [
    (['base=a.pkl'], 'compare at least two'),
    (['base=a.pkl', 'kd'], 'is not NAME=FILE'),
    (['base=a.pkl', '--method', 'kd', 'b.pkl'], 'not both'),
    (['--method', 'kd'], 'has no files'),
    (['a=a.pkl', 'b=b.pkl', '--alpha', '5'], 'between 0 and 1'),
])
def test_bad_arguments(argv, message, capsys):
    tool = import_tool()
    with pytest.raises(SystemExit):
        tool.parse_args(argv)
    assert message in capsys.readouterr().err


def test_misaligned_files_are_a_clear_error(tmp_path):
    baseline = write_predictions(tmp_path / 'baseline.pkl', np.ones(20, bool))
    scalekd = write_predictions(tmp_path / 'scalekd.pkl', np.ones(10, bool))
    message = refused(baseline, scalekd)
    assert baseline in message and scalekd in message


def refused(*files) -> str:
    """The one message the tool ends with on these files (no traceback)."""
    result = run_command([sys.executable, TOOL] + [
        f'model{i}={path}' for i, path in enumerate(files)], check=False)
    assert result.returncode == 1, result.stdout + result.stderr
    assert 'Traceback' not in result.stderr, result.stderr
    assert result.stdout == ''
    message, hint = result.stderr.splitlines()
    assert message.startswith('compare_students.py: error: ')
    assert hint == ('compare_students.py: the traceback is not shown '
                    '(--verbose prints it here).')
    return message


def test_non_finite_scores_are_refused_not_scored_as_class_0(tmp_path):
    """An all-NaN file (a diverged model) was scored as class-0 predictions
    and reported as a significant difference."""
    baseline = write_predictions(tmp_path / 'baseline.pkl', np.ones(20, bool))
    results = dump_results(np.ones(20, bool))
    for result in results:
        result['pred_score'] = torch.full_like(result['pred_score'],
                                               float('nan'))
        result['pred_label'] = torch.tensor([0])
    diverged = str(tmp_path / 'diverged.pkl')
    mmengine.dump(results, diverged)
    message = refused(baseline, diverged)
    assert diverged in message and 'pred_score' in message
