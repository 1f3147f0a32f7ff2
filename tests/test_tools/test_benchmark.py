"""tools/analysis/benchmark.py on the smoke config, and its multiply-add
counter against hand counts. Timings are checked for consistency, never for
speed."""
import json
import os.path as osp
import sys

import pytest
import torch
import torch.nn.functional as F
from torch import nn

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


# ------------------------------------------------------------ hand counts
def test_counts_linear_by_hand(tool):
    linear = nn.Linear(16, 32)
    x = torch.randn(4, 16, requires_grad=True)
    with torch.no_grad():
        forward = tool.count_macs(lambda: linear(x))
    both = tool.count_macs(lambda: linear(x).sum().backward())
    # (4 x 16) @ (16 x 32); backward: the input and the weight gradient,
    # each a matmul of the same size.
    assert sum(forward.values()) == 4 * 16 * 32
    assert sum(both.values()) == 3 * 4 * 16 * 32


def test_counts_conv2d_by_hand(tool):
    conv = nn.Conv2d(3, 8, 3, padding=1)
    x = torch.randn(2, 3, 10, 10, requires_grad=True)
    with torch.no_grad():
        forward = tool.count_macs(lambda: conv(x))
    both = tool.count_macs(lambda: conv(x).sum().backward())
    # N * Cout * Hout * Wout * Cin * k * k
    per_pass = 2 * 8 * 10 * 10 * 3 * 3 * 3
    assert forward == {'aten.convolution': per_pass}
    assert sum(both.values()) == 3 * per_pass
    # Without an input gradient (the first layer) the backward is one pass.
    x.requires_grad_(False)
    first_layer = tool.count_macs(lambda: conv(x).sum().backward())
    assert sum(first_layer.values()) == 2 * per_pass


def test_counts_cpu_attention_by_hand(tool):
    # torch counts its CUDA attention kernels only; the tool adds the CPU
    # one, which F.scaled_dot_product_attention runs in the projectors.
    q = torch.randn(1, 2, 5, 8, requires_grad=True)
    k = torch.randn(1, 2, 7, 8, requires_grad=True)
    v = torch.randn(1, 2, 7, 8, requires_grad=True)
    with torch.no_grad():
        forward = tool.count_macs(lambda: F.scaled_dot_product_attention(
            q, k, v))
    both = tool.count_macs(
        lambda: F.scaled_dot_product_attention(q, k, v).sum().backward())
    # Q K^T and A V per head: 2 * Lq * Lk * d. The fused backward
    # recomputes Q K^T, then forms dV, dP, dQ and dK: five such matmuls.
    per_matmul = 1 * 2 * 5 * 7 * 8
    assert sum(forward.values()) == 2 * per_matmul
    assert sum(both.values()) == 7 * per_matmul


# ------------------------------------------------------------ the tool
@pytest.mark.parametrize('impl', ['native', 'gemm'])
def test_projector_split_names_the_convolution_either_way(tool, impl):
    """Its 3x3 convolution is found by module, also as a matrix product."""
    from mmscalekd.models.necks import CrossAttentionProjector
    channels, height, width, batch = 16, 5, 3, 2
    projector = CrossAttentionProjector(
        channels, 8, (height, width), (2, 2), 2, conv_impl=impl)
    x = torch.randn(batch, channels, height, width, requires_grad=True)
    macs = tool.count_macs(lambda: projector(x).sum().backward(),
                           by_module=True)
    split = tool._split_convolution(macs)
    # forward, gradient of the input, gradient of the weight
    assert split['convolution'] == 3 * batch * height * width * (
        channels * channels * 9)
    assert split['other'] > 0
    assert sum(split.values()) == sum(
        tool.count_macs(lambda: projector(x).sum().backward()).values())


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
    assert '(c)/(b) =' in stdout


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
        'model.final_stage.conv_impl=native', 'model.input_size=40,48'
    ])
    command = tool._child_command(args, 'scalekd', 'out.json')
    child = tool.parse_args(command[2:])
    assert child.cfg_options == args.cfg_options == {
        'optim_wrapper.optimizer.fused': True,
        'model.final_stage.conv_impl': 'native',
        'model.input_size': [40, 48],
    }
    cfg = tool._load_config(SMOKE_CONFIG, child.cfg_options)
    assert cfg.optim_wrapper.optimizer.fused is True
    assert cfg.model.final_stage.conv_impl == 'native'
