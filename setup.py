"""Install mmscalekd.

Like other OpenMMLab packages, the repository's ``configs/`` and ``tools/``
and its model index (``model-index.yml``, which imports each
``configs/*/metafile.yml``) are shipped inside the package as
``mmscalekd/.mim/``, so that ``mim train mmscalekd CONFIG`` and ``mim search
mmscalekd`` find them after a plain ``pip install``: mim looks for
``<installed package>/.mim/model-index.yml``.
"""
import os
import os.path as osp
import shutil
import sys

from setuptools import find_packages, setup

HERE = osp.dirname(osp.abspath(__file__))
MIM_FILES = ('configs', 'tools', 'model-index.yml')


def read_requirements(name):
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
                                    '.mim/tools/*', '.mim/configs/*',
                                    '.mim/model-index.yml']},
        install_requires=read_requirements('runtime.txt'),
        extras_require={'tests': read_requirements('tests.txt')},
        zip_safe=False)
