"""A small, learnable image classification dataset made on the fly."""
from typing import List, Optional

import numpy as np
from mmengine.dataset import BaseDataset

from mmpretrain.registry import DATASETS

__all__ = ['SyntheticClassificationDataset']


@DATASETS.register_module()
class SyntheticClassificationDataset(BaseDataset):
    """Images whose class is visible: a class colour plus class stripes.

    Each class ``k`` has a fixed mean colour and a stripe orientation and
    frequency; every sample adds its own phase and pixel noise. Nothing is
    read from disk or downloaded, and the same ``seed`` always gives the same
    images, so smoke runs and tests are reproducible anywhere.

    Args:
        num_samples (int): number of images. Defaults to 128.
        num_classes (int): number of classes. Defaults to 4.
        image_size (int): height and width of each image. Defaults to 64.
        seed (int): seed of the generator. Defaults to 0.
        pipeline (list): mmpretrain transforms, e.g. ``[dict(type=
            'PackInputs')]``.
        test_mode (bool): as in mmengine datasets.
    """

    def __init__(self,
                 num_samples: int = 128,
                 num_classes: int = 4,
                 image_size: int = 64,
                 seed: int = 0,
                 pipeline: Optional[list] = None,
                 test_mode: bool = False,
                 **kwargs) -> None:
        if num_samples < 1 or num_classes < 1 or image_size < 1:
            raise ValueError('SyntheticClassificationDataset needs positive '
                             '`num_samples`, `num_classes` and `image_size`.')
        self.num_samples = num_samples
        self.num_classes = num_classes
        self.image_size = image_size
        self.seed = seed
        metainfo = dict(classes=[f'class_{k}' for k in range(num_classes)])
        super().__init__(
            metainfo=metainfo,
            pipeline=pipeline or [],
            test_mode=test_mode,
            serialize_data=False,
            **kwargs)

    def load_data_list(self) -> List[dict]:
        rng = np.random.default_rng(self.seed)
        class_rng = np.random.default_rng(1234)  # classes are seed-free
        colours = class_rng.uniform(40, 215, size=(self.num_classes, 3))
        angles = class_rng.uniform(0, np.pi, size=self.num_classes)
        frequencies = class_rng.uniform(2, 6, size=self.num_classes)
        grid = np.arange(self.image_size) / self.image_size
        yy, xx = np.meshgrid(grid, grid, indexing='ij')
        data_list = []
        for index in range(self.num_samples):
            label = index % self.num_classes
            direction = (np.cos(angles[label]) * xx +
                         np.sin(angles[label]) * yy)
            phase = rng.uniform(0, 2 * np.pi)
            stripes = np.sin(2 * np.pi * frequencies[label] * direction +
                             phase)
            image = (colours[label] + 40 * stripes[..., None] +
                     rng.normal(0, 20, size=(*yy.shape, 3)))
            data_list.append(
                dict(
                    img=np.clip(image, 0, 255).astype(np.uint8),
                    gt_label=label))
        return data_list
