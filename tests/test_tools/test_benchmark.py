"""tools/analysis/benchmark.py on the smoke config: three child processes,
one report. Timings are checked for consistency, never for speed."""
import json
import os.path as osp
import sys

import pytest

from mmscalekd.analysis.train_step import load_config
from tests.conftest import REPO_ROOT, SMOKE_CONFIG, load_tool, run_command

TOOL = osp.join(REPO_ROOT, 'tools', 'analysis', 'benchmark.py')
BATCH_SIZE = 2


@pytest.fixture(scope='module')
def tool():
    return load_tool(TOOL)


@pytest.fixture(scope='module')
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp('benchmark') / 'smoke.json'
    result = run_command([
        sys.executable, TOOL, SMOKE_CONFIG, '--iters', '2', '--warmup', '1',
        '--batch-size',
        str(BATCH_SIZE), '--json',
        str(out)
    ])
    with open(out) as f:
        return json.load(f), result.stdout


# The counter's hand counts: tests/test_analysis/test_cost.py.


def test_writes_three_variants(run):
    report, stdout = run
    variants = report['variants']
    assert set(variants) == {'student', 'logit_kd', 'scalekd'}
    for name, result in variants.items():
        times = result['step_time_s']
        assert len(times['all']) == 2, name
        assert all(t > 0 for t in times['all']), name
        assert times['min'] <= times['q1'] <= times['median'] \
            <= times['q3'] <= times['max']
        assert result['images_per_s'] == pytest.approx(BATCH_SIZE /
                                                       times['median'])
        assert result['peak_rss_bytes'] >= result['rss_at_start_bytes'] > 0
        assert result['achieved_macs_per_s'] == pytest.approx(
            result['macs_per_step'] / times['median'])
    assert report['settings']['batch_size'] == BATCH_SIZE
    # the printed table shows the numbers of the JSON report
    lines = stdout.splitlines()
    for name, title in (('student', '(a) student alone'),
                        ('logit_kd', '(b) + teacher, logit KD'),
                        ('scalekd', '(c) full ScaleKD')):
        (row, ) = [line for line in lines if line.startswith(title)]
        cells = row[len(title):].split()
        median = variants[name]['step_time_s']['median']
        assert cells[0] == f'{median:.3f}', name
        macs = variants[name]['macs_per_step'] / BATCH_SIZE / 1e9
        assert cells[5] == f'{macs:.3g}', name
    ratio = report['ratios']['scalekd_over_logit_kd']
    assert f'(c)/(b) = {ratio:.2f}x' in stdout


def test_ratios_are_those_of_the_times(run):
    report, _ = run
    median = {
        k: v['step_time_s']['median']
        for k, v in report['variants'].items()
    }
    ratios = report['ratios']
    assert ratios['scalekd_over_logit_kd'] == pytest.approx(
        median['scalekd'] / median['logit_kd'], rel=1e-12)
    assert ratios['scalekd_over_student'] == pytest.approx(
        median['scalekd'] / median['student'], rel=1e-12)


def test_macs_grow_with_the_variant(run):
    report, _ = run
    macs = {k: v['macs_per_step'] for k, v in report['variants'].items()}
    assert macs['scalekd'] > macs['logit_kd'] > macs['student'] > 0
    # (b) is (a) plus a gradient-free teacher forward.
    teacher = report['variants']['scalekd']['parts']['teacher_forward']
    assert macs['logit_kd'] - macs['student'] == teacher['macs']


def test_parts_account_for_the_scalekd_step(run):
    report, _ = run
    parts = report['variants']['scalekd']['parts']
    # Smoke config: both views of both stages, two teacher-tail runs.
    assert set(parts) == {
        'teacher_forward', 'projector_perception_spatial',
        'projector_perception_frequency', 'projector_final_spatial',
        'projector_final_frequency', 'teacher_tail_runs'
    }
    assert parts['teacher_tail_runs']['runs'] == 2
    for name, part in parts.items():
        assert part['macs'] > 0 and part['time_s'] > 0, name
        assert sum(part['macs_split'].values()) == part['macs'], name
    # Counted part by part, the whole step is explained: nothing is lost
    # or counted twice.
    rest = report['breakdown'][-1]
    assert rest['part'].startswith('rest of (c)')
    assert rest['macs'] == 0


def test_one_variant_in_process_bf16_channels_last(tool, tmp_path):
    out = tmp_path / 'student.json'
    result = tool.main([
        SMOKE_CONFIG, '--variant', 'student', '--precision', 'bf16',
        '--channels-last', '--iters', '1', '--warmup', '0', '--batch-size',
        '2', '--json',
        str(out)
    ])
    assert result['variant'] == 'student'
    assert result['step_time_s']['median'] > 0
    with open(out) as f:
        assert json.load(f)['macs_per_step'] == result['macs_per_step']


def test_fp16_on_cpu_is_refused(tool, capsys):
    with pytest.raises(SystemExit):
        tool.parse_args([SMOKE_CONFIG, '--precision', 'fp16'])
    assert 'bf16' in capsys.readouterr().err


def test_cfg_options_reach_the_child_processes(tool):
    args = tool.parse_args([
        SMOKE_CONFIG, '--cfg-options', 'optim_wrapper.optimizer.fused=True',
        'model.final_stage.projector.conv_impl=native',
        'model.input_size=40,48'
    ])
    command = tool.child_command(args, 'scalekd', 'out.json')
    assert command[1] == TOOL and command[3:5] == ['--variant', 'scalekd']
    child = tool.parse_args(command[2:])
    assert child.cfg_options == args.cfg_options == {
        'optim_wrapper.optimizer.fused': True,
        'model.final_stage.projector.conv_impl': 'native',
        'model.input_size': [40, 48],
    }
    cfg = load_config(SMOKE_CONFIG, child.cfg_options)
    assert cfg.optim_wrapper.optimizer.fused is True
    assert cfg.model.final_stage.projector.conv_impl == 'native'
    assert cfg.model.input_size == [40, 48]
