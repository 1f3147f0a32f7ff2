"""Installing mmscalekd into an environment: what setup.py promises, what
``import mmscalekd`` checks, an editable install that mim can use, and a
fresh environment that pip fills from the package registry."""
import glob
import importlib.util
import json
import os
import os.path as osp
import re
import shutil
import subprocess
import sys
import sysconfig

from importlib import metadata

import mmengine
import pytest
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name

import mmscalekd
from mmscalekd.version import SUPPORTED_VERSIONS
from tests.test_tools.stand_ins import recorded, stand_in

REPO_ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))


def load_setup_py():
    spec = importlib.util.spec_from_file_location(
        'mmscalekd_setup', osp.join(REPO_ROOT, 'setup.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # defines only: setup() is under main
    return module


def pinned_stack():
    with open(osp.join(REPO_ROOT, 'requirements', 'runtime.txt')) as f:
        lines = [line.strip() for line in f]
    return {Requirement(line).name: Requirement(line)
            for line in lines if line and not line.startswith('#')}


def agrees_with_the_stack(requirement, pins) -> bool:
    """requirements/runtime.txt's pin is in setup.py's range; where it
    gives a range itself (setuptools, click), setup.py's bounds are among
    its bounds."""
    pin = pins[requirement.name]
    exact = [s.version for s in pin.specifier if s.operator == '==']
    if exact:
        return requirement.specifier.contains(exact[0])
    return {str(s) for s in requirement.specifier} <= {
        str(s) for s in pin.specifier}


# --- the import-time check --------------------------------------------------

def test_unsupported_version_is_refused_with_package_version_and_range(
        monkeypatch):
    monkeypatch.setattr(mmengine, '__version__', '0.7.4')
    with pytest.raises(ImportError) as error:
        mmscalekd.check_dependency_versions()
    message = str(error.value)
    assert 'mmengine==0.7.4' in message
    assert 'mmengine>=0.10.0,<0.11.0' in message
    assert f'mmscalekd {mmscalekd.__version__}' in message


def test_version_at_the_maximum_is_refused():
    # The ranges are [minimum, maximum): torch 2.15.0 is not supported.
    with pytest.raises(ImportError, match=r'torch==2\.15\.0'):
        mmscalekd.check_dependency_versions(installed={'torch': '2.15.0'})
    # A local build tag does not matter (CUDA wheels are 2.14.1+cu128).
    mmscalekd.check_dependency_versions(installed={'torch': '2.14.1+cu128'})


def test_missing_mmcv_names_both_distributions(monkeypatch):
    monkeypatch.setitem(sys.modules, 'mmcv', None)  # makes it unimportable
    with pytest.raises(ImportError) as error:
        mmscalekd.check_dependency_versions()
    message = str(error.value)
    assert 'mmcv>=2.0.0,<2.3.0' in message
    assert 'mmcv-lite' in message


def test_missing_pkg_resources_is_an_import_error_naming_setuptools(
        monkeypatch):
    # setuptools 82 and later have no pkg_resources; mmengine's
    # `mmpretrain::` bases and mim import it.
    monkeypatch.setitem(sys.modules, 'pkg_resources', None)
    with pytest.raises(ImportError) as error:
        mmscalekd.check_dependency_versions()
    message = str(error.value)
    assert 'pkg_resources' in message
    assert 'pip install "setuptools<80"' in message


# --- what setup.py states ---------------------------------------------------

def test_install_requires_are_ranges_that_the_pinned_stack_meets():
    requires = [Requirement(r) for r in load_setup_py().install_requires(
        SUPPORTED_VERSIONS)]
    names = {r.name for r in requires}
    assert {'torch', 'torchvision', 'mmengine', 'mmpretrain',
            'timm'} <= names
    # Either mmcv serves, so setup.py requires neither; mim and the
    # analysis packages are extras.
    assert not names & {'mmcv', 'mmcv-lite', 'openmim', 'click', 'scipy',
                        'statsmodels', 'scikit-learn'}
    pins = pinned_stack()
    for requirement in requires:
        assert agrees_with_the_stack(requirement, pins), (
            f'requirements/runtime.txt has {pins[requirement.name]}, '
            f'outside setup.py\'s {requirement}')
        operators = {spec.operator for spec in requirement.specifier}
        assert '==' not in operators, requirement
        if requirement.name in SUPPORTED_VERSIONS:
            assert operators == {'>=', '<'}, requirement
    # mmengine's `mmpretrain::` bases need pkg_resources, which the newest
    # setuptools lacks.
    (setuptools, ) = [r for r in requires if r.name == 'setuptools']
    assert str(setuptools.specifier) == '<80'
    assert not setuptools.specifier.contains('82.0.0')
    # The pinned mmcv-lite is in the range the import checks.
    low, high = SUPPORTED_VERSIONS['mmcv']
    pinned = next(iter(pins['mmcv-lite'].specifier)).version
    assert SpecifierSet(f'>={low},<{high}').contains(pinned)


def test_extras_and_the_pinned_stack_agree():
    extras = {name: [Requirement(r) for r in requirements]
              for name, requirements in load_setup_py().extras_require(
                  SUPPORTED_VERSIONS).items()}
    assert set(extras) == {'mmcv-lite', 'mim', 'analysis', 'tests'}
    assert {r.name for r in extras['mim']} == {'openmim', 'click'}
    (click, ) = [r for r in extras['mim'] if r.name == 'click']
    assert not click.specifier.contains('8.3.0')
    assert {r.name for r in extras['analysis']} == {
        'scipy', 'statsmodels', 'scikit-learn'}
    # `make` installs what every extra gives (the tests extra is
    # requirements/tests.txt itself).
    pins = pinned_stack()
    for name in ('mmcv-lite', 'mim', 'analysis'):
        for requirement in extras[name]:
            assert agrees_with_the_stack(requirement, pins), requirement


def test_built_metadata_has_ranges_python_requires_and_license(tmp_path):
    subprocess.run(
        [sys.executable, 'setup.py', '-q', 'egg_info', '--egg-base',
         str(tmp_path)], cwd=REPO_ROOT, check=True, capture_output=True)
    egg_info = tmp_path / 'mmscalekd.egg-info'
    pkg_info = (egg_info / 'PKG-INFO').read_text()
    requires = (egg_info / 'requires.txt').read_text()
    base, *extras = requires.split('\n[')
    extras = {e.split(']')[0]: e.split(']\n')[1].split() for e in extras}
    assert 'torch<2.15.0,>=2.14.0' in base
    assert '==' not in base and 'mmcv' not in base
    assert base.split()[-1] == 'setuptools<80'
    assert 'scipy' not in base and 'openmim' not in base
    assert extras['mmcv-lite'] == ['mmcv-lite<2.3.0,>=2.0.0']
    assert extras['mim'] == ['openmim>=0.3.9', 'click<8.3']
    assert extras['analysis'] == ['scipy>=1.10', 'statsmodels>=0.14',
                                  'scikit-learn>=1.3']
    python_requires = SpecifierSet(
        re.search(r'^Requires-Python: (.+)$', pkg_info, re.M).group(1))
    # torch 2.9 and later need 3.10; the tested Python must be in the range.
    assert python_requires == SpecifierSet('>=3.10')
    assert python_requires.contains(
        f'{sys.version_info.major}.{sys.version_info.minor}')
    assert re.search(r'^License: Apache License 2\.0$', pkg_info, re.M)
    assert re.search(r'^License-File: LICENSE$', pkg_info, re.M)


def test_license_file_is_apache_2():
    with open(osp.join(REPO_ROOT, 'LICENSE')) as f:
        text = f.read()
    assert 'Apache License\n                           Version 2.0' in text
    assert 'TERMS AND CONDITIONS FOR USE, REPRODUCTION, AND DISTRIBUTION' in (
        text)
    assert 'END OF TERMS AND CONDITIONS' in text


# --- the installed configs --------------------------------------------------

INSTALLED_CONFIGS = """
import json, os.path as osp, sys
from mmengine.config import Config
import mmscalekd
root = osp.join(osp.dirname(mmscalekd.__file__), '.mim', 'configs')
print(json.dumps({name: Config.fromfile(osp.join(root, name)).to_dict()
                  for name in sys.argv[1:]}))
"""


@pytest.mark.slow
def test_installed_configs_find_the_bases_they_share(tmp_path):
    """The installed copy (`make install`) ships configs/_base_/scalekd/,
    and a config of each teacher family parses there to the checkout's.
    Run from an empty directory, so that the installed package is used."""
    bases = sorted(
        osp.relpath(path, osp.join(REPO_ROOT, 'configs')) for path in glob.glob(
            osp.join(REPO_ROOT, 'configs', '_base_', 'scalekd', '*.py')))
    assert bases, 'configs/_base_/scalekd/ holds no shared base'
    names = ['scalekd/scalekd_swin-l_resnet50_8xb32_in1k.py',
             'scalekd/scalekd_beit-l_resnet50_8xb256-rsb-a2-300e_in1k.py']
    env = {k: v for k, v in os.environ.items() if k != 'PYTHONPATH'}
    result = subprocess.run(
        [sys.executable, '-c', INSTALLED_CONFIGS, *bases, *names],
        cwd=tmp_path, env=env, capture_output=True, text=True)
    assert result.returncode == 0, (
        f'{result.stderr[-3000:]}\n(the installed configs are older than '
        'the checkout\'s: run `make install`)')
    installed = json.loads(result.stdout)
    from mmengine.config import Config
    for name in bases + names:
        ours = json.loads(json.dumps(Config.fromfile(
            osp.join(REPO_ROOT, 'configs', name)).to_dict()))
        if name in names:
            installed[name], ours = installed[name]['model'], ours['model']
        assert installed[name] == ours, name


# --- an editable install, used through mim ----------------------------------

def venv_reusing_this_stack(root):
    """A fresh venv that sees this environment's packages but no mmscalekd.

    ``--system-site-packages`` would give the base interpreter's packages,
    not those of the venv running the tests, so a .pth file adds a folder of
    links to them instead (mmscalekd left out): no download, and pip runs
    from the stack (``python -m pip``) as it is.
    """
    stack = root / 'stack'
    stack.mkdir()
    site_packages = sysconfig.get_paths()['purelib']
    for name in os.listdir(site_packages):
        if name.startswith(('mmscalekd', '__editable__')) or name.endswith(
                '.pth'):
            continue
        os.symlink(osp.join(site_packages, name), stack / name)
    venv = root / 'venv'
    subprocess.run([sys.executable, '-m', 'venv', '--without-pip', str(venv)],
                   check=True)
    python = str(venv / 'bin' / 'python')
    venv_site_packages = subprocess.run(
        [python, '-c',
         'import sysconfig; print(sysconfig.get_paths()["purelib"])'],
        check=True, capture_output=True, text=True).stdout.strip()
    with open(osp.join(venv_site_packages, 'zz_stack.pth'), 'w') as f:
        f.write(f'{stack}\n')
    return python, venv_site_packages


def run(command, cwd):
    env = {k: v for k, v in os.environ.items() if k != 'PYTHONPATH'}
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True,
                            text=True)
    output = result.stdout + result.stderr
    assert result.returncode == 0, f'{" ".join(command)}:\n{output[-4000:]}'
    return output


@pytest.mark.slow
def test_mim_train_and_run_after_an_editable_install(tmp_path):
    checkout = tmp_path / 'checkout'
    shutil.copytree(
        REPO_ROOT, checkout, symlinks=True,
        ignore=shutil.ignore_patterns(
            '.git', '.venv', 'work_dirs', 'data', 'build', 'dist',
            '*.egg-info', '.mim', '__pycache__', '.pytest_cache'))
    python, site_packages = venv_reusing_this_stack(tmp_path)
    run([python, '-m', 'pip', 'install', '--no-deps', '--no-build-isolation',
         '--no-index', '-e', str(checkout)], cwd=tmp_path)
    package_dir = str(checkout / 'mmscalekd')
    assert not osp.exists(osp.join(site_packages, 'mmscalekd'))
    # Edits to the checkout's tools and configs show at once.
    assert osp.islink(checkout / 'mmscalekd' / '.mim' / 'tools')

    # From a folder of its own, with the config's name only: mim finds the
    # config and train.py in the checkout's mmscalekd/.mim.
    workdir = tmp_path / 'user'
    workdir.mkdir()
    output = run(
        [python, '-m', 'mim', 'train', 'mmscalekd',
         'scalekd_smoke_synthetic.py', '--work-dir', 'smoke',
         '--cfg-options', 'train_cfg.max_epochs=1'], cwd=workdir)
    assert f'{package_dir}/.mim/tools/train.py' in output
    assert osp.isfile(workdir / 'smoke' / 'epoch_1.pth')

    # mim answers --help itself; after `--` it goes to the tool.
    output = run(
        [python, '-m', 'mim', 'run', 'mmscalekd', 'extract_student', '--',
         '--help'], cwd=workdir)
    assert f'{package_dir}/.mim/tools/model_converters/extract_student.py' \
        in output
    assert 'usage: extract_student.py' in output


# --- a fresh environment, as a new user makes it ----------------------------

def torch_and_its_dependencies() -> dict:
    """name -> distribution: torch, torchvision and what they require (with
    the extras they ask for), as installed here; setuptools aside, which the
    fresh environment brings and setup.py bounds."""
    found, todo = {}, [Requirement('torch'), Requirement('torchvision')]
    while todo:
        requirement = todo.pop()
        name = canonicalize_name(requirement.name)
        if name in found or name == 'setuptools':
            continue
        found[name] = distribution = metadata.distribution(name)
        for line in distribution.requires or []:
            needed = Requirement(line)
            if needed.marker is None or any(
                    needed.marker.evaluate({'extra': extra})
                    for extra in requirement.extras or {''}):
                todo.append(needed)
    return found


def fresh_venv_with_torch(root):
    """A venv with pip and its own setuptools, which sees this environment's
    torch and torchvision (5.5 GB) and only them: their distributions'
    files, linked into a folder that a .pth file names."""
    stack = root / 'torch'
    stack.mkdir()
    distributions = torch_and_its_dependencies()
    assert not set(distributions) & {
        'mmengine', 'mmpretrain', 'mmcv', 'mmcv-lite', 'openmim', 'click',
        'setuptools', 'timm', 'scipy', 'statsmodels', 'scikit-learn'}
    for distribution in distributions.values():
        site_packages = str(distribution.locate_file(''))
        for top in {f.parts[0] for f in distribution.files} - {
                '..', '__pycache__'}:
            if not osp.exists(stack / top):
                os.symlink(osp.join(site_packages, top), stack / top)
    venv = root / 'venv'
    subprocess.run([sys.executable, '-m', 'venv', str(venv)], check=True)
    python = str(venv / 'bin' / 'python')
    venv_site_packages = subprocess.run(
        [python, '-c',
         'import sysconfig; print(sysconfig.get_paths()["purelib"])'],
        check=True, capture_output=True, text=True).stdout.strip()
    with open(osp.join(venv_site_packages, 'zz_torch.pth'), 'w') as f:
        f.write(f'{stack}\n')
    return python


SHIPPED_CONFIGS = """
import glob, importlib.util, json, os.path as osp
from mmengine.config import Config
import mmscalekd
root = osp.join(osp.dirname(mmscalekd.__file__), '.mim', 'configs')
paths = [p for p in glob.glob(osp.join(root, '**', '*.py'), recursive=True)
         if '_base_' not in p]
for path in paths:
    Config.fromfile(path)
import setuptools, click
print(json.dumps(dict(
    configs=len(paths), setuptools=setuptools.__version__,
    click=click.__version__,
    analysis=[m for m in ('scipy', 'statsmodels', 'sklearn')
              if importlib.util.find_spec(m)])))
"""


@pytest.mark.slow
def test_a_fresh_install_from_the_registry_loads_every_config_and_trains(
        tmp_path):
    """`pip install ".[mmcv-lite,mim]"` into a new venv whose pip brings the
    newest setuptools (no pkg_resources) and click: every shipped config
    loads and `mim train` trains, with the slurm launcher too, and without
    the analysis extra."""
    checkout = tmp_path / 'checkout'
    shutil.copytree(
        REPO_ROOT, checkout, symlinks=True,
        ignore=shutil.ignore_patterns(
            '.git', '.venv', 'work_dirs', 'data', 'build', 'dist',
            '*.egg-info', '.mim', '__pycache__', '.pytest_cache'))
    python = fresh_venv_with_torch(tmp_path)
    env = {k: v for k, v in os.environ.items() if k != 'PYTHONPATH'}
    env['PIP_CACHE_DIR'] = str(tmp_path / 'pip_cache')

    def run_in_venv(*command, cwd=tmp_path, **extra_env):
        result = subprocess.run(
            [python, *command], cwd=cwd, env=dict(env, **extra_env),
            capture_output=True, text=True)
        output = result.stdout + result.stderr
        assert result.returncode == 0, f'{command}:\n{output[-4000:]}'
        return result.stdout

    # The user whose pip picked the newest setuptools.
    run_in_venv('-m', 'pip', 'install', '-q', '--upgrade', 'setuptools')
    newest = run_in_venv('-c', 'import setuptools; print('
                         'setuptools.__version__)').strip()
    assert int(newest.split('.')[0]) >= 82, newest  # no pkg_resources
    run_in_venv('-m', 'pip', 'install', '-q', f'{checkout}[mmcv-lite,mim]')

    loaded = json.loads(run_in_venv('-c', SHIPPED_CONFIGS))
    shipped = [p for p in glob.glob(osp.join(REPO_ROOT, 'configs', '**',
                                             '*.py'), recursive=True)
               if '_base_' not in p]
    assert loaded['configs'] == len(shipped) > 40
    assert int(loaded['setuptools'].split('.')[0]) < 80
    assert SpecifierSet('<8.3').contains(loaded['click'])
    assert loaded['analysis'] == []  # training does not need the extra

    user = tmp_path / 'user'
    user.mkdir()
    run_in_venv('-m', 'mim', 'train', 'mmscalekd',
                'scalekd_smoke_synthetic.py', '--work-dir', 'smoke',
                '--cfg-options', 'train_cfg.max_epochs=1',
                'train_dataloader.dataset.num_samples=64', cwd=user)
    assert osp.isfile(user / 'smoke' / 'epoch_1.pth')

    bin_dir = tmp_path / 'bin'
    record = stand_in(bin_dir, 'srun')
    run_in_venv('-m', 'mim', 'train', 'mmscalekd',
                'scalekd_smoke_synthetic.py', '--launcher', 'slurm',
                '--gpus', '2', '--gpus-per-node', '2', '--partition', 'p',
                cwd=user, PATH=f'{bin_dir}:{os.environ["PATH"]}')
    srun = recorded(record)
    script = srun.index('-u') + 1
    assert srun[script - 2:script] == [python, '-u']
    assert srun[script].endswith(
        osp.join('site-packages', 'mmscalekd', '.mim', 'tools', 'train.py'))
    assert srun[script + 2:script + 4] == ['--launcher', 'slurm']
