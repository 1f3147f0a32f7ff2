"""tools/analysis/compare_steps.py: both sides built as asked, times
paired. Timings are checked for consistency, never for speed."""
import os.path as osp
import sys

import pytest

from tests.conftest import REPO_ROOT, SMOKE_CONFIG, load_tool, run_command

# Times training steps with the tool: tens of seconds each.
pytestmark = pytest.mark.slow

TOOL = osp.join(REPO_ROOT, 'tools', 'analysis', 'compare_steps.py')


@pytest.fixture(scope='module')
def tool():
    return load_tool(TOOL)


def test_sides_get_their_overrides(tool, capsys):
    result = tool.main([
        SMOKE_CONFIG, '--a', 'model.final_stage.projector.conv_impl=native',
        '--b', 'model.final_stage.projector.conv_impl=gemm',
        'optim_wrapper.optimizer.fused=True', '--rounds', '1',
        '--batch-size', '1', '--lr', '0.001'
    ])
    assert result['options'] == {
        'A': {'model.final_stage.projector.conv_impl': 'native'},
        'B': {'model.final_stage.projector.conv_impl': 'gemm',
              'optim_wrapper.optimizer.fused': True},
    }
    out = capsys.readouterr().out
    assert "A {'model.final_stage.projector.conv_impl': 'native'}" in out


def test_built_models_follow_the_overrides():
    from mmscalekd.analysis.train_step import build_train_step
    impls = {}
    for impl in ('native', 'gemm'):
        model = build_train_step(
            SMOKE_CONFIG, {'model.final_stage.projector.conv_impl': impl},
            batch_size=1).model
        impls[impl] = {n: p.student_conv.impl
                       for n, p in model.projectors.items()}
    assert {v for n, v in impls['native'].items()
            if n.startswith('final')} == {'native'}
    assert {v for n, v in impls['gemm'].items()
            if n.startswith('final')} == {'gemm'}
    assert {v for n, v in impls['gemm'].items()
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
    d = sorted(diffs)
    assert (f'B - A, paired: median {d[1]:+.3f} s (range {d[0]:+.3f} to '
            f'{d[2]:+.3f}, B faster in {sum(x < 0 for x in d)} of 3 rounds)'
            ) in out


def test_runs_as_a_script():
    result = run_command([
        sys.executable, TOOL, SMOKE_CONFIG, '--rounds', '1', '--batch-size',
        '1', '--variant', 'student'
    ])
    assert 'B - A, paired' in result.stdout

