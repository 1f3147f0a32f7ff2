"""tools/analysis/compare_steps.py: both sides built as asked, times
paired. Timings are checked for consistency, never for speed."""
import os.path as osp
import sys

import pytest

from tests.conftest import REPO_ROOT, SMOKE_CONFIG, load_tool, run_command

TOOL = osp.join(REPO_ROOT, 'tools', 'analysis', 'compare_steps.py')


@pytest.fixture(scope='module')
def tool():
    return load_tool(TOOL)


def test_sides_get_their_overrides(tool):
    _, native = tool.build(SMOKE_CONFIG,
                           {'model.final_stage.conv_impl': 'native'},
                           'scalekd', 2, 'cpu', None)
    _, gemm = tool.build(SMOKE_CONFIG, {'model.final_stage.conv_impl': 'gemm'},
                         'scalekd', 2, 'cpu', None)
    assert {p.student_conv.impl for n, p in native.projectors.items()
            if n.startswith('final')} == {'native'}
    assert {p.student_conv.impl for n, p in gemm.projectors.items()
            if n.startswith('final')} == {'gemm'}
    assert {p.student_conv.impl for n, p in gemm.projectors.items()
            if n.startswith('perception')} == {'auto'}


def test_interleaved_rounds_and_paired_differences(tool, capsys):
    result = tool.main([
        SMOKE_CONFIG, '--b', 'optim_wrapper.optimizer.fused=True',
        '--rounds', '3', '--batch-size', '2'
    ])
    times, diffs = result['times'], result['diffs']
    assert len(times['A']) == len(times['B']) == len(diffs) == 3
    assert diffs == [b - a for a, b in zip(times['A'], times['B'])]
    out = capsys.readouterr().out
    assert "B {'optim_wrapper.optimizer.fused': True}" in out
    assert 'B - A, paired' in out


def test_runs_as_a_script():
    result = run_command([
        sys.executable, TOOL, SMOKE_CONFIG, '--rounds', '1', '--batch-size',
        '1', '--variant', 'student'
    ])
    assert 'B - A, paired' in result.stdout

