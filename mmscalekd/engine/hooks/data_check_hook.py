"""Faults in the data, reported with the file and the config key."""
import os
import os.path as osp
from typing import Optional, Sequence

import numpy as np
import torch
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper

from mmpretrain.registry import HOOKS

__all__ = [
    'DataCheckHook', 'DataError', 'ReportingPipeline', 'dataset_build_problem',
    'dataset_error', 'report_samples'
]


class DataError(ValueError):
    """A sample of a dataset cannot be used; the message names it."""


def _classifier_head(model):
    """The classification head and the config key of its class count."""
    student = getattr(model, 'student', None)
    if student is not None and hasattr(student, 'head'):
        return student.head, 'model.student.head.num_classes'
    return getattr(model, 'head', None), 'model.head.num_classes'


def _num_classes(head) -> Optional[int]:
    num_classes = getattr(head, 'num_classes', None)
    return num_classes if isinstance(num_classes, int) else None


def _sample_name(sample, fallback) -> str:
    path = sample.get('img_path') if hasattr(sample, 'get') else None
    return str(path) if path else f'sample {fallback}'


@HOOKS.register_module()
class DataCheckHook(Hook):
    """Refuse labels the model cannot predict and non-finite predictions.

    In ``configs/_base_/scalekd_runtime.py``, so in every shipped config.

    - Before training, the training set's labels are checked against the
      head's ``num_classes`` (for datasets that list them), and each batch's
      labels before it reaches the model: an out-of-range label would
      otherwise index past the logits (a device-side assert on GPUs) or be
      one-hot encoded into nothing by Mixup / CutMix.
    - A sample that cannot be loaded names its file and the dataset's
      config key (:class:`ReportingPipeline`).
    - In validation and test, non-finite predictions (NaN pixels in the
      data, or a diverged model) are an error: argmax over NaN scores picks
      class 0 and quietly lowers the accuracy.
    """

    priority = 'VERY_HIGH'

    def _setup(self, runner):
        model = runner.model.module if is_model_wrapper(
            runner.model) else runner.model
        head, self._key = _classifier_head(model)
        self._num_classes = _num_classes(head)

    # ------------------------------------------------------------- labels
    def before_train(self, runner) -> None:
        self._setup(runner)
        dataset = runner.train_dataloader.dataset
        report_samples(dataset, 'train_dataloader.dataset')
        get_gt_labels = getattr(dataset, 'get_gt_labels', None)
        if self._num_classes is None or get_gt_labels is None:
            return
        try:
            labels = np.asarray(get_gt_labels())
        except (KeyError, TypeError, ValueError):
            return  # a dataset without per-sample class indices
        if labels.dtype.kind not in 'iu' or labels.ndim != 1:
            return
        bad = np.flatnonzero((labels < 0) | (labels >= self._num_classes))
        if len(bad):
            names = [
                f'{_sample_name(dataset.get_data_info(int(i)), int(i))} '
                f'(label {labels[i]})' for i in bad[:5]
            ]
            raise DataError(self._label_message(
                len(bad), names, 'train_dataloader.dataset'))

    def _label_message(self, count: int, names: Sequence[str],
                       where: str) -> str:
        return (f'{count} sample(s) of `{where}` have labels outside [0, '
                f'{self._num_classes}), the classes of `{self._key}='
                f'{self._num_classes}`: {list(names)}. Fix their labels in '
                'the annotation file, or set `num_classes` (head and '
                '`data_preprocessor`) to the number of classes of the data.')

    def _check_labels(self, data_batch, where: str) -> None:
        if self._num_classes is None or not isinstance(data_batch, dict):
            return
        samples = [s for s in data_batch.get('data_samples') or []
                   if getattr(s, 'gt_label', None) is not None]
        if not samples:
            return
        labels = [torch.as_tensor(s.gt_label).reshape(-1) for s in samples]
        # One test per batch; the samples are looked at only when it fails.
        flat = torch.cat(labels)
        if not bool(((flat < 0) | (flat >= self._num_classes)).any()):
            return
        bad = [f'{_sample_name(s.metainfo, i)} (label {label.tolist()})'
               for i, (s, label) in enumerate(zip(samples, labels))
               if bool(((label < 0) | (label >= self._num_classes)).any())]
        raise DataError(self._label_message(len(bad), bad[:5], where))

    def before_train_iter(self, runner, batch_idx: int,
                          data_batch=None) -> None:
        self._check_labels(data_batch, 'train_dataloader.dataset')

    def before_val(self, runner) -> None:
        self._setup(runner)
        report_samples(runner.val_dataloader.dataset, 'val_dataloader.dataset')

    def before_test(self, runner) -> None:
        self._setup(runner)
        report_samples(runner.test_dataloader.dataset,
                       'test_dataloader.dataset')

    def before_val_iter(self, runner, batch_idx: int,
                        data_batch=None) -> None:
        self._check_labels(data_batch, 'val_dataloader.dataset')

    def before_test_iter(self, runner, batch_idx: int,
                         data_batch=None) -> None:
        self._check_labels(data_batch, 'test_dataloader.dataset')

    # -------------------------------------------------------- predictions
    def _check_predictions(self, data_batch, outputs, where: str) -> None:
        scored = [s for s in outputs or []
                  if getattr(s, 'pred_score', None) is not None]
        # One device synchronisation per batch, not one per image.
        if not scored or bool(torch.isfinite(torch.stack(
                [s.pred_score for s in scored])).all()):
            return
        bad = [_sample_name(s.metainfo, i) for i, s in enumerate(scored)
               if not bool(torch.isfinite(s.pred_score).all())]
        inputs = data_batch.get('inputs') if isinstance(data_batch,
                                                        dict) else None
        nan_pixels = any(
            isinstance(x, torch.Tensor) and x.is_floating_point()
            and not bool(torch.isfinite(x).all())
            for x in (inputs if isinstance(inputs, (list, tuple)) else
                      [inputs]))
        cause = ('the images themselves hold NaN/Inf pixels: fix the data '
                 'or its loading pipeline' if nan_pixels else
                 'the images are finite, so the model itself gives NaN/Inf '
                 '(check the checkpoint)')
        raise DataError(
            f'Non-finite predictions for {len(bad)} image(s) of `{where}`: '
            f'{bad[:5]}; {cause}. An accuracy computed over them would be '
            'quietly wrong.')

    def after_val_iter(self, runner, batch_idx: int, data_batch=None,
                       outputs=None) -> None:
        self._check_predictions(data_batch, outputs, 'val_dataloader.dataset')

    def after_test_iter(self, runner, batch_idx: int, data_batch=None,
                        outputs=None) -> None:
        self._check_predictions(data_batch, outputs,
                                'test_dataloader.dataset')


def _in_root(cfg: dict, name: str) -> Optional[str]:
    """A path key of a dataset config as the dataset reads it (relative
    paths are under ``data_root``)."""
    value = cfg.get(name)
    if not isinstance(value, str) or not value:
        return None
    root = cfg.get('data_root')
    return value if osp.isabs(value) or not isinstance(root, str) else \
        osp.join(root, value)


def _first_bad_label(ann_file: str) -> Optional[str]:
    """``'line N: <line>'`` of the first line of an mmpretrain annotation
    file (``<image> <class index>``) whose label is not an integer."""
    try:
        with open(ann_file, errors='replace') as f:
            for number, line in enumerate(f, 1):
                words = line.strip().rsplit(' ', 1)
                if len(words) == 2 and not words[1].lstrip('-').isdigit():
                    return f'line {number}: {line.strip()[:200]!r}'
    except OSError:
        return None
    return None


def dataset_build_problem(error: Exception, cfg, key: str) -> Optional[str]:
    """What to tell a user whose dataset ``key`` failed to build, or None
    when ``error`` is not one of the data mistakes named here: a missing
    data folder or annotation file (ImageNet not laid out where the config
    expects it) and an annotation file with labels that are not class
    indices."""
    if not hasattr(cfg, 'get'):
        return None
    kind = cfg.get('type')
    if isinstance(error, FileNotFoundError):
        for name in ('data_root', 'ann_file'):
            path = cfg.get('data_root') if name == 'data_root' else \
                _in_root(cfg, name)
            if isinstance(path, str) and path and not osp.exists(path):
                hint = (' For ImageNet, lay it out as docs/imagenet.md of '
                        'mmscalekd says (train/ and val/ class folders, '
                        'meta/ annotation files) or point the key at '
                        'yours' if 'imagenet' in f'{kind} {path}'.lower() else
                        ' Point the key at your data')
                return (f'`{key}.{name}={cfg.get(name)!r}` does not exist '
                        f'(relative paths start at {os.getcwd()}).{hint}, '
                        f'e.g. --cfg-options {key}.{name}=/path/to/it.')
        return (f'Building `{key}` ({kind}) failed: a file or folder it '
                f'reads does not exist ({error}). Check `{key}.data_root`, '
                f'`{key}.data_prefix` and `{key}.ann_file`.')
    ann_file = _in_root(cfg, 'ann_file')
    if isinstance(error, ValueError) and ann_file and osp.isfile(ann_file):
        line = _first_bad_label(ann_file)
        if line is not None:
            return (f'`{key}.ann_file` ({ann_file}), {line}: the label is '
                    'not a class index. Annotation files list "<image '
                    'path> <class index>" per line, with indices from 0; '
                    'turn class names into indices (and give the names as '
                    f'`{key}.metainfo.classes`), or leave `ann_file` out to '
                    'take the classes from the sub-folder names.')
    return None


def dataset_error(error: BaseException, cfg) -> Optional['DataError']:
    """The :class:`DataError` for ``error`` raised while a run built its
    data loaders from ``cfg``, or None when it is not one of the data
    mistakes :func:`dataset_build_problem` names. Datasets are built before
    any hook runs, so the tools ask this of what ``runner.train()`` or
    ``runner.test()`` raised."""
    if not isinstance(error, (OSError, ValueError)) or isinstance(
            error, DataError):
        return None
    for split in ('train', 'val', 'test'):
        loader = cfg.get(f'{split}_dataloader')
        dataset = loader.get('dataset') if hasattr(loader, 'get') else None
        if isinstance(dataset, dict):
            problem = dataset_build_problem(
                error, dataset, f'{split}_dataloader.dataset')
            if problem is not None and _names_a_missing_path_or_label(
                    problem):
                return DataError(problem)
    return None


def _names_a_missing_path_or_label(problem: str) -> bool:
    # The generic "a file it reads does not exist" could be any missing
    # file of the run; only the named keys are sure to be the data's.
    return not problem.startswith('Building `')


class ReportingPipeline:
    """A dataset's pipeline whose failing samples name their file and the
    config key.

    A sample that cannot be loaded (an unreadable or corrupt image) raises
    deep in a data-loader worker with the pipeline's own message; here it
    becomes a :class:`DataError` naming the file, the dataset's config key
    and its folder. :class:`DataCheckHook` puts it in place before each
    loop iterates (and so before any worker starts).

    Args:
        pipeline: the dataset's ``pipeline``.
        key (str): its config key, e.g. ``'train_dataloader.dataset'``.
        where (str): the dataset's ``data_root`` / ``ann_file``, for the
            message.
    """

    def __init__(self, pipeline, key: str, where: str) -> None:
        self.pipeline = pipeline
        self.key = key
        self.where = where

    def __call__(self, results):
        try:
            return self.pipeline(results)
        except Exception as error:  # noqa: BLE001 (re-raised, named)
            index = results.get('sample_idx') if hasattr(results,
                                                         'get') else None
            name = _sample_name(results, index)
            raise DataError(
                f'Cannot load {name} (index {index}) of `{self.key}`'
                f'{self.where}: {type(error).__name__}: {error}. Replace the '
                'file, or remove it from the dataset (its line in the '
                'annotation file).') from error

    def __getattr__(self, name: str):
        if name in ('pipeline', 'key', 'where'):  # not set yet (unpickling)
            raise AttributeError(name)
        return getattr(self.pipeline, name)


def report_samples(dataset, key: str) -> None:
    """Give ``dataset`` (and the datasets a wrapper holds) a
    :class:`ReportingPipeline`."""
    inner = getattr(dataset, 'datasets', None)
    if isinstance(inner, (list, tuple)):
        for part in inner:
            report_samples(part, key)
        return
    if isinstance(getattr(dataset, 'dataset', None), torch.utils.data.Dataset):
        report_samples(dataset.dataset, key)
        return
    pipeline = getattr(dataset, 'pipeline', None)
    if pipeline is None or not callable(pipeline) or isinstance(
            pipeline, ReportingPipeline):
        return
    where = ', '.join(f'{attr}={getattr(dataset, attr)!r}'
                      for attr in ('data_root', 'ann_file')
                      if getattr(dataset, attr, None))
    dataset.pipeline = ReportingPipeline(
        pipeline, key, f' ({type(dataset).__name__}, {where})' if where else
        f' ({type(dataset).__name__})')
