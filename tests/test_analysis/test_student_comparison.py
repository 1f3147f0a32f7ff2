"""compare_students: which pairs, which test decides, what the report says.
The statistics themselves are checked in test_statistics.py."""
import numpy as np
import pytest
from scipy import stats

from mmscalekd.analysis import (compare_across_seeds, compare_paired,
                                compare_students, render_comparison,
                                seeds_verdict)
from tests.test_analysis.test_statistics import write_predictions


def correctness(right, size=200):
    correct = np.zeros(size, bool)
    correct[:right] = True
    return correct


@pytest.fixture
def three_methods(tmp_path):
    """Two seeds each: alone 70/72%, logit_kd 74/75%, scalekd 80/82%."""
    rights = {'alone': (140, 144), 'logit_kd': (148, 150),
              'scalekd': (160, 164)}
    return {
        name: [write_predictions(tmp_path / f'{name}_{seed}.pkl',
                                 correctness(right))
               for seed, right in enumerate(values)]
        for name, values in rights.items()
    }


def test_pairs_labels_and_the_deciding_test(three_methods):
    report = compare_students(
        three_methods, alpha=0.05, n_resamples=500,
        pairs=[('alone', 'scalekd'), ('logit_kd', 'scalekd')],
        labels={'alone': 'student alone', 'scalekd': 'ScaleKD'})
    assert [(c['reference'], c['method'], c['test'])
            for c in report['comparisons']] == [
                ('alone', 'scalekd', 'welch'),
                ('logit_kd', 'scalekd', 'welch')]
    first = report['comparisons'][0]
    assert first['difference'] == pytest.approx(81 - 71)
    expected = compare_across_seeds([70, 72], [80, 82])
    assert first['verdict'] == seeds_verdict('ScaleKD', 'student alone',
                                             expected)
    assert first['significant'] == bool(expected.pvalue < 0.05)
    # labels that are not given stay the method names
    assert report['comparisons'][1]['verdict'].startswith(
        'ScaleKD vs logit_kd over 2 vs 2 seeds: +6.50 points')
    assert report['verdicts'] == [c['verdict']
                                  for c in report['comparisons']]
    # two pairs of files per comparison, paired by position
    assert [(p['reference'], p['pair'], p['only_b_correct'])
            for p in report['paired']] == [('alone', 1, 20), ('alone', 2, 20),
                                           ('logit_kd', 1, 12),
                                           ('logit_kd', 2, 14)]
    welch = stats.ttest_ind([80, 82], [74, 75], equal_var=False)
    assert report['across_seeds'][1]['pvalue'] == pytest.approx(welch.pvalue)


def test_one_file_each_is_decided_by_mcnemar(three_methods):
    methods = {name: files[:1] for name, files in three_methods.items()}
    report = compare_students(methods, n_resamples=500, seed=3)
    assert [(c['reference'], c['method'], c['test'])
            for c in report['comparisons']] == [
                ('alone', 'logit_kd', 'mcnemar'),
                ('alone', 'scalekd', 'mcnemar')]
    expected = compare_paired(correctness(140), correctness(160),
                              n_resamples=500, seed=3)
    scalekd = report['comparisons'][1]
    assert scalekd['difference'] == pytest.approx(10.0)
    assert scalekd['significant'] == (expected.mcnemar_pvalue < 0.05)
    assert report['paired'][1]['ci_low'] == expected.ci_low
    assert report['across_seeds'] == []


def test_render_names_each_pair(three_methods):
    report = compare_students(three_methods, n_resamples=200,
                              pairs=[('logit_kd', 'scalekd')])
    text = render_comparison(report)
    paired = text.split('Paired on the same images')[1].split('\n')
    assert paired[1].split() == [
        'method', 'reference', 'pair', 'difference', '95%', 'CI', 'only',
        'ref', 'right', 'only', 'method', 'right', 'McNemar', 'p']
    assert paired[3].split()[:4] == ['scalekd', 'logit_kd', '1', '+6.00']
    assert text.endswith('Verdict\n' + report['verdicts'][0])


def test_unknown_pair_is_an_error(three_methods):
    with pytest.raises(ValueError, match=r"pairs name \['kd'\]"):
        compare_students(three_methods, pairs=[('alone', 'kd')])
