"""Install mmscalekd.

Like other OpenMMLab packages, the repository's ``configs/`` and ``tools/``
are shipped inside the package as ``mmscalekd/.mim/`` so that ``mim train
mmscalekd CONFIG`` finds them after a plain ``pip install``.
"""
import os
import os.path as osp
import shutil
import sys

from setuptools import find_packages, setup

HERE = osp.dirname(osp.abspath(__file__))
MIM_FOLDERS = ('configs', 'tools')


def read_requirements(name):
    path = osp.join(HERE, 'requirements', name)
    with open(path) as f:
        return [
            line.strip() for line in f
            if line.strip() and not line.startswith('#')
        ]


def add_mim_extension():
    """Put configs/ and tools/ into mmscalekd/.mim.

    Editable installs get symbolic links (edits show up at once); wheels and
    plain installs get copies, since links do not survive packaging.
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
    for folder in MIM_FOLDERS:
        src = osp.join(HERE, folder)
        dst = osp.join(mim_root, folder)
        if osp.islink(dst) or osp.isfile(dst):
            os.remove(dst)
        elif osp.isdir(dst):
            shutil.rmtree(dst)
        if mode == 'symlink':
            os.symlink(osp.relpath(src, mim_root), dst,
                       target_is_directory=True)
        else:
            shutil.copytree(
                src, dst, ignore=shutil.ignore_patterns('__pycache__'))


def version():
    scope = {}
    with open(osp.join(HERE, 'mmscalekd', 'version.py')) as f:
        exec(f.read(), scope)
    return scope['__version__']


if __name__ == '__main__':
    add_mim_extension()
    setup(
        name='mmscalekd',
        version=version(),
        description='ScaleKD (NeurIPS 2024) as an OpenMMLab/mmpretrain plugin',
        long_description=open(osp.join(HERE, 'README.md')).read(),
        long_description_content_type='text/markdown',
        license='Apache License 2.0',
        python_requires='>=3.9',
        packages=find_packages(exclude=('configs', 'tools', 'tests')),
        include_package_data=True,
        package_data={'mmscalekd': ['.mim/configs/**/*', '.mim/tools/**/*',
                                    '.mim/tools/*', '.mim/configs/*']},
        install_requires=read_requirements('runtime.txt'),
        extras_require={'tests': read_requirements('tests.txt')},
        zip_safe=False)
