__version__ = '0.1.0'

# The versions mmscalekd supports, each as [minimum, maximum). setup.py turns
# them into ``install_requires`` and ``mmscalekd/__init__.py`` checks them at
# import time, so the two cannot disagree. ``requirements/runtime.txt`` pins
# the one stack `make` installs and the tests run on.
#
# torch 2.5 is the first with ``torch.serialization.safe_globals`` (safe
# checkpoint loading); the other minimums are the series the code was written
# against, and only the pinned stack is tested. The mmcv range is
# mmpretrain's own. Either mmcv-lite or the full mmcv provides it (both
# install the ``mmcv`` module), so setup.py requires neither and the import
# checks it.
SUPPORTED_VERSIONS = {
    'torch': ('2.5.0', '3.0.0'),
    'torchvision': ('0.20.0', '1.0.0'),
    'mmengine': ('0.10.0', '1.0.0'),
    'mmcv': ('2.0.0', '2.4.0'),
    'mmpretrain': ('1.2.0', '2.0.0'),
    'timm': ('1.0.0', '2.0.0'),
}
