__version__ = '0.1.0'

# The versions mmscalekd supports, each as [minimum, maximum). setup.py turns
# them into ``install_requires`` and ``mmscalekd/__init__.py`` checks them at
# import time, so the two cannot disagree. ``requirements/runtime.txt`` pins
# the one stack `make` installs and the tests run on.
#
# Each range runs from the first to the last release that `make test-matrix`
# (tools/misc/test_matrix.py) tests, and ends before the next minor release,
# which is untested; README.md ("Tested versions") says why older releases
# are left out. Only torch 2.14 is tested. Either mmcv-lite or the full mmcv
# provides ``mmcv`` (both install the module), so setup.py requires neither
# and the import checks it; only mmcv-lite is tested.
SUPPORTED_VERSIONS = {
    'torch': ('2.14.0', '2.15.0'),
    'torchvision': ('0.29.0', '0.30.0'),
    'mmengine': ('0.10.0', '0.11.0'),
    'mmcv': ('2.0.0', '2.3.0'),
    'mmpretrain': ('1.0.0', '1.3.0'),
    'timm': ('1.0.10', '1.1.0'),
}
