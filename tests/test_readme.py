"""README.md's commands are true: `make smoke` writes where README's
`mim test` reads, and every tool the README names exists and answers
``--help`` with the options README gives it. No training here: the commands
themselves run in tests/test_tools/test_train_test_tools.py."""
import contextlib
import glob
import io
import os
import os.path as osp
import re
import runpy
import shlex
import sys

import pytest
from mmengine.config import Config

from tests.conftest import REPO_ROOT, run_command

with open(osp.join(REPO_ROOT, 'README.md')) as f:
    README = f.read()


def _section(title: str) -> str:
    """A `## title` section of README, its subsections included."""
    match = re.search(rf'^## {re.escape(title)}\n(.*?)(?=^## |\Z)', README,
                      re.M | re.S)
    assert match, f'README has no "## {title}" section'
    return match.group(1)


def _command_lines(text: str) -> list:
    """The commands of the ```bash blocks in ``text``, continuation lines
    joined and comments dropped."""
    lines = []
    for block in re.findall(r'^```bash\n(.*?)^```', text, re.M | re.S):
        for line in block.replace('\\\n', ' ').splitlines():
            line = line.split('#')[0].strip()
            if line:
                lines.append(line)
    return lines


def _mim(words: list, command: str) -> list:
    """Arguments after `mim <command> mmscalekd`, or None."""
    if words[:3] == ['mim', command, 'mmscalekd']:
        return words[3:]
    return None


def _option(args: list, name: str):
    for i, arg in enumerate(args):
        if arg == name:
            return args[i + 1]
        if arg.startswith(name + '='):
            return arg.split('=', 1)[1]
    return None


def _default_work_dir(config: str) -> str:
    # tools/train.py (as mmpretrain's): ./work_dirs/<config file name>
    return osp.join('work_dirs', osp.splitext(osp.basename(config))[0])


def _make_smoke() -> list:
    """The arguments of `mim train mmscalekd` in the Makefile's smoke
    target."""
    with open(osp.join(REPO_ROOT, 'Makefile')) as f:
        makefile = f.read()
    recipe = re.search(r'^smoke:.*\n((?:\t.*\n)+)', makefile, re.M)
    assert recipe, 'the Makefile has no smoke target'
    for line in recipe.group(1).replace('\\\n', ' ').splitlines():
        words = shlex.split(line)
        words = words[words.index('mim'):] if 'mim' in words else []
        args = _mim(words, 'train')
        if args is not None:
            return args
    raise AssertionError('`make smoke` runs no `mim train mmscalekd`')


def test_make_smoke_writes_where_readme_reads():
    make_args = _make_smoke()
    make_config = make_args[0]
    make_work_dir = osp.normpath(
        _option(make_args, '--work-dir') or _default_work_dir(make_config))

    trains, tests = [], []
    for line in _command_lines(_section('Using it')):
        words = shlex.split(line)
        if _mim(words, 'train') is not None:
            trains.append(_mim(words, 'train'))
        if _mim(words, 'test') is not None:
            tests.append(_mim(words, 'test'))
    assert trains and tests, 'README "Using it" lost its mim commands'
    # The smoke run (the slurm line trains a placeholder CONFIG).
    trains = [args for args in trains if args[0] != 'CONFIG']
    (train_args, ), (test_args, ) = trains, tests

    # One config for all three; README's `mim train` writes where
    # `make smoke` writes, and `mim test` reads a checkpoint from there.
    assert train_args[0] == test_args[0] == make_config
    assert osp.isfile(osp.join(REPO_ROOT, make_config))
    readme_work_dir = osp.normpath(
        _option(train_args, '--work-dir')
        or _default_work_dir(train_args[0]))
    assert readme_work_dir == make_work_dir
    checkpoint = _option(test_args, '--checkpoint')
    assert osp.dirname(osp.normpath(checkpoint)) == make_work_dir
    # ... the one the last epoch writes (the checkpoint hook keeps it).
    cfg = Config.fromfile(osp.join(REPO_ROOT, make_config))
    assert osp.basename(checkpoint) == (
        f'epoch_{cfg.train_cfg.max_epochs}.pth')

    # The sentence about `make smoke` names the same work dir.
    (sentence, ) = [p for p in README.split('\n\n') if '`make smoke`' in p]
    assert f'`{make_work_dir}`' in sentence


def _named_tools() -> list:
    """tools/... paths README names, and bare `name.py` names that are
    exactly one file under tools/ (`compare_steps.py`)."""
    paths = set(re.findall(r'\btools/[\w/.-]+\.(?:py|sh)\b', README))
    for name in set(re.findall(r'`(\w+\.py)`', README)):
        found = glob.glob(osp.join(REPO_ROOT, 'tools', '**', name),
                          recursive=True)
        if len(found) == 1:
            paths.add(osp.relpath(found[0], REPO_ROOT))
    return sorted(paths)


NAMED_TOOLS = _named_tools()


@pytest.fixture(scope='module')
def usages() -> dict:
    """`python TOOL --help` of each named Python tool, run as a script in
    this process (``__main__``, its folder first on ``sys.path``): a
    subprocess each would spend seconds importing torch and mmpretrain
    again. Other tests run the tools as subprocesses."""
    usages = {}
    for tool in NAMED_TOOLS:
        path = osp.join(REPO_ROOT, tool)
        if not tool.endswith('.py') or not osp.isfile(path):
            continue
        out, saved = io.StringIO(), (sys.argv, list(sys.path))
        sys.argv, sys.path[:0] = [path, '--help'], [osp.dirname(path)]
        try:
            with contextlib.redirect_stdout(out), \
                    pytest.raises(SystemExit) as exit_:
                runpy.run_path(path, run_name='__main__')
        finally:
            sys.argv, sys.path[:] = saved
        assert exit_.value.code in (0, None), tool
        usages[tool] = out.getvalue()
    return usages


def test_readme_names_its_tools():
    # The parsing still finds what README is known to name.
    for tool in ('tools/train.py', 'tools/test.py', 'tools/dist_train.sh',
                 'tools/analysis/compare_steps.py'):
        assert tool in NAMED_TOOLS


@pytest.mark.parametrize('tool', NAMED_TOOLS)
def test_named_tool_exists_and_answers_help(tool, usages):
    path = osp.join(REPO_ROOT, tool)
    assert osp.isfile(path), f'README names {tool}, which does not exist'
    if tool.endswith('.sh'):
        # Launchers run as written, parse, and answer --help with their
        # usage (tests/test_tools/test_tool_console.py: without launching).
        assert os.access(path, os.X_OK), f'{tool} is not executable'
        run_command(['bash', '-n', path])
        usage = run_command(['bash', path, '--help']).stdout
        assert usage.startswith('Usage: ') and tool in usage
        return
    usage = usages[tool]
    assert usage.startswith('usage:')
    # Each option README writes on a `python <tool>` line is one the tool
    # takes.
    for line in _command_lines(README):
        words = shlex.split(line.replace('[', ' ').replace(']', ' '))
        if tool in words:
            for option in (w.split('=')[0] for w in words
                           if w.startswith('--')):
                assert re.search(rf'{re.escape(option)}\b', usage), (
                    f'README gives {tool} {option}, which it does not take')
