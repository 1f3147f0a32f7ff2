"""Data faults found while the data flows, not only before training."""
import numpy as np
import pytest

from mmpretrain.registry import TRANSFORMS

from mmscalekd.engine import DataError
from tests.conftest import build_runner, smoke_config


@TRANSFORMS.register_module(force=True)
class _RelabelTo9:
    """Test transform: the label a broken pipeline step would give."""

    def __call__(self, results):
        results['gt_label'] = 9
        return results


@TRANSFORMS.register_module(force=True)
class _NaNImage:
    """Test transform: a float image with a NaN pixel."""

    def __call__(self, results):
        image = results['img'].astype(np.float32)
        image[0, 0, 0] = np.nan
        results['img'] = image
        return results


def test_a_batch_label_outside_the_classes_stops_before_the_model(tmp_path):
    # The annotations are fine (the check before training passes); the
    # pipeline changes the label.
    runner = build_runner(smoke_config(tmp_path, **{
        'train_dataloader.dataset.pipeline': [
            dict(type='_RelabelTo9'), dict(type='PackInputs')]}))
    with pytest.raises(DataError, match=r'train_dataloader\.dataset.*'
                       r'num_classes=4.*sample 0 \(label \[9\]\)'):
        runner.train()
    assert runner.iter == 0


def test_nan_predictions_in_validation_are_an_error(tmp_path):
    runner = build_runner(smoke_config(tmp_path, validate=True, **{
        'val_dataloader.dataset.pipeline': [
            dict(type='_NaNImage'), dict(type='PackInputs')]}))
    with pytest.raises(DataError, match=r'Non-finite predictions for 32 '
                       r'image\(s\) of `val_dataloader\.dataset`.*pixels'):
        runner.train()
