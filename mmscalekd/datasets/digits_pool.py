"""The digits as a small version of ScaleKD's setting: a teacher pre-trained
on more data than the student sees.

scikit-learn's 1,797 handwritten digits are split by source image, per
class, into four disjoint parts:

- ``test``: held out; the verdict is given on it and nothing is tuned on it;
- ``val``: every choice of a setting is made on it;
- ``train``: the student's small labelled split;
- the pool: the rest, from which the teacher's pre-training data is made.
  Each pool image is written ``variants`` times: once as it is and
  ``variants - 1`` times randomly deformed (rotation, scale, shear, shift and,
  for some, thicker strokes), the way handwriting varies between writers.

``meta/pool_<p>.txt`` lists the variants of the first ``p`` per cent of the
pool's source images of each class (in a fixed random order), so that the
pools are nested: the teacher pre-trained on 50% knows everything the one on
25% saw, and more writers. Every image is written at ``size`` px (bicubic
upsampling of the 8x8 scan), grey, as a ``CustomDataset``::

    out_dir/images/<class>/<index>.png      train / val / test images
    out_dir/images/<class>/<index>_<v>.png  pool variants (v = 0: as it is)
    out_dir/meta/{train,val,test}.txt, pool_25.txt, ..., classes.txt
"""
import os.path as osp
from typing import Dict, Sequence

import numpy as np

from .digits import _to_uint8, check_output_dir, write_image_folder

__all__ = ['prepare_digits_pool', 'deform']

# Ranges of the random deformation of a pool variant.
MAX_ROTATION = 15.0  # degrees
SCALE_RANGE = (0.85, 1.1)
MAX_SHEAR = 0.2
MAX_SHIFT = 1.5  # px at 16 px; scaled with the size
THICKER_SHARE = 0.3  # share of variants with dilated strokes


def _upsampled(image: np.ndarray, size: int):
    from PIL import Image
    return Image.fromarray(_to_uint8(image)).resize(
        (size, size), Image.Resampling.BICUBIC)


def deform(image, rng: np.random.Generator):
    """One random variant of a grey PIL image (ink bright, background 0):
    an affine map about the centre, and sometimes dilated strokes."""
    from PIL import Image, ImageFilter
    size = image.size[0]
    angle = np.deg2rad(rng.uniform(-MAX_ROTATION, MAX_ROTATION))
    scale = rng.uniform(*SCALE_RANGE)
    shear = rng.uniform(-MAX_SHEAR, MAX_SHEAR)
    shift = rng.uniform(-MAX_SHIFT, MAX_SHIFT, 2) * size / 16
    cos, sin = np.cos(angle), np.sin(angle)
    forward = scale * np.array([[cos, -sin], [sin, cos]]) @ np.array(
        [[1, shear], [0, 1]])
    # PIL maps each output pixel to an input one: the inverse map.
    inverse = np.linalg.inv(forward)
    centre = np.full(2, (size - 1) / 2)
    offset = centre - inverse @ (centre + shift)
    data = (inverse[0, 0], inverse[0, 1], offset[0], inverse[1, 0],
            inverse[1, 1], offset[1])
    out = image.transform(image.size, Image.Transform.AFFINE, data,
                          resample=Image.Resampling.BILINEAR)
    if rng.random() < THICKER_SHARE:
        dilated = np.asarray(out.filter(ImageFilter.MaxFilter(3)))
        out = Image.fromarray(
            np.maximum(np.asarray(out), (0.6 * dilated).astype(np.uint8)))
    return out


def prepare_digits_pool(out_dir: str,
                        train_per_class: int = 15,
                        val_per_class: int = 30,
                        test_per_class: int = 50,
                        variants: int = 6,
                        pool_percents: Sequence[int] = (25, 50, 100),
                        size: int = 16,
                        seed: int = 0) -> Dict[str, int]:
    """Write the split digits and the teacher's pools under ``out_dir``.

    Deterministic: the same arguments give the same files. An existing
    ``out_dir`` from an earlier conversion is replaced as a whole; any other
    non-empty folder is refused.

    Args:
        out_dir (str): the dataset root to write.
        train_per_class (int): source images of each class in the student's
            labelled split. Defaults to 15.
        val_per_class (int): in the validation split. Defaults to 30.
        test_per_class (int): in the held-out test split. Defaults to 50.
        variants (int): images written per pool source image (the first as
            it is). Defaults to 6.
        pool_percents (Sequence[int]): the nested pools to list, in per cent
            of the pool's source images. Defaults to (25, 50, 100).
        size (int): the side of every image in px. Defaults to 16.
        seed (int): seed of the split and the deformations. Defaults to 0.

    Returns:
        dict: image counts per list (``train``, ``val``, ``test``,
        ``pool_<p>``) and ``pool_sources``, the pool's source images.
    """
    try:
        from sklearn.datasets import load_digits
    except ImportError as error:
        raise ImportError(
            'The digits come with scikit-learn (not installed here): pip '
            'install "mmscalekd[analysis]".') from error
    for name, value in (('train_per_class', train_per_class),
                        ('val_per_class', val_per_class),
                        ('test_per_class', test_per_class),
                        ('variants', variants), ('size', size)):
        if int(value) != value or value < 1:
            raise ValueError(f'`{name}={value}` must be a whole number >= 1.')
    if not pool_percents or any(not 0 < p <= 100 for p in pool_percents):
        raise ValueError(f'`pool_percents={tuple(pool_percents)}` must be '
                         'per cents in (0, 100].')
    out_dir = check_output_dir(out_dir)

    digits = load_digits()
    labels = digits.target
    classes = [str(name) for name in digits.target_names]
    held = train_per_class + val_per_class + test_per_class
    smallest = int(np.bincount(labels).min())
    if held >= smallest:
        raise ValueError(
            f'{held} images per class for train, val and test leave no pool: '
            f'the smallest class has {smallest}; lower `train_per_class`, '
            '`val_per_class` or `test_per_class`.')
    rng = np.random.default_rng(seed)
    splits = dict(train=[], val=[], test=[])
    pool = []  # per class: its pool's source images in a fixed random order
    for label in range(len(classes)):
        members = rng.permutation(np.flatnonzero(labels == label))
        splits['test'] += list(members[:test_per_class])
        splits['val'] += list(members[test_per_class:test_per_class +
                                      val_per_class])
        splits['train'] += list(members[test_per_class + val_per_class:held])
        pool.append(members[held:])

    def name(index, variant=None):
        suffix = '' if variant is None else f'_{variant}'
        return f'{classes[labels[index]]}/{index:04d}{suffix}.png'

    files = {}
    lines = {}
    for split, members in splits.items():
        lines[split] = []
        for i in sorted(members):
            files[name(i)] = np.asarray(_upsampled(digits.images[i], size))
            lines[split].append(f'{name(i)} {labels[i]}')
    for sources in pool:
        for i in sources:
            image = _upsampled(digits.images[i], size)
            files[name(i, 0)] = np.asarray(image)
            for v in range(1, variants):
                files[name(i, v)] = np.asarray(deform(image, rng))
    for percent in pool_percents:
        chosen = sorted(
            int(i) for sources in pool
            for i in sources[:max(1, int(round(len(sources) * percent /
                                                 100)))])
        lines[f'pool_{percent:g}'] = [
            f'{name(i, v)} {labels[i]}' for i in chosen
            for v in range(variants)
        ]
    write_image_folder(out_dir, classes, files, lines)
    counts = {split: len(entries) for split, entries in lines.items()}
    counts['pool_sources'] = int(sum(len(s) for s in pool))
    return counts


def pool_file(percent: float) -> str:
    """The annotation file of a pool, relative to the dataset root."""
    return osp.join('meta', f'pool_{percent:g}.txt')
