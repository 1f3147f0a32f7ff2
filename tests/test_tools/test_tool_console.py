"""What a user sees of the tools: ``--help`` before any heavy import, the
launchers' usage, no mmcv-lite warning, and the package's errors as one
message (mmscalekd.utils.command_line)."""
import glob
import os
import os.path as osp
import re
import subprocess
import sys

import pytest

from mmscalekd.utils.command_line import is_user_error
from tests.conftest import (REPO_ROOT, SMOKE_CONFIG, build_distiller,
                            run_command)
from tests.test_tools.stand_ins import recorded, stand_in

# Runs the tools (and mim) as a user does: tens of seconds each.
pytestmark = pytest.mark.slow

PYTHON_TOOLS = sorted(
    osp.relpath(p, REPO_ROOT)
    for p in glob.glob(osp.join(REPO_ROOT, 'tools', '**', '*.py'),
                       recursive=True))
LAUNCHERS = {  # script -> the arguments it needs
    'tools/dist_train.sh': ['CONFIG', '2'],
    'tools/dist_test.sh': ['CONFIG', 'CKPT', '2'],
    'tools/slurm_train.sh': ['p', 'job', 'CONFIG', 'work_dir'],
    'tools/slurm_test.sh': ['p', 'job', 'CONFIG', 'CKPT'],
}
HEAVY = ('torch', 'mmengine', 'mmcv', 'mmpretrain', 'mmscalekd', 'timm',
         'scipy')
MMCV_LITE_WARNING = 'Fail to import ``MultiScaleDeformableAttention``'


def test_every_tool_is_covered():
    assert len(PYTHON_TOOLS) >= 11 and 'tools/train.py' in PYTHON_TOOLS
    assert set(LAUNCHERS) == {
        osp.relpath(p, REPO_ROOT)
        for p in glob.glob(osp.join(REPO_ROOT, 'tools', '*.sh'))}


@pytest.mark.parametrize('tool', PYTHON_TOOLS)
def test_help_imports_no_heavy_package(tool):
    """`--help` answers before torch and the OpenMMLab stack are imported
    (seconds each; `mim train` runs `train.py -h` before every run)."""
    result = run_command([sys.executable, '-X', 'importtime', tool,
                          '--help'])
    assert result.stdout.startswith('usage: ')
    imported = re.findall(r'^import time:.*\|\s+(\S+)$', result.stderr,
                          re.M)
    assert 'argparse' in imported  # the import log is read
    heavy = sorted({m for m in imported if m.split('.')[0] in HEAVY})
    assert not heavy, f'{tool} --help imports {heavy[:5]}'


@pytest.mark.parametrize('script', sorted(LAUNCHERS))
def test_launchers_print_usage_instead_of_launching(script, tmp_path):
    bin_dir = tmp_path / 'bin'
    records = [stand_in(bin_dir, 'srun'), stand_in(bin_dir, 'python')]
    env = dict(os.environ, PATH=f'{bin_dir}:{os.environ["PATH"]}',
               PYTHON=str(bin_dir / 'python'))

    def launch(*args):
        return subprocess.run(['bash', script, *args], cwd=REPO_ROOT,
                              env=env, capture_output=True, text=True)

    for flag in ('--help', '-h'):
        result = launch(flag)
        assert result.returncode == 0, result.stderr
        assert result.stdout.startswith('Usage: ') and (
            script in result.stdout)
    result = launch(*LAUNCHERS[script][:-1])
    assert result.returncode == 2
    assert result.stdout == '' and result.stderr.startswith('Usage: ')
    assert not any(osp.exists(r) for r in records)
    # With all of them it launches (the stand-in).
    result = launch(*LAUNCHERS[script], '--cfg-options', 'a=1')
    assert result.returncode == 0, result.stderr
    (launched, ) = [recorded(r) for r in records if osp.exists(r)]
    assert launched[-2:] == ['--cfg-options', 'a=1']


@pytest.mark.parametrize('script', ['tools/dist_train.sh',
                                    'tools/dist_test.sh'])
def test_one_node_launches_on_a_free_port(script, tmp_path):
    """Without PORT, torchrun's --standalone picks a free port, so two
    jobs (or two test runs) on one machine never collide; a PORT, or
    several nodes, give torchrun the rendezvous address."""
    bin_dir = tmp_path / 'bin'
    record = stand_in(bin_dir, 'python')
    env = {k: v for k, v in os.environ.items() if k != 'PORT'}
    env['PYTHON'] = str(bin_dir / 'python')

    def launched(**extra):
        subprocess.run(['bash', script, *LAUNCHERS[script]], cwd=REPO_ROOT,
                       env=dict(env, **extra), check=True,
                       capture_output=True)
        return recorded(record)

    alone = launched()
    assert '--standalone' in alone
    assert not any(a.startswith('--master_port') for a in alone)
    assert '--master_port=1234' in launched(PORT='1234')
    nodes = launched(NNODES='2', NODE_RANK='1', MASTER_ADDR='10.0.0.1')
    assert '--standalone' not in nodes
    assert {'--nnodes=2', '--node_rank=1', '--master_addr=10.0.0.1',
            '--master_port=29500'} <= set(nodes)


def test_importing_mmscalekd_prints_no_mmcv_lite_warning():
    """mmcv-lite warns, when mmpretrain's models import its transformer
    bricks, that a detection op is missing: silenced while mmscalekd
    imports them, and only there."""
    code = ('import warnings, mmscalekd\n'
            f'warnings.warn({MMCV_LITE_WARNING!r} + " elsewhere")\n')
    stderr = run_command([sys.executable, '-c', code]).stderr
    assert stderr.count(MMCV_LITE_WARNING) == 1, stderr
    assert f'{MMCV_LITE_WARNING} elsewhere' in stderr


def _installed():
    from importlib import metadata
    try:
        metadata.distribution('mmscalekd')
    except metadata.PackageNotFoundError:
        return False
    return True


@pytest.mark.skipif(not _installed(), reason='needs `make install` first')
def test_mim_prints_the_tools_help_without_warnings():
    # `mim train` runs `train.py -h` first, then train.py itself: the
    # mmcv-lite warning came once from each.
    result = run_command(['mim', 'train', 'mmscalekd', SMOKE_CONFIG, '--',
                          '--help'])
    output = result.stdout + result.stderr
    assert 'usage: train.py' in output
    assert MMCV_LITE_WARNING not in output


# --- errors -----------------------------------------------------------------

def _raised(action):
    try:
        action()
    except Exception as error:  # noqa: B902 (what the tools would get)
        return error
    raise AssertionError('nothing raised')


def test_errors_of_the_package_about_bad_input_are_messages(tmp_path):
    # its own type (CheckpointError), and a KeyError a check raises
    assert is_user_error(_raised(lambda: build_distiller(
        teacher=dict(checkpoint=str(tmp_path / 'missing.pth')))))
    assert is_user_error(_raised(
        lambda: build_distiller(teacher=dict(adapter='NoSuch'))))


def test_other_errors_are_not_messages():
    from mmscalekd.analysis import render_comparison
    from mmscalekd.utils.dataloader import set_dataloader_defaults
    # a KeyError of a lookup and an AttributeError inside the package
    assert not is_user_error(_raised(lambda: render_comparison({})))
    assert not is_user_error(_raised(
        lambda: set_dataloader_defaults(None, ['train'])))
    # Python's own TypeError for an unknown argument (raised in mmengine)
    assert not is_user_error(_raised(lambda: build_distiller(no_such=1)))


def _train(tmp_path, monkeypatch, *options):
    """tools/train.py on the smoke config whose teacher is at a URL that
    refuses connections."""
    from tests.test_errors import _free_port
    monkeypatch.setenv('TORCH_HOME', str(tmp_path / 'torch_home'))
    monkeypatch.setenv('no_proxy', '127.0.0.1,localhost')
    url = f'http://127.0.0.1:{_free_port()}/teacher.pth'
    return run_command(
        [sys.executable, 'tools/train.py', SMOKE_CONFIG, '--work-dir',
         str(tmp_path / 'run'), '--cfg-options',
         f'model.teacher.checkpoint={url}', *options], check=False)


def test_a_failed_teacher_download_is_one_message(tmp_path, monkeypatch):
    result = _train(tmp_path, monkeypatch)
    assert result.returncode == 1
    assert 'Traceback' not in result.stderr
    message, hint = result.stderr.splitlines()
    assert re.fullmatch(
        r"train\.py: error: Downloading `model\.teacher\.checkpoint="
        r"'http://127\.0\.0\.1:\d+/teacher\.pth'` failed: network error .*"
        r'set the key to its local path\.', message), message
    (log, ) = glob.glob(str(tmp_path / 'run' / '*' / '*.log'))
    assert hint == (f'train.py: the traceback is in {log} (--verbose prints '
                    'it here).')
    with open(log) as f:
        text = f.read()
    assert 'Traceback (most recent call last)' in text
    assert 'CheckpointError: Downloading `model.teacher.checkpoint=' in text

    verbose = _train(tmp_path, monkeypatch, '--verbose')
    assert verbose.returncode == 1
    assert 'Traceback (most recent call last)' in verbose.stderr
    assert verbose.stderr.rstrip().splitlines()[-1].startswith(
        'mmscalekd.utils.checkpoint.CheckpointError: Downloading')


def test_errors_the_package_does_not_raise_keep_their_traceback(tmp_path):
    # torch's own check of the batch size, not a check of the package
    result = run_command(
        [sys.executable, 'tools/train.py', SMOKE_CONFIG, '--work-dir',
         str(tmp_path / 'run'), '--cfg-options',
         'train_dataloader.batch_size=x'], check=False)
    assert result.returncode == 1
    assert 'Traceback (most recent call last)' in result.stderr
    assert result.stderr.rstrip().splitlines()[-1] == (
        'ValueError: batch_size should be a positive integer value, but got '
        'batch_size=x')
