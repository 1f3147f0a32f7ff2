"""mmpretrain's data-loader defaults, as its tools/train.py and tools/test.py
set them, for this package's tools (so a config runs the same under both)."""
from copy import deepcopy
from typing import Sequence

import torch
from mmengine.config import ConfigDict


def has_accelerator() -> bool:
    """Whether torch sees a GPU (or another accelerator) to pin memory for."""
    accelerator = getattr(torch, 'accelerator', None)  # torch >= 2.6
    return bool(accelerator.is_available() if accelerator is not None else
                torch.cuda.is_available())


def set_dataloader_defaults(cfg,
                            splits: Sequence[str],
                            persistent_workers: bool = True,
                            no_pin_memory: bool = False,
                            no_persistent_workers: bool = False) -> None:
    """Fill in mmpretrain's defaults for the ``<split>_dataloader`` of each
    of ``splits`` that the config has, where it does not set them, then
    apply the ``--no-*`` flags.

    The defaults: ``pin_memory`` where there is an accelerator (without one
    torch pins nothing and only warns, once per loader), the
    ``default_collate`` collate function, and with ``persistent_workers``
    (mmpretrain's train.py; its test.py leaves it out) persistent workers.
    Those need worker processes: a config with ``num_workers=0`` sets
    ``persistent_workers=False`` itself.
    """
    defaults = dict(pin_memory=has_accelerator(),
                    collate_fn=dict(type='default_collate'))
    if persistent_workers:
        defaults['persistent_workers'] = True
    for split in splits:
        field = f'{split}_dataloader'
        if cfg.get(field) is None:
            continue
        loader = ConfigDict(deepcopy(defaults))
        loader.update(cfg[field])
        if no_pin_memory:
            loader.pin_memory = False
        if no_persistent_workers:
            loader.persistent_workers = False
        cfg[field] = loader
