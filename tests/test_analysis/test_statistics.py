"""Paired and across-seed statistics, checked against independent formulas."""
import math
import os
import pickle
import re

import mmengine
import numpy as np
import pytest
import torch
from scipy import stats

from mmscalekd.analysis import (PairedComparison, PredictionFileError,
                                SeedComparison, accuracy, align_predictions,
                                compare_across_seeds, compare_paired,
                                load_predictions, mcnemar_pvalue,
                                paired_verdict, predictions_from_results,
                                seeds_verdict)

NUM_CLASSES = 5


def paired_correctness(both, only_a, only_b, neither, seed=0):
    """Per-image correctness of A and B with the given agreement counts.

    Returns:
        tuple[np.ndarray, np.ndarray]: each shape ``(N,)``, bool, images in
        a shuffled order so no statistic can rely on the layout.
    """
    a = np.repeat([True, True, False, False], [both, only_a, only_b, neither])
    b = np.repeat([True, False, True, False], [both, only_a, only_b, neither])
    order = np.random.default_rng(seed).permutation(a.size)
    return a[order], b[order]


def dump_results(correct, sample_idx=None, gt_offset=0):
    """Dicts as mmengine's DumpResults writes them for mmpretrain.

    gt_label is ``sample_idx % NUM_CLASSES`` (plus ``gt_offset``); a wrong
    prediction is the next class.
    """
    if sample_idx is None:
        sample_idx = np.arange(len(correct))
    results = []
    for idx, right in zip(sample_idx, correct):
        gt = (int(idx) + gt_offset) % NUM_CLASSES
        pred = gt if right else (gt + 1) % NUM_CLASSES
        score = torch.full((NUM_CLASSES, ), 0.1)
        score[pred] = 0.6
        results.append(
            dict(num_classes=NUM_CLASSES,
                 sample_idx=int(idx),
                 pred_score=score,
                 gt_label=torch.tensor([gt]),
                 pred_label=torch.tensor([pred])))
    return results


def write_predictions(path, correct, sample_idx=None, gt_offset=0):
    """A prediction pickle in the format of ``tools/test.py --out``."""
    mmengine.dump(dump_results(correct, sample_idx, gt_offset), str(path))
    return str(path)


def normal_interval(a, b, confidence_level=0.95):
    """Wald interval of mean(b - a), in points."""
    diff = b.astype(float) - a.astype(float)
    z = stats.norm.ppf(0.5 + confidence_level / 2)
    half = z * diff.std(ddof=1) / math.sqrt(diff.size)
    return 100 * (diff.mean() - half), 100 * (diff.mean() + half)


def binomial_two_sided(k, n):
    """Exact two-sided binomial p at 1/2, by summing the tails."""
    k = min(k, n - k)
    tail = sum(math.comb(n, i) for i in range(k + 1)) / 2**n
    return min(1.0, 2 * tail)


# --------------------------------------------------------------- loading


def test_load_dump_results_file_sorted_by_sample_idx(tmp_path):
    correct = np.array([True, False, True, True, False, False])
    order = np.array([4, 0, 5, 2, 1, 3])
    path = write_predictions(tmp_path / 'preds.pkl', correct, order)
    predictions = load_predictions(path)
    np.testing.assert_array_equal(predictions.sample_idx, np.arange(6))
    np.testing.assert_array_equal(predictions.correct,
                                  correct[np.argsort(order)])
    np.testing.assert_array_equal(predictions.gt_label,
                                  np.arange(6) % NUM_CLASSES)
    assert predictions.source == path


def test_numpy_ints_and_scores_only(tmp_path):
    results = [
        dict(sample_idx=np.int64(0),
             gt_label=np.array([2]),
             pred_label=np.array([2])),
        dict(sample_idx=1, gt_label=3, pred_label=1),
        # no pred_label: the top score decides
        dict(sample_idx=torch.tensor(2),
             gt_label=torch.tensor([1]),
             pred_score=np.array([0.1, 0.7, 0.2], dtype=np.float32)),
        dict(sample_idx=3,
             gt_label=[0],
             pred_score=torch.tensor([0.1, 0.7, 0.2])),
    ]
    path = str(tmp_path / 'numpy.pkl')
    mmengine.dump(results, path)
    predictions = load_predictions(path)
    np.testing.assert_array_equal(predictions.correct,
                                  [True, False, True, False])
    assert accuracy(predictions.correct) == 50.0


class _RunsCode:

    def __reduce__(self):
        return (os.makedirs, ('/tmp/should_not_exist_compare_students', ))


def test_refuses_pickles_that_run_code(tmp_path):
    path = tmp_path / 'evil.pkl'
    with open(path, 'wb') as f:
        pickle.dump([_RunsCode()], f)
    with pytest.raises(PredictionFileError, match=r'evil\.pkl'):
        load_predictions(str(path))
    assert not os.path.exists('/tmp/should_not_exist_compare_students')


@pytest.mark.parametrize('results, match', [
    ({
        'accuracy/top1': 76.1
    }, 'not a non-empty list'),
    ([dict(sample_idx=0, pred_label=1)], 'lacks'),
    ([dict(sample_idx=0, gt_label=[1, 2], pred_label=1)], 'single-label'),
    ([dict(sample_idx=0, gt_label=1, pred_label=1)] * 2, r'more than once'),
])
def test_malformed_results_name_the_file(results, match):
    with pytest.raises(PredictionFileError, match=match) as error:
        predictions_from_results(results, 'work_dirs/x/preds.pkl')
    assert 'work_dirs/x/preds.pkl' in str(error.value)


def test_missing_file():
    with pytest.raises(PredictionFileError, match='no/such/preds.pkl'):
        load_predictions('no/such/preds.pkl')


def test_mismatched_sets_name_both_files(tmp_path):
    a = write_predictions(tmp_path / 'a.pkl', np.ones(10, bool))
    b = write_predictions(tmp_path / 'b.pkl', np.ones(9, bool),
                          np.arange(1, 10) * 2)
    with pytest.raises(PredictionFileError) as error:
        align_predictions([load_predictions(a), load_predictions(b)])
    message = str(error.value)
    assert a in message and b in message
    # a has 0...9, b the even 2...18
    assert re.search(rf'6 .*{re.escape(a)}.*\[0, 1, 3, 5, 7\]', message)
    assert re.search(rf'5 .*{re.escape(b)}.*\[10, 12, 14, 16, 18\]', message)


def test_same_indices_different_labels_is_an_error(tmp_path):
    a = write_predictions(tmp_path / 'a.pkl', np.ones(10, bool))
    b = write_predictions(tmp_path / 'b.pkl', np.ones(10, bool), gt_offset=1)
    with pytest.raises(PredictionFileError, match='different gt_label') as e:
        align_predictions([load_predictions(a), load_predictions(b)])
    assert a in str(e.value) and b in str(e.value)


def test_align_stacks_rows_in_sample_order(tmp_path):
    a = write_predictions(tmp_path / 'a.pkl', [True, False, True], [2, 0, 1])
    b = write_predictions(tmp_path / 'b.pkl', [False, False, True], [0, 1, 2])
    correct = align_predictions([load_predictions(a), load_predictions(b)])
    np.testing.assert_array_equal(correct,
                                  [[False, True, True], [False, False, True]])


# ------------------------------------------------------------- McNemar


def test_mcnemar_all_disagreements_one_way():
    a, b = paired_correctness(both=40, only_a=0, only_b=10, neither=50)
    pvalue, only_a, only_b = mcnemar_pvalue(a, b)
    assert (only_a, only_b) == (0, 10)
    assert pvalue == pytest.approx(2 * 0.5**10, rel=1e-12)


@pytest.mark.parametrize('only_a, only_b', [(3, 12), (12, 3), (25, 40),
                                            (7, 8)])
def test_mcnemar_is_the_exact_binomial_test(only_a, only_b):
    a, b = paired_correctness(both=100,
                              only_a=only_a,
                              only_b=only_b,
                              neither=30)
    pvalue, _, _ = mcnemar_pvalue(a, b)
    assert pvalue == pytest.approx(binomial_two_sided(only_a, only_a + only_b),
                                   rel=1e-9)
    # both-right and both-wrong images carry no information
    a2, b2 = paired_correctness(both=5,
                                only_a=only_a,
                                only_b=only_b,
                                neither=900)
    assert mcnemar_pvalue(a2, b2)[0] == pytest.approx(pvalue, rel=1e-12)


# ------------------------------------------------------------ bootstrap


def test_bootstrap_interval_matches_normal_interval_on_a_large_sample():
    a, b = paired_correctness(both=14000,
                              only_a=900,
                              only_b=1300,
                              neither=3800)
    result = compare_paired(a, b, n_resamples=9999, seed=0)
    assert result.accuracy_a == pytest.approx(100 * 14900 / 20000)
    assert result.accuracy_b == pytest.approx(100 * 15300 / 20000)
    assert result.difference == pytest.approx(2.0)
    low, high = normal_interval(a, b)
    # Wald half-width is ~0.46 points; the percentile bootstrap of a mean
    # over 20,000 images agrees to within Monte Carlo error.
    assert result.ci_low == pytest.approx(low, abs=0.03)
    assert result.ci_high == pytest.approx(high, abs=0.03)


def test_no_difference_gives_p_one_and_interval_around_zero():
    a, b = paired_correctness(both=600, only_a=150, only_b=150, neither=100)
    result = compare_paired(a, b, n_resamples=2000, seed=1)
    assert result.difference == 0.0
    assert result.mcnemar_pvalue == pytest.approx(1.0)
    assert result.ci_low < 0 < result.ci_high
    assert 'not significant at 0.05' in paired_verdict('b', 'a', result)


def test_strong_difference_gives_p_near_zero_and_interval_above_zero():
    a, b = paired_correctness(both=600, only_a=10, only_b=300, neither=90)
    result = compare_paired(a, b, n_resamples=2000, seed=1)
    assert result.difference == pytest.approx(29.0)
    assert result.mcnemar_pvalue < 1e-60
    assert 0 < result.ci_low < 29.0 < result.ci_high
    assert paired_verdict('b', 'a', result).endswith(': significant at 0.05')
    # and the other way round
    reverse = compare_paired(b, a, n_resamples=2000, seed=1)
    assert reverse.difference == pytest.approx(-29.0)
    assert reverse.ci_high < 0
    assert reverse.mcnemar_pvalue == pytest.approx(result.mcnemar_pvalue)


def test_identical_models():
    a, _ = paired_correctness(both=70, only_a=0, only_b=0, neither=30)
    result = compare_paired(a, a.copy(), n_resamples=500)
    assert (result.difference, result.ci_low, result.ci_high) == (0, 0, 0)
    assert result.mcnemar_pvalue == 1.0


def test_seeded_bootstrap_is_reproducible():
    a, b = paired_correctness(both=300, only_a=20, only_b=35, neither=45)
    first = compare_paired(a, b, n_resamples=1000, seed=3)
    assert compare_paired(a, b, n_resamples=1000, seed=3) == first
    other = compare_paired(a, b, n_resamples=1000, seed=4)
    assert (other.ci_low, other.ci_high) != (first.ci_low, first.ci_high)


def test_confidence_level_widens_the_interval():
    a, b = paired_correctness(both=300, only_a=20, only_b=35, neither=45)
    narrow = compare_paired(a, b, confidence_level=0.8, n_resamples=3000)
    wide = compare_paired(a, b, confidence_level=0.99, n_resamples=3000)
    assert wide.ci_low < narrow.ci_low < narrow.ci_high < wide.ci_high


@pytest.mark.slow
def test_imagenet_sized_validation_set():
    # 50,000 images, ScaleKD-like: 76.0% -> 77.0%.
    a, b = paired_correctness(both=36000,
                              only_a=2000,
                              only_b=2500,
                              neither=9500)
    result = compare_paired(a, b)  # default 9999 resamples
    assert result.num_images == 50000
    assert result.accuracy_a == pytest.approx(76.0)
    assert result.accuracy_b == pytest.approx(77.0)
    assert result.difference == pytest.approx(1.0)
    assert (result.only_a_correct, result.only_b_correct) == (2000, 2500)
    assert result.mcnemar_pvalue == pytest.approx(
        binomial_two_sided(2000, 4500), rel=1e-9)
    low, high = normal_interval(a, b)
    assert result.ci_low == pytest.approx(low, abs=0.03)
    assert result.ci_high == pytest.approx(high, abs=0.03)


def test_shapes_must_match():
    with pytest.raises(ValueError, match='align_predictions'):
        compare_paired(np.ones(3, bool), np.ones(4, bool))


# ------------------------------------------------------------ across seeds


def welch_by_hand(a, b, confidence_level=0.95):
    """t, df, p and interval of mean(b) - mean(a), Welch-Satterthwaite."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    va, vb = a.var(ddof=1) / a.size, b.var(ddof=1) / b.size
    se = math.sqrt(va + vb)
    t = (b.mean() - a.mean()) / se
    df = (va + vb)**2 / (va**2 / (a.size - 1) + vb**2 / (b.size - 1))
    p = 2 * stats.t.sf(abs(t), df)
    half = stats.t.ppf(0.5 + confidence_level / 2, df) * se
    diff = b.mean() - a.mean()
    return t, df, p, diff - half, diff + half


@pytest.mark.parametrize('a, b', [
    ([76.1, 76.4, 75.9], [77.6, 77.9, 77.2]),
    ([76.1, 76.4, 75.9, 76.0], [76.3, 75.8]),
    ([80.0, 80.5], [79.0, 81.7, 80.2]),
])
def test_welch_matches_the_formula(a, b):
    result = compare_across_seeds(a, b)
    t, df, p, low, high = welch_by_hand(a, b)
    assert result.mean_a == pytest.approx(np.mean(a))
    assert result.mean_b == pytest.approx(np.mean(b))
    assert result.difference == pytest.approx(np.mean(b) - np.mean(a))
    assert result.statistic == pytest.approx(t)
    assert result.df == pytest.approx(df)
    assert result.pvalue == pytest.approx(p)
    assert (result.ci_low, result.ci_high) == (pytest.approx(low),
                                               pytest.approx(high))
    assert (result.num_seeds_a, result.num_seeds_b) == (len(a), len(b))


def test_welch_clear_gain_and_no_gain():
    gain = compare_across_seeds([76.0, 76.1, 75.9], [78.0, 78.1, 77.9])
    assert gain.pvalue < 1e-4
    assert 'significant at 0.05' in seeds_verdict('kd', 'base', gain)
    same = compare_across_seeds([76.0, 76.4, 75.8], [76.4, 75.8, 76.0])
    assert same.pvalue == pytest.approx(1.0)
    assert same.ci_low < 0 < same.ci_high
    assert 'not significant at 0.05' in seeds_verdict('kd', 'base', same)


def test_welch_needs_two_seeds_each():
    with pytest.raises(ValueError, match='>= 2 seeds'):
        compare_across_seeds([76.0], [77.0, 77.2])


def test_welch_undefined_without_variation():
    result = compare_across_seeds([76.0, 76.0], [77.0, 77.0])
    assert result.difference == pytest.approx(1.0)
    assert math.isnan(result.pvalue)
    assert 'undefined' in seeds_verdict('kd', 'base', result)


# ------------------------------------------------------------- verdicts


def test_verdict_lines():
    paired = PairedComparison(accuracy_a=76.0,
                              accuracy_b=77.8,
                              difference=1.8,
                              ci_low=0.9,
                              ci_high=2.7,
                              confidence_level=0.95,
                              only_a_correct=100,
                              only_b_correct=190,
                              mcnemar_pvalue=0.001,
                              num_images=50000)
    assert paired_verdict(
        'ScaleKD', 'baseline',
        paired) == ('ScaleKD vs baseline: +1.80 points, 95% CI [0.90, 2.70], '
                    'McNemar p = 0.001: significant at 0.05')
    assert paired_verdict('ScaleKD', 'baseline', paired, alpha=0.001) \
        .endswith('not significant at 0.001')
    seeds = SeedComparison(mean_a=76.0,
                           mean_b=75.5,
                           difference=-0.5,
                           ci_low=-1.25,
                           ci_high=0.25,
                           confidence_level=0.9,
                           statistic=-1.5,
                           df=3.2,
                           pvalue=0.21,
                           num_seeds_a=3,
                           num_seeds_b=4)
    assert seeds_verdict('ScaleKD', 'baseline', seeds, alpha=0.1) == (
        'ScaleKD vs baseline over 4 vs 3 seeds: -0.50 points (mean), '
        '90% CI [-1.25, 0.25], Welch p = 0.21: not significant at 0.1')
