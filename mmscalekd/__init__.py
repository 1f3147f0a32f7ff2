"""mmscalekd: ScaleKD distillation as an mmpretrain plugin.

Importing the package registers its models, losses, datasets and hooks in
mmpretrain's registries (configs load it with ``custom_imports``).
"""
import importlib
import importlib.util
import warnings

from mmengine.utils import digit_version

from .version import SUPPORTED_VERSIONS, __version__


def check_dependency_versions(installed=None):
    """Refuse to import next to a dependency outside its supported range.

    As OpenMMLab packages do (``mmpretrain/__init__.py``), since setup.py
    states ranges that an environment built otherwise may not meet, and it
    requires no mmcv at all (see ``SUPPORTED_VERSIONS``).

    Args:
        installed (dict, optional): Version strings by package name, in place
            of the ``__version__`` of each imported package.

    Raises:
        ImportError: Naming the package, the installed version, the
            supported range and how to install a supported one; or, without
            ``pkg_resources``, the setuptools to install.
    """
    for name, (minimum, maximum) in SUPPORTED_VERSIONS.items():
        if installed is not None and name in installed:
            version = installed[name]
        else:
            try:
                version = importlib.import_module(name).__version__
            except ImportError:
                hint = (' (mmcv-lite or the full mmcv: '
                        'pip install "mmscalekd[mmcv-lite]", or '
                        f'mim install "mmcv>={minimum},<{maximum}")'
                        if name == 'mmcv' else '')
                raise ImportError(
                    f'mmscalekd needs {name}>={minimum},<{maximum}, which is '
                    f'not installed{hint}.') from None
        if not (digit_version(minimum) <= digit_version(version)
                < digit_version(maximum)):
            raise ImportError(
                f'mmscalekd {__version__} supports {name}>={minimum},'
                f'<{maximum}, but {name}=={version} is installed. Install a '
                f'supported one (pip install "{name}>={minimum},<{maximum}"); '
                'requirements/runtime.txt lists the tested stack.')
    if importlib.util.find_spec('pkg_resources') is None:
        # Not imported by mmscalekd itself, but mmengine's config loader
        # imports it for every `mmpretrain::` base (every shipped config
        # has one), and so does mim: without it nothing trains.
        raise ImportError(
            'mmscalekd needs pkg_resources, which setuptools 82 and later no '
            'longer ship: mmengine reads the `mmpretrain::` bases of configs '
            'with it, and mim its packages. Install the tested setuptools: '
            'pip install "setuptools<80".')


check_dependency_versions()

with warnings.catch_warnings():
    # mmpretrain.models imports mmcv's transformer bricks, which warn under
    # mmcv-lite that its compiled MultiScaleDeformableAttention (a detection
    # op) is missing. No classification model uses it, and every tool and
    # mim command would print the warning.
    warnings.filterwarnings(
        'ignore', message='Fail to import ``MultiScaleDeformableAttention``',
        category=UserWarning)
    from . import datasets, engine, models  # noqa: E402, F401  (registration)

__all__ = ['__version__', 'check_dependency_versions']
