import os
import pickle

import numpy as np
import pytest
import torch
from mmengine.logging import HistoryBuffer

from mmscalekd.utils import (MMENGINE_CHECKPOINT_GLOBALS, CheckpointError,
                             load_state_dict_file)
from mmscalekd.utils.checkpoint import _history_buffer_method


class _MakesAFile:
    """Unpickling this runs code: it creates a file (as an attack would)."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, 'w'))


def test_code_running_checkpoint_is_refused(tmp_path):
    marker = tmp_path / 'pwned'
    path = tmp_path / 'evil.pth'
    torch.save({'state_dict': {'w': torch.zeros(1)},
                'payload': _MakesAFile(str(marker))}, path)
    with pytest.raises(CheckpointError,
                       match=r'model\.teacher\.checkpoint=.*evil\.pth'):
        load_state_dict_file(str(path), key='model.teacher.checkpoint')
    assert not marker.exists()
    # Even with the mmengine allow-list in force.
    with torch.serialization.safe_globals(MMENGINE_CHECKPOINT_GLOBALS):
        with pytest.raises(pickle.UnpicklingError):
            torch.load(path, weights_only=True)
    assert not marker.exists()


def test_plain_state_dict_and_safetensors(tmp_path):
    from safetensors.torch import save_file
    state = {'a': torch.randn(2, 3), 'b': torch.arange(4)}
    torch.save(state, tmp_path / 'plain.pth')
    save_file(state, str(tmp_path / 'w.safetensors'))
    for name in ('plain.pth', 'w.safetensors'):
        loaded = load_state_dict_file(str(tmp_path / name), key='k')
        assert loaded.keys() == state.keys()
        assert all(torch.equal(loaded[k], state[k]) for k in state)


def test_not_a_state_dict(tmp_path):
    torch.save([1, 2, 3], tmp_path / 'list.pth')
    with pytest.raises(CheckpointError, match=r'some\.key=.*list\.pth'):
        load_state_dict_file(str(tmp_path / 'list.pth'), key='some.key')


def test_history_buffer_and_numpy_round_trip(tmp_path):
    buffer = HistoryBuffer()
    for value in (1.0, 2.0, np.float64(3.0)):
        buffer.update(value)
    path = tmp_path / 'hub.pth'
    torch.save({'buffer': buffer, 'array': np.arange(3),
                'scalar': np.float32(2.5)}, path)
    with pytest.raises(pickle.UnpicklingError):
        torch.load(path, weights_only=True)  # the torch >= 2.6 breakage
    with torch.serialization.safe_globals(MMENGINE_CHECKPOINT_GLOBALS):
        loaded = torch.load(path, weights_only=True)
    assert loaded['buffer'].mean() == pytest.approx(2.0)
    assert loaded['buffer'].max() == pytest.approx(3.0)
    np.testing.assert_array_equal(loaded['array'], np.arange(3))
    assert loaded['scalar'] == np.float32(2.5)


def test_getattr_stand_in_only_reaches_history_buffer_methods():
    assert _history_buffer_method(HistoryBuffer, 'mean') is \
        HistoryBuffer.mean
    for owner, name in ((os, 'system'), (np.ndarray, 'tofile'),
                        (HistoryBuffer, '__init__'),
                        (HistoryBuffer, '_statistics_methods')):
        with pytest.raises(pickle.UnpicklingError, match='Refused'):
            _history_buffer_method(owner, name)


def _weights():
    return {'backbone.w': torch.randn(2, 3), 'head.b': torch.zeros(2)}


def test_weights_under_model_are_unwrapped(tmp_path):
    """DeiT and many timm releases keep the weights under 'model'."""
    weights = _weights()
    torch.save({'model': weights, 'epoch': 300}, tmp_path / 'deit.pth')
    loaded = load_state_dict_file(str(tmp_path / 'deit.pth'), key='k')
    assert loaded.keys() == weights.keys()
    assert all(torch.equal(loaded[k], weights[k]) for k in weights)


def test_ddp_module_prefix_is_removed(tmp_path):
    weights = _weights()
    torch.save({f'module.{k}': v for k, v in weights.items()},
               tmp_path / 'ddp.pth')
    loaded = load_state_dict_file(str(tmp_path / 'ddp.pth'), key='k')
    assert set(loaded) == set(weights)


def test_a_partial_module_prefix_is_kept(tmp_path):
    """Only a prefix on every key is DDP's; anything else is the model's."""
    weights = {'module.w': torch.zeros(1), 'head.b': torch.zeros(1)}
    torch.save(weights, tmp_path / 'mixed.pth')
    assert set(load_state_dict_file(str(tmp_path / 'mixed.pth'),
                                    key='k')) == set(weights)
