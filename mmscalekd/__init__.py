"""mmscalekd: ScaleKD distillation as an mmpretrain plugin.

Importing the package registers its models, losses, datasets and runner in
mmpretrain's registries (configs load it with ``custom_imports``).
"""
from .version import __version__
from . import datasets, engine, models  # noqa: F401  (registration)

__all__ = ['__version__']
