"""The digits split for the quick start's study: disjoint, nested pools."""
import filecmp
import re

import numpy as np
import pytest
from PIL import Image

from mmscalekd.datasets.digits_pool import prepare_digits_pool


def _lines(root, name):
    with open(root / 'meta' / f'{name}.txt') as f:
        return [line.split() for line in f.read().splitlines()]


def _source(path):
    """The load_digits() index an image was made from."""
    return int(re.match(r'\d/(\d{4})', path).group(1))


@pytest.fixture(scope='module')
def pool(tmp_path_factory):
    root = tmp_path_factory.mktemp('pool') / 'digits_pool'
    return root, prepare_digits_pool(str(root))


def test_splits_are_disjoint_by_source_image_and_sized(pool):
    root, counts = pool
    sources = {
        name: {_source(p) for p, _ in _lines(root, name)}
        for name in ('train', 'val', 'test', 'pool_100')
    }
    assert counts['train'] == 150 and counts['val'] == 300
    assert counts['test'] == 500
    assert len(sources['pool_100']) == counts['pool_sources'] == 1797 - 950
    names = list(sources)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            assert not sources[a] & sources[b], (a, b)
    for name in ('train', 'val', 'test'):  # stratified: equal per class
        labels = np.array([int(label) for _, label in _lines(root, name)])
        assert len(set(np.bincount(labels, minlength=10))) == 1


def test_pools_are_nested_and_hold_six_variants_of_each_source(pool):
    root, counts = pool
    sets = {p: {tuple(line) for line in _lines(root, f'pool_{p}')}
            for p in (25, 50, 100)}
    assert sets[25] < sets[50] < sets[100]
    for p in (25, 50, 100):
        assert counts[f'pool_{p}'] == len(sets[p])
        sources = {_source(path) for path, _ in sets[p]}
        assert len(sets[p]) == 6 * len(sources)
    assert abs(len(sets[25]) / len(sets[100]) - 0.25) < 0.02
    # the label is the class folder's
    assert all(path[0] == label for path, label in sets[100])


def test_variants_are_16_px_and_deformed(pool):
    root, _ = pool
    path, _ = _lines(root, 'pool_100')[0]
    original = np.asarray(Image.open(root / 'images' / path))
    variant = np.asarray(
        Image.open(root / 'images' / path.replace('_0.png', '_1.png')))
    assert original.shape == variant.shape == (16, 16)
    assert original.max() > 200  # ink reaches full scale
    assert np.abs(original.astype(int) - variant).mean() > 5


def test_same_arguments_write_the_same_files(pool, tmp_path):
    root, _ = pool
    again = tmp_path / 'again'
    prepare_digits_pool(str(again))
    for name in ('pool_100', 'train', 'test'):
        assert filecmp.cmp(root / 'meta' / f'{name}.txt',
                           again / 'meta' / f'{name}.txt', shallow=False)
    path, _ = _lines(root, 'pool_100')[7]
    assert filecmp.cmp(root / 'images' / path, again / 'images' / path,
                       shallow=False)


def test_a_split_that_leaves_no_pool_is_refused(tmp_path):
    with pytest.raises(ValueError, match=r'leave no pool.*`test_per_class`'):
        prepare_digits_pool(str(tmp_path / 'x'), test_per_class=170)
