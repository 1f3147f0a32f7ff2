"""Is a student's gain over another real? Paired and across-seed tests.

Two students evaluated on the same validation set make paired observations:
per image, each is right or wrong. The paired accuracy difference, its
bootstrap confidence interval and an exact McNemar test on the images where
they disagree use that pairing, which is far more sensitive than comparing
two accuracies as if they came from different images. What a single run
cannot show is how much the gain moves from one training seed to the next;
with several seeds per method, :func:`compare_across_seeds` runs Welch's
two-sample t-test on the per-seed accuracies.

The inputs are the pickles ``tools/test.py --out preds.pkl`` writes (mmengine's
``DumpResults``): a list with one dict per image holding ``sample_idx``,
``gt_label`` (shape ``(1,)``) and ``pred_label`` (shape ``(1,)``) or
``pred_score`` (shape ``(K,)``). All statistics come from scipy and
statsmodels; this module only arranges the data for them.
"""
import codecs
import collections
import io
import os.path as osp
import pickle
from dataclasses import dataclass
from typing import Any, Dict, Optional, Sequence, Tuple

import numpy as np
import torch

from mmscalekd.compat import numpy_pickle_globals, torch_tensor_rebuild

try:
    from scipy import stats
    from statsmodels.stats.contingency_tables import mcnemar
except ImportError as error:
    # Training does not need them, so only this extra brings them.
    missing = (error.name or 'scipy').split('.')[0]
    raise ImportError(
        'The statistics of compare_students.py and the quick start need '
        f'scipy and statsmodels ({missing} is not installed here): pip '
        'install "mmscalekd[analysis]".') from error

__all__ = [
    'PredictionFileError', 'Predictions', 'PairedComparison', 'SeedComparison',
    'load_predictions', 'predictions_from_results', 'align_predictions',
    'accuracy', 'paired_difference', 'mcnemar_pvalue', 'compare_paired',
    'compare_across_seeds', 'paired_verdict', 'seeds_verdict'
]


class PredictionFileError(ValueError):
    """A prediction file cannot be read or does not match the others."""


@dataclass
class Predictions:
    """Per-image correctness of one model on one validation set.

    Attributes:
        source (str): where the predictions came from (a file path), used in
            error messages.
        sample_idx (np.ndarray): shape ``(N,)``, int64, sorted ascending.
        gt_label (np.ndarray): shape ``(N,)``, int64, the label of each image.
        correct (np.ndarray): shape ``(N,)``, bool, top-1 prediction right.
    """
    source: str
    sample_idx: np.ndarray
    gt_label: np.ndarray
    correct: np.ndarray


@dataclass
class PairedComparison:
    """Model B against reference model A on the same images.

    Accuracies and differences are in percentage points.

    Attributes:
        accuracy_a (float): accuracy of the reference model A.
        accuracy_b (float): accuracy of model B.
        difference (float): ``accuracy_b - accuracy_a``.
        ci_low (float): lower end of the bootstrap confidence interval of
            ``difference``.
        ci_high (float): upper end of that interval.
        confidence_level (float): of the interval, e.g. 0.95.
        only_a_correct (int): images A gets right and B gets wrong.
        only_b_correct (int): images B gets right and A gets wrong.
        mcnemar_pvalue (float): exact two-sided McNemar p-value.
        num_images (int): number of paired images.
    """
    accuracy_a: float
    accuracy_b: float
    difference: float
    ci_low: float
    ci_high: float
    confidence_level: float
    only_a_correct: int
    only_b_correct: int
    mcnemar_pvalue: float
    num_images: int


@dataclass
class SeedComparison:
    """Method B against reference method A across training seeds.

    Accuracies and differences are in percentage points.

    Attributes:
        mean_a (float): mean accuracy of A over its seeds.
        mean_b (float): mean accuracy of B over its seeds.
        difference (float): ``mean_b - mean_a``.
        ci_low (float): lower end of Welch's confidence interval of
            ``difference``.
        ci_high (float): upper end of that interval.
        confidence_level (float): of the interval, e.g. 0.95.
        statistic (float): Welch's t statistic.
        df (float): Welch–Satterthwaite degrees of freedom.
        pvalue (float): two-sided p-value; NaN when neither method's accuracy
            varies across seeds (the test is undefined).
        num_seeds_a (int): number of seeds of A.
        num_seeds_b (int): number of seeds of B.
    """
    mean_a: float
    mean_b: float
    difference: float
    ci_low: float
    ci_high: float
    confidence_level: float
    statistic: float
    df: float
    pvalue: float
    num_seeds_a: int
    num_seeds_b: int


def _load_tensor_storage(data: bytes) -> Any:
    """Stands in for ``torch.storage._load_from_bytes`` with no code run."""
    return torch.load(io.BytesIO(data), weights_only=True)


def _allowed_globals() -> Dict[Tuple[str, str], Any]:
    """Everything a DumpResults pickle of classification results needs.

    Torch tensors, numpy arrays and scalars (the same numpy types checkpoints
    may hold), and nothing that could run code. Files written under numpy 1
    name its ``numpy.core`` module, numpy 2 ``numpy._core``; both are read.
    """
    allowed = {('torch.storage', '_load_from_bytes'): _load_tensor_storage}
    # protocol 2 (mmengine's default) writes bytes as codecs.encode(str)
    plain = [
        torch_tensor_rebuild(), collections.OrderedDict, codecs.encode
    ]
    for obj in plain + numpy_pickle_globals():
        allowed[(obj.__module__, obj.__name__)] = obj
        if obj.__module__.startswith('numpy._core'):
            module = obj.__module__.replace('numpy._core', 'numpy.core')
            allowed[(module, obj.__name__)] = obj
    return allowed


_ALLOWED_GLOBALS = _allowed_globals()


class _PredictionUnpickler(pickle.Unpickler):
    """Unpickles tensors, arrays and builtins; refuses anything else."""

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(
                f'{module}.{name} is not a tensor, array or builtin') from None


def _as_int_vector(value: Any) -> np.ndarray:
    """A tensor, array, list or int as a 1-D int64 array."""
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    return np.asarray(value).reshape(-1).astype(np.int64)


def _as_array(value: Any) -> np.ndarray:
    """A tensor (bf16 included), array, list or number as a numpy array."""
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu()
        if value.is_floating_point():
            value = value.float()
        value = value.numpy()
    return np.asarray(value)


def _sample_index(value: Any) -> Optional[int]:
    """``sample_idx`` as an int, or None unless it is one integer.

    Checked, not cast: a float (3.5) or a string is not an index DumpResults
    writes, and casting would pair the images of two files wrongly.
    """
    index = _as_array(value)
    if index.size != 1 or not np.issubdtype(index.dtype, np.integer):
        return None
    return int(index.reshape(-1)[0])


def predictions_from_results(results: Sequence[Dict[str, Any]],
                             source: str) -> Predictions:
    """Per-image correctness from a list of DumpResults dicts.

    Args:
        results (Sequence[dict]): one dict per image, two images at least,
            with ``sample_idx`` (an integer), ``gt_label`` (shape ``(1,)``
            or int) and ``pred_label`` (shape ``(1,)`` or int) or, without
            it, ``pred_score`` (shape ``(K,)``, finite wherever it is
            given). Tensors, numpy arrays and plain ints are accepted.
        source (str): name of the file the results came from, for errors.

    Returns:
        Predictions: sorted by ``sample_idx``.
    """
    if not isinstance(results, (list, tuple)) or not results:
        raise PredictionFileError(
            f'{source} holds {type(results).__name__}, not a non-empty list '
            'of per-image dicts; write it with `tools/test.py CONFIG '
            'CHECKPOINT --out preds.pkl` (not `--out-item metrics`).')
    num_images = len(results)
    sample_idx = np.empty(num_images, dtype=np.int64)
    gt_label = np.empty(num_images, dtype=np.int64)
    pred_label = np.empty(num_images, dtype=np.int64)
    for i, result in enumerate(results):
        missing = [
            k for k in ('sample_idx', 'gt_label')
            if not (isinstance(result, dict) and k in result)
        ]
        if missing or ('pred_label' not in result
                       and 'pred_score' not in result):
            raise PredictionFileError(
                f'Image {i} of {source} lacks '
                f'{missing or ["pred_label or pred_score"]}; prediction '
                'files must come from `tools/test.py --out preds.pkl` on a '
                'single-label classification config.')
        score = None
        if 'pred_score' in result:
            score = _as_array(result['pred_score'])
            # NaN scores still have an argmax (class 0), so a diverged
            # model would be scored as if it predicted.
            if not np.all(np.isfinite(score)):
                raise PredictionFileError(
                    f'Image {i} of {source} has a non-finite pred_score '
                    f'({np.asarray(score).reshape(-1)[:5].tolist()}...): the '
                    'model that wrote it diverged or saw non-finite pixels. '
                    'Evaluate a checkpoint with finite weights again with '
                    '`tools/test.py --out`.')
        gt = _as_int_vector(result['gt_label'])
        if 'pred_label' in result:
            pred = _as_int_vector(result['pred_label'])
        else:
            pred = np.asarray([np.argmax(score)])
        if gt.size != 1 or pred.size != 1:
            raise PredictionFileError(
                f'Image {i} of {source} has gt_label of {gt.size} and '
                f'pred_label of {pred.size} elements; only single-label '
                'classification (one label per image) can be compared.')
        index = _sample_index(result['sample_idx'])
        if index is None:
            raise PredictionFileError(
                f'Image {i} of {source} has sample_idx '
                f'{result["sample_idx"]!r:.60}, not one integer (the index '
                'of the image in the dataset); is it a `tools/test.py --out` '
                'file?')
        sample_idx[i] = index
        gt_label[i], pred_label[i] = gt[0], pred[0]
    order = np.argsort(sample_idx, kind='stable')
    sample_idx, gt_label = sample_idx[order], gt_label[order]
    pred_label = pred_label[order]
    repeated = sample_idx[1:][sample_idx[1:] == sample_idx[:-1]]
    if repeated.size:
        raise PredictionFileError(
            f'{source} has sample_idx {repeated[:5].tolist()} more than '
            'once; each file must be one `tools/test.py --out preds.pkl` '
            'run, not several runs joined together.')
    if num_images < 2:
        raise PredictionFileError(
            f'{source} holds the predictions of {num_images} image; a '
            'comparison needs two at least (a whole validation set: '
            '`tools/test.py CONFIG CHECKPOINT --out preds.pkl`).')
    return Predictions(source, sample_idx, gt_label, gt_label == pred_label)


def load_predictions(path: str) -> Predictions:
    """Read a ``tools/test.py --out`` pickle without running code from it.

    Args:
        path (str): the ``.pkl`` file.

    Returns:
        Predictions: per-image correctness, sorted by ``sample_idx``.
    """
    if not osp.isfile(path):
        raise PredictionFileError(
            f'{path} does not exist; write it with `tools/test.py CONFIG '
            'CHECKPOINT --out preds.pkl`.')
    try:
        with open(path, 'rb') as f:
            results = _PredictionUnpickler(f).load()
    except pickle.UnpicklingError as error:
        raise PredictionFileError(
            f'Refused to read {path}: {error}. Prediction files hold only '
            'tensors, arrays and plain values; write it with `tools/test.py '
            '--out preds.pkl`.') from None
    except Exception as error:  # truncated, not a pickle, ...
        raise PredictionFileError(
            f'Cannot read {path}: {type(error).__name__}: {error}. Is it a '
            '`tools/test.py --out` pickle?') from None
    return predictions_from_results(results, path)


def align_predictions(predictions: Sequence[Predictions]) -> np.ndarray:
    """Stack per-image correctness after checking the images are the same.

    Args:
        predictions (Sequence[Predictions]): M models' predictions; the first
            is the one the others are checked against.

    Returns:
        np.ndarray: shape ``(M, N)``, bool; row m is model m's correctness,
        columns in ascending ``sample_idx``.
    """
    if not predictions:
        raise ValueError('align_predictions needs at least one prediction '
                         'set.')
    first = predictions[0]
    for other in predictions[1:]:
        if not np.array_equal(first.sample_idx, other.sample_idx):
            only_first = np.setdiff1d(first.sample_idx, other.sample_idx)
            only_other = np.setdiff1d(other.sample_idx, first.sample_idx)
            raise PredictionFileError(
                f'{other.source} ({other.sample_idx.size} images) and '
                f'{first.source} ({first.sample_idx.size} images) are not the '
                f'same validation set: {only_first.size} sample_idx only in '
                f'{first.source} (e.g. {only_first[:5].tolist()}), '
                f'{only_other.size} only in {other.source} (e.g. '
                f'{only_other[:5].tolist()}). Evaluate every checkpoint with '
                'the same test_dataloader (same config, no `--cfg-options` '
                'changing the dataset) and compare those files.')
        differ = np.flatnonzero(first.gt_label != other.gt_label)
        if differ.size:
            raise PredictionFileError(
                f'{other.source} and {first.source} give different gt_label '
                f'to {differ.size} images (sample_idx '
                f'{first.sample_idx[differ[:5]].tolist()}...): the same '
                'sample_idx is a different image. Evaluate every checkpoint '
                'on the same dataset, annotation file and order.')
    return np.stack([p.correct for p in predictions])


def accuracy(correct: np.ndarray) -> float:
    """Top-1 accuracy in percentage points.

    Args:
        correct (np.ndarray): shape ``(N,)``, bool.

    Returns:
        float: ``100 * mean(correct)``.
    """
    return 100.0 * float(np.mean(correct))


def _check_pair(correct_a: np.ndarray, correct_b: np.ndarray) -> None:
    if correct_a.shape != correct_b.shape or correct_a.ndim != 1:
        raise ValueError(
            f'correct_a {correct_a.shape} and correct_b {correct_b.shape} '
            'must both be (N,) over the same images; align them with '
            'align_predictions first.')


def paired_difference(correct_a: np.ndarray,
                      correct_b: np.ndarray,
                      confidence_level: float = 0.95,
                      n_resamples: int = 9999,
                      seed: int = 0) -> Tuple[float, float, float]:
    """Accuracy of B minus A with a paired bootstrap confidence interval.

    Resampling images and taking ``mean(b) - mean(a)`` over the resample is
    the same as resampling the per-image differences ``b - a`` (values -1, 0,
    1) and taking their mean, so the one-sample bootstrap of the differences
    *is* the paired bootstrap, with half the data to index. The percentile
    interval is used: BCa needs a jackknife over all N images, O(N^2), which
    takes minutes on ImageNet's 50,000 and barely differs for a mean this
    far from the data's bounds.

    Args:
        correct_a (np.ndarray): shape ``(N,)``, bool, reference model.
        correct_b (np.ndarray): shape ``(N,)``, bool, same images.
        confidence_level (float): of the interval. Default: 0.95.
        n_resamples (int): bootstrap resamples. Default: 9999.
        seed (int): seeds the resampling, so reruns give the same interval.

    Returns:
        tuple[float, float, float]: difference, interval low, interval high,
        in percentage points.
    """
    _check_pair(correct_a, correct_b)
    per_image = correct_b.astype(np.int8) - correct_a.astype(np.int8)
    result = stats.bootstrap(
        (per_image, ),
        np.mean,
        n_resamples=n_resamples,
        vectorized=True,
        # ~10^7 indices per batch keeps memory near 100 MB at any N
        batch=max(1, 10_000_000 // per_image.size),
        confidence_level=confidence_level,
        method='percentile',
        rng=np.random.default_rng(seed))
    interval = result.confidence_interval
    return (100.0 * float(per_image.mean()), 100.0 * float(interval.low),
            100.0 * float(interval.high))


def mcnemar_pvalue(correct_a: np.ndarray,
                   correct_b: np.ndarray) -> Tuple[float, int, int]:
    """Exact McNemar test of A and B on the same images.

    Only the images where the two disagree carry information; under "no
    difference" each of them is equally likely to favour A or B, which the
    exact test checks with a two-sided binomial test.

    Args:
        correct_a (np.ndarray): shape ``(N,)``, bool.
        correct_b (np.ndarray): shape ``(N,)``, bool, same images.

    Returns:
        tuple[float, int, int]: p-value, images only A gets right, images
        only B gets right.
    """
    _check_pair(correct_a, correct_b)
    both = int(np.sum(correct_a & correct_b))
    only_a = int(np.sum(correct_a & ~correct_b))
    only_b = int(np.sum(~correct_a & correct_b))
    neither = int(correct_a.size) - both - only_a - only_b
    table = [[both, only_a], [only_b, neither]]
    return float(mcnemar(table, exact=True).pvalue), only_a, only_b


def compare_paired(correct_a: np.ndarray,
                   correct_b: np.ndarray,
                   confidence_level: float = 0.95,
                   n_resamples: int = 9999,
                   seed: int = 0) -> PairedComparison:
    """All paired statistics of B against reference A.

    Args:
        correct_a (np.ndarray): shape ``(N,)``, bool, reference model.
        correct_b (np.ndarray): shape ``(N,)``, bool, same images.
        confidence_level (float): of the bootstrap interval. Default: 0.95.
        n_resamples (int): bootstrap resamples. Default: 9999.
        seed (int): seeds the bootstrap. Default: 0.

    Returns:
        PairedComparison: accuracies, difference with its interval, and the
        McNemar test.
    """
    difference, low, high = paired_difference(correct_a, correct_b,
                                              confidence_level, n_resamples,
                                              seed)
    pvalue, only_a, only_b = mcnemar_pvalue(correct_a, correct_b)
    return PairedComparison(accuracy_a=accuracy(correct_a),
                            accuracy_b=accuracy(correct_b),
                            difference=difference,
                            ci_low=low,
                            ci_high=high,
                            confidence_level=confidence_level,
                            only_a_correct=only_a,
                            only_b_correct=only_b,
                            mcnemar_pvalue=pvalue,
                            num_images=int(correct_a.size))


def compare_across_seeds(accuracies_a: Sequence[float],
                         accuracies_b: Sequence[float],
                         confidence_level: float = 0.95) -> SeedComparison:
    """Welch's t-test of the mean accuracies of two methods over seeds.

    Welch's test does not assume the two methods vary equally from seed to
    seed, and does not need the same number of seeds.

    Args:
        accuracies_a (Sequence[float]): shape ``(S_a,)``, reference method's
            accuracy per seed, S_a >= 2.
        accuracies_b (Sequence[float]): shape ``(S_b,)``, S_b >= 2.
        confidence_level (float): of the interval of the mean difference.
            Default: 0.95.

    Returns:
        SeedComparison: means, difference with its interval, t, df, p.
    """
    a = np.asarray(accuracies_a, dtype=np.float64)
    b = np.asarray(accuracies_b, dtype=np.float64)
    if a.ndim != 1 or b.ndim != 1 or a.size < 2 or b.size < 2:
        raise ValueError(
            f'Welch\'s test needs >= 2 seeds per method, got {a.size} and '
            f'{b.size}; train and evaluate more seeds, or compare single '
            'runs with compare_paired.')
    mean_a, mean_b = float(a.mean()), float(b.mean())
    if np.ptp(a) == 0 and np.ptp(b) == 0:
        # Zero variance in both groups: t is undefined (0/0 or x/0).
        nan = float('nan')
        return SeedComparison(mean_a, mean_b, mean_b - mean_a, nan, nan,
                              confidence_level, nan, nan, nan, a.size, b.size)
    result = stats.ttest_ind(b, a, equal_var=False)
    interval = result.confidence_interval(confidence_level)
    return SeedComparison(mean_a=mean_a,
                          mean_b=mean_b,
                          difference=mean_b - mean_a,
                          ci_low=float(interval.low),
                          ci_high=float(interval.high),
                          confidence_level=confidence_level,
                          statistic=float(result.statistic),
                          df=float(result.df),
                          pvalue=float(result.pvalue),
                          num_seeds_a=int(a.size),
                          num_seeds_b=int(b.size))


def _format_p(pvalue: float) -> str:
    return f'{pvalue:.2g}'


def _decision(pvalue: float, alpha: float) -> str:
    if np.isnan(pvalue):
        return 'untestable'
    word = 'significant' if pvalue < alpha else 'not significant'
    return f'{word} at {alpha:g}'


def paired_verdict(name_b: str,
                   name_a: str,
                   comparison: PairedComparison,
                   alpha: float = 0.05) -> str:
    """One line: is B's gain over A on these images significant?

    Args:
        name_b (str): the compared model, e.g. ``'scalekd'``.
        name_a (str): the reference model, e.g. ``'baseline'``.
        comparison (PairedComparison): from :func:`compare_paired`.
        alpha (float): significance level for the McNemar p-value.

    Returns:
        str: e.g. ``'scalekd vs baseline: +1.80 points, 95% CI [0.90, 2.70],
        McNemar p = 0.001: significant at 0.05'``.
    """
    c = comparison
    return (f'{name_b} vs {name_a}: {c.difference:+.2f} points, '
            f'{100 * c.confidence_level:g}% CI [{c.ci_low:.2f}, '
            f'{c.ci_high:.2f}], McNemar p = {_format_p(c.mcnemar_pvalue)}: '
            f'{_decision(c.mcnemar_pvalue, alpha)}')


def seeds_verdict(name_b: str,
                  name_a: str,
                  comparison: SeedComparison,
                  alpha: float = 0.05) -> str:
    """One line: is B's mean gain over A across seeds significant?

    Args:
        name_b (str): the compared method.
        name_a (str): the reference method.
        comparison (SeedComparison): from :func:`compare_across_seeds`.
        alpha (float): significance level for Welch's p-value.

    Returns:
        str: e.g. ``'scalekd vs baseline over 3 vs 3 seeds: +1.80 points
        (mean), 95% CI [0.90, 2.70], Welch p = 0.004: significant at
        0.05'``.
    """
    c = comparison
    head = (f'{name_b} vs {name_a} over {c.num_seeds_b} vs {c.num_seeds_a} '
            f'seeds: {c.difference:+.2f} points (mean)')
    if np.isnan(c.pvalue):
        return (f'{head}, Welch test undefined: neither method\'s accuracy '
                'varies across seeds')
    return (f'{head}, {100 * c.confidence_level:g}% CI [{c.ci_low:.2f}, '
            f'{c.ci_high:.2f}], Welch p = {_format_p(c.pvalue)}: '
            f'{_decision(c.pvalue, alpha)}')
