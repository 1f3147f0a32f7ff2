"""scikit-learn's handwritten digits as an mmpretrain image-folder dataset.

``sklearn.datasets.load_digits()`` ships inside scikit-learn: 1,797 real 8x8
grey-level scans of handwritten digits (UCI "Optical Recognition of
Handwritten Digits", values 0..16). :func:`prepare_digits` writes them as an
ordinary mmpretrain ``CustomDataset`` so that real images can go through the
same file-reading pipeline as ImageNet, with nothing downloaded::

    out_dir/
        images/0/0000.png ... images/9/1796.png   one folder per class
        meta/train.txt, meta/val.txt              "images-relative path label"
        meta/test.txt                             only with test_fraction > 0
        meta/classes.txt                          one class name a line

The PNGs are 8-bit single-channel (grey) 8x8 images, the source values
scaled from 0..16 to 0..255. mmpretrain's default ``LoadImageFromFile``
(``color_type='color'``) decodes a grey PNG as three equal channels, so the
images reach a model as ordinary 3-channel inputs. A dataset config::

    dataset=dict(
        type='CustomDataset',
        data_root='data/digits',
        ann_file='meta/train.txt',
        data_prefix='images',
        classes='data/digits/meta/classes.txt',  # relative to the work dir
        pipeline=[
            dict(type='LoadImageFromFile'),
            dict(type='Resize', scale=32),
            dict(type='PackInputs')])
"""
import os
import os.path as osp
import shutil
import tempfile
from typing import Dict, List

import numpy as np

__all__ = ['prepare_digits']

_MAX_VALUE = 16  # load_digits() pixel range is 0..16
# File names are the sample's index in load_digits(), so a file always holds
# the same source image whatever the split.
_NAME = '{label}/{index:04d}.png'


def _to_uint8(image: np.ndarray) -> np.ndarray:
    """0..16 -> 0..255, rounded to the nearest integer."""
    return np.rint(image * (255 / _MAX_VALUE)).astype(np.uint8)


def _is_previous_output(out_dir: str) -> bool:
    """Whether ``out_dir`` holds nothing but an earlier conversion."""
    entries = set(os.listdir(out_dir))
    return not entries or (entries <= {'images', 'meta'}
                           and osp.isfile(osp.join(out_dir, 'meta',
                                                   'classes.txt')))


def _write_lines(path: str, lines: list) -> None:
    with open(path, 'w', newline='\n') as f:
        f.write(''.join(f'{line}\n' for line in lines))


def check_output_dir(out_dir: str) -> str:
    """``out_dir`` as an absolute path, refused when it exists and holds
    anything but an earlier conversion (it is replaced as a whole)."""
    out_dir = osp.abspath(out_dir)
    if osp.exists(out_dir) and not (osp.isdir(out_dir)
                                    and _is_previous_output(out_dir)):
        raise FileExistsError(
            f'{out_dir} exists and is not an earlier digits conversion; '
            'choose an empty or new folder (it would be replaced as a '
            'whole).')
    return out_dir


def write_image_folder(out_dir: str, classes: List[str],
                       files: Dict[str, np.ndarray],
                       splits: Dict[str, List[str]]) -> None:
    """Write ``files`` (path under ``images/`` -> grey uint8 image) and one
    ``meta/<split>.txt`` per split (its lines), plus ``meta/classes.txt``.

    Written next to ``out_dir``, then swapped in, so that an interrupted
    run never leaves a half-written dataset behind.
    """
    from PIL import Image
    parent = osp.dirname(out_dir)
    os.makedirs(parent, exist_ok=True)
    staging = tempfile.mkdtemp(prefix='.digits-', dir=parent)
    try:
        for name in classes:
            os.makedirs(osp.join(staging, 'images', name))
        for path, image in files.items():
            Image.fromarray(image).save(osp.join(staging, 'images', path))
        os.makedirs(osp.join(staging, 'meta'))
        _write_lines(osp.join(staging, 'meta', 'classes.txt'), classes)
        for split, lines in splits.items():
            _write_lines(osp.join(staging, 'meta', f'{split}.txt'), lines)
        if osp.exists(out_dir):
            shutil.rmtree(out_dir)
        os.replace(staging, out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    # mkdtemp creates a private (0700) folder; give it ordinary permissions.
    os.chmod(out_dir, 0o755)


def prepare_digits(out_dir: str,
                   val_fraction: float = 0.3,
                   seed: int = 0,
                   test_fraction: float = 0) -> Dict[str, object]:
    """Write the scikit-learn digits as a ``CustomDataset`` under ``out_dir``.

    The split is stratified by class (``train_test_split(stratify=...)``) and
    fixed by ``seed``. With ``test_fraction > 0`` a held-out ``test`` split
    is taken out of each class first, and ``val_fraction`` of the rest goes
    to ``val``: a split to report on that no setting was chosen on. The
    output is deterministic: the same arguments give
    byte-identical files. An existing ``out_dir`` from an earlier run is
    replaced as a whole (no stale files); any other non-empty folder is
    refused rather than deleted.

    Args:
        out_dir (str): the dataset root to write.
        val_fraction (float): share of each class that goes to ``val``.
            Defaults to 0.3.
        seed (int): seed of the split. Defaults to 0.
        test_fraction (float): share of each class that goes to ``test``;
            0 writes no test split (the files are those of earlier
            versions). Defaults to 0.

    Returns:
        dict: ``total``, ``train`` and ``val`` image counts (and ``test``
        with ``test_fraction > 0``) and ``per_class`` (class name -> count
        over all splits).
    """
    try:
        from sklearn.datasets import load_digits
        from sklearn.model_selection import train_test_split
    except ImportError as error:
        missing = (error.name or 'sklearn').split('.')[0]
        raise ImportError(
            f'The digits come with scikit-learn ({missing} is not installed '
            'here): pip install "mmscalekd[analysis]".') from error

    if not 0 < val_fraction < 1:
        raise ValueError(f'`val_fraction={val_fraction}` must be strictly '
                         'between 0 and 1.')
    if not 0 <= test_fraction < 1:
        raise ValueError(f'`test_fraction={test_fraction}` must be in [0, 1) '
                         '(0: no test split).')
    out_dir = check_output_dir(out_dir)

    digits = load_digits()
    images, labels = digits.images, digits.target
    classes = [str(name) for name in digits.target_names]
    indices = np.arange(len(labels))
    splits = {}
    if test_fraction > 0:
        indices, splits['test'] = train_test_split(
            indices, test_size=test_fraction, stratify=labels,
            random_state=seed)
    train, val = train_test_split(
        indices, test_size=val_fraction, stratify=labels[indices],
        random_state=seed)
    splits = dict(train=train, val=val, **splits)

    files = {
        _NAME.format(label=classes[label], index=index): _to_uint8(image)
        for index, (image, label) in enumerate(zip(images, labels))
    }
    write_image_folder(
        out_dir, classes, files, {
            split: [
                _NAME.format(label=classes[labels[i]], index=i) +
                f' {labels[i]}' for i in sorted(members)
            ]
            for split, members in splits.items()
        })

    per_class = np.bincount(labels, minlength=len(classes))
    return dict(
        total=int(len(labels)),
        **{split: int(len(members)) for split, members in splits.items()},
        per_class={name: int(n) for name, n in zip(classes, per_class)})
