"""Install mmscalekd.

Like other OpenMMLab packages, the repository's ``configs/`` and ``tools/``
and its model index (``model-index.yml``, which imports each
``configs/*/metafile.yml``) are shipped inside the package as
``mmscalekd/.mim/``, so that ``mim train mmscalekd CONFIG`` and ``mim search
mmscalekd`` find them after a plain ``pip install``: mim looks for
``<installed package>/.mim/model-index.yml``.

mim (0.3.9, ``mim.utils.get_installed_path``) takes the installed package
to be ``<location>/mmscalekd``, ``location`` being the folder that holds the
distribution's metadata, and where that does not exist,
``<location>/<first line of top_level.txt>``. After ``pip install .`` the
first is site-packages/mmscalekd, with its copied ``.mim``. After ``pip
install -e .`` (PEP 660; also ``mim install -e .``) the metadata is in
site-packages but the package stays in the checkout, whose ``mmscalekd/.mim``
links to ``configs/`` and ``tools/`` (so edits show at once). The editable
wheel's ``top_level.txt`` therefore starts with the checkout's absolute
package path, which ``os.path.join`` returns unchanged. The editable wheel
is bound to the checkout's path anyway (its import hook names it).
"""
import os
import os.path as osp
import shutil
import sys

from setuptools import find_packages, setup
from setuptools.command.editable_wheel import editable_wheel

HERE = osp.dirname(osp.abspath(__file__))
MIM_FILES = ('configs', 'tools', 'model-index.yml')


def read_requirements(name):
    """The requirement lines of ``requirements/NAME``."""
    path = osp.join(HERE, 'requirements', name)
    with open(path) as f:
        return [
            line.strip() for line in f
            if line.strip() and not line.startswith('#')
        ]


def add_mim_extension():
    """Put configs/, tools/ and model-index.yml into mmscalekd/.mim.

    Editable installs get symbolic links (edits show up at once); wheels and
    plain installs get copies, since links do not survive packaging. A build
    from an sdist has no repository files beside setup.py, only the .mim the
    sdist carries: that one is kept.
    """
    if any(cmd in sys.argv for cmd in ('develop', 'editable_wheel')):
        mode = 'symlink'
    elif any(cmd in sys.argv
             for cmd in ('install', 'bdist_wheel', 'sdist', 'build')):
        mode = 'copy'
    else:
        return
    mim_root = osp.join(HERE, 'mmscalekd', '.mim')
    os.makedirs(mim_root, exist_ok=True)
    for name in MIM_FILES:
        src = osp.join(HERE, name)
        dst = osp.join(mim_root, name)
        if not osp.exists(src):
            continue
        if osp.islink(dst) or osp.isfile(dst):
            os.remove(dst)
        elif osp.isdir(dst):
            shutil.rmtree(dst)
        if mode == 'symlink':
            os.symlink(osp.relpath(src, mim_root), dst,
                       target_is_directory=osp.isdir(src))
        elif osp.isdir(src):
            shutil.copytree(
                src, dst, ignore=shutil.ignore_patterns('__pycache__'))
        else:
            shutil.copyfile(src, dst)


def read_version_file():
    scope = {}
    with open(osp.join(HERE, 'mmscalekd', 'version.py')) as f:
        exec(f.read(), scope)
    return scope


def install_requires(supported):
    """Version ranges from ``SUPPORTED_VERSIONS`` (mmscalekd/version.py), and
    what mmengine needs at run time without requiring it.

    mmcv is left out: both mmcv-lite and the full mmcv provide it, and
    requiring one would install it over the other (pip cannot see which one
    is installed from an isolated build). ``import mmscalekd`` checks it and
    says how to install it; ``pip install mmscalekd[mmcv-lite]`` installs
    mmcv-lite.
    """
    ranges = [f'{name}>={low},<{high}'
              for name, (low, high) in supported.items() if name != 'mmcv']
    # mmengine's config loader imports pkg_resources for every
    # `mmpretrain::` base (every shipped config has one) and does not
    # require it; setuptools 82 removed it, and a fresh environment gets the
    # newest. The bound is the tested one (requirements/runtime.txt).
    return ranges + ['setuptools<80']


def extras_require(supported):
    """Optional dependencies, each for what needs it alone (README, Stack)."""
    return {
        'mmcv-lite': ['mmcv-lite>={},<{}'.format(*supported['mmcv'])],
        # `mim train/test/run mmscalekd ...`. openmim 0.3.9's `--launcher
        # slurm` fails with click 8.3 (an unset --srun-args arrives as
        # click's Sentinel, not None), and openmim does not bound click.
        'mim': ['openmim>=0.3.9', 'click<8.3'],
        # The statistics of tools/analysis/compare_students.py and the quick
        # start, and the quick start's digits (scikit-learn ships them).
        # Training never imports them.
        'analysis': ['scipy>=1.10', 'statsmodels>=0.14', 'scikit-learn>=1.3'],
        'tests': read_requirements('tests.txt'),
    }


class EditableWheelForMim(editable_wheel):
    """An editable install that mim can find (see the module docstring)."""

    # A private setuptools method (64 to 79 at least): should a release
    # rename it, tests/test_packaging.py fails, not silently mim.
    def _ensure_dist_info(self):
        super()._ensure_dist_info()
        # mim reads the first line only; the module name stays on the second
        # for the readers of the whole file (importlib.metadata).
        package_dir = osp.join(HERE, 'mmscalekd')
        with open(osp.join(self.dist_info_dir, 'top_level.txt'), 'w') as f:
            f.write(f'{package_dir}\nmmscalekd\n')


if __name__ == '__main__':
    add_mim_extension()
    version_file = read_version_file()
    setup(
        name='mmscalekd',
        version=version_file['__version__'],
        description='ScaleKD (NeurIPS 2024) as an OpenMMLab/mmpretrain plugin',
        long_description=open(osp.join(HERE, 'README.md')).read(),
        long_description_content_type='text/markdown',
        license='Apache License 2.0',
        license_files=['LICENSE'],
        # What torch 2.14 and the rest of the ranges install on; the
        # stacks of `make test-matrix` and requirements/runtime.txt are
        # tested on 3.11.
        python_requires='>=3.10',
        packages=find_packages(exclude=('configs', 'tools', 'tests')),
        include_package_data=True,
        package_data={'mmscalekd': ['.mim/configs/**/*', '.mim/tools/**/*',
                                    '.mim/tools/*', '.mim/configs/*',
                                    '.mim/model-index.yml']},
        install_requires=install_requires(
            version_file['SUPPORTED_VERSIONS']),
        extras_require=extras_require(version_file['SUPPORTED_VERSIONS']),
        cmdclass={'editable_wheel': EditableWheelForMim},
        zip_safe=False)
