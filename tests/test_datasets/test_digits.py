"""prepare_digits: scikit-learn's digits as an mmpretrain CustomDataset."""
import filecmp
import os
import os.path as osp
from collections import Counter

import numpy as np
import pytest
import torch
from PIL import Image
from sklearn.datasets import load_digits

from mmscalekd.datasets.digits import prepare_digits

DIGITS = load_digits()
PER_CLASS = np.bincount(DIGITS.target)  # 178, 182, 177, ...


@pytest.fixture(scope='module')
def digits_root(tmp_path_factory):
    root = str(tmp_path_factory.mktemp('digits') / 'digits')
    counts = prepare_digits(root)
    return root, counts


def read_ann(root, split):
    with open(osp.join(root, 'meta', f'{split}.txt')) as f:
        return [line.split(' ') for line in f.read().splitlines()]


def all_files(root):
    return sorted(
        osp.relpath(osp.join(folder, name), root)
        for folder, _, names in os.walk(root) for name in names)


def test_counts(digits_root):
    root, counts = digits_root
    assert counts['total'] == 1797
    assert counts['train'] == 1257 and counts['val'] == 540
    assert counts['per_class'] == {
        str(k): int(n) for k, n in enumerate(PER_CLASS)}
    with open(osp.join(root, 'meta', 'classes.txt')) as f:
        assert f.read().splitlines() == [str(k) for k in range(10)]
    for k in range(10):
        assert len(os.listdir(osp.join(root, 'images', str(k)))) == \
            PER_CLASS[k]
    train, val = read_ann(root, 'train'), read_ann(root, 'val')
    assert (len(train), len(val)) == (1257, 540)
    # Every image is in exactly one split, with its folder's label.
    paths = [path for path, _ in train + val]
    assert sorted(paths) == all_files(osp.join(root, 'images'))
    assert all(path.split('/')[0] == label for path, label in train + val)


def test_split_is_stratified(digits_root):
    root, _ = digits_root
    val = Counter(int(label) for _, label in read_ann(root, 'val'))
    for k in range(10):
        assert abs(val[k] - 0.3 * PER_CLASS[k]) <= 1, (k, val[k])


def test_pixels_are_the_source_scaled(digits_root):
    root, _ = digits_root
    for index in (0, 5, 1796):
        label = DIGITS.target[index]
        with Image.open(
                osp.join(root, 'images', str(label),
                         f'{index:04d}.png')) as image:
            assert image.mode == 'L' and image.size == (8, 8)
            pixels = np.asarray(image)
        expected = np.rint(DIGITS.images[index] * 255 / 16)
        np.testing.assert_array_equal(pixels, expected)


def test_deterministic_and_idempotent(digits_root, tmp_path):
    root, counts = digits_root
    other = str(tmp_path / 'again')
    assert prepare_digits(other) == counts
    # a stale file from an earlier, different run must disappear
    stale = osp.join(other, 'images', '3', 'stale.png')
    open(stale, 'w').close()
    assert prepare_digits(other) == counts
    files = all_files(root)
    assert files == all_files(other)
    match, mismatch, errors = filecmp.cmpfiles(
        root, other, files, shallow=False)
    assert len(match) == 1797 + 3 and not mismatch and not errors
    # a different seed gives a different split of the same images
    seeded = str(tmp_path / 'seed1')
    prepare_digits(seeded, seed=1)
    assert read_ann(seeded, 'val') != read_ann(root, 'val')


def test_refuses_foreign_folder(tmp_path):
    (tmp_path / 'notes.txt').write_text('keep me')
    with pytest.raises(FileExistsError, match='not an earlier digits'):
        prepare_digits(str(tmp_path))
    assert (tmp_path / 'notes.txt').read_text() == 'keep me'


def test_mmpretrain_custom_dataset_round_trip(digits_root):
    from mmpretrain.datasets import CustomDataset
    root, _ = digits_root
    dataset = CustomDataset(
        data_root=root,
        ann_file='meta/val.txt',
        data_prefix='images',
        classes=osp.join(root, 'meta', 'classes.txt'),
        pipeline=[
            dict(type='LoadImageFromFile'),
            dict(type='Resize', scale=32),
            dict(type='PackInputs')
        ])
    assert len(dataset) == 540
    assert dataset.CLASSES == tuple(str(k) for k in range(10))
    for i in (0, 1, 539):
        sample = dataset[i]
        inputs = sample['inputs']
        assert inputs.shape == (3, 32, 32) and inputs.dtype == torch.uint8
        # grey PNG -> three equal channels
        assert torch.equal(inputs[0], inputs[1])
        assert torch.equal(inputs[0], inputs[2])
        path = sample['data_samples'].img_path
        index = int(osp.splitext(osp.basename(path))[0])
        label = int(sample['data_samples'].gt_label)
        assert label == DIGITS.target[index]
        assert inputs.float().std() > 0  # a real image, not blank


def test_held_out_split_is_opt_in(digits_root, tmp_path):
    root, counts = digits_root
    assert 'test' not in counts
    assert not osp.exists(osp.join(root, 'meta', 'test.txt'))
    held_out = str(tmp_path / 'held_out')
    counts = prepare_digits(held_out, test_fraction=0.2)
    assert (counts['train'], counts['val'], counts['test']) == (1005, 432, 360)
    splits = {split: read_ann(held_out, split)
              for split in ('train', 'val', 'test')}
    paths = [path for lines in splits.values() for path, _ in lines]
    # disjoint and complete: every image in exactly one of the three
    assert sorted(paths) == all_files(osp.join(held_out, 'images'))
    test = Counter(int(label) for _, label in splits['test'])
    for k in range(10):
        assert abs(test[k] - 0.2 * PER_CLASS[k]) <= 1, (k, test[k])
    with pytest.raises(ValueError, match=r'`test_fraction=1` must be in'):
        prepare_digits(held_out, test_fraction=1)
