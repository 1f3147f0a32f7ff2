"""tools/analysis/benchmark.py on the smoke config: three child processes,
one report. Timings are checked for consistency, never for speed."""
import json
import os.path as osp
import sys

import pytest
import torch
import torch.nn.functional as F

from mmscalekd.analysis.train_step import (build_variant, load_config,
                                           synthetic_batch)
from tests.conftest import REPO_ROOT, SMOKE_CONFIG, load_tool, run_command

# Runs the benchmark tool on real configs: minutes on a CPU.
pytestmark = pytest.mark.slow

TOOL = osp.join(REPO_ROOT, 'tools', 'analysis', 'benchmark.py')
BATCH_SIZE = 2
# The two RSB-A2 recipes' sigmoid (BCE) heads: ResNet-50-D's multi-label
# head without batch augments, MobileNet-V1's linear head with Mixup/CutMix.
RSB_A2 = {
    name: osp.join(REPO_ROOT, 'configs', 'scalekd',
                   f'scalekd_swin-l_{name}_8xb256-rsb-a2-300e_in1k.py')
    for name in ('resnet50', 'mobilenet-v1')
}
SMALL = {'model.input_size': 64}


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
        return json.load(f), result.stdout, result.stderr


# The counter's hand counts: tests/test_analysis/test_cost.py.


def test_writes_three_variants(run):
    report, stdout, _ = run
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
    report, _, _ = run
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
    report, _, _ = run
    macs = {k: v['macs_per_step'] for k, v in report['variants'].items()}
    assert macs['scalekd'] > macs['logit_kd'] > macs['student'] > 0
    # (b) is (a) plus a gradient-free teacher forward.
    teacher = report['variants']['scalekd']['parts']['teacher_forward']
    assert macs['logit_kd'] - macs['student'] == teacher['macs']


def test_parts_account_for_the_scalekd_step(run):
    report, _, _ = run
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


def test_progress_lines_while_each_variant_runs(run):
    report, _, stderr = run
    lines = [line for line in stderr.splitlines()
             if line.startswith('benchmark: ')]
    for name, title in (('student', '(a) student alone'),
                        ('logit_kd', '(b) + teacher, logit KD'),
                        ('scalekd', '(c) full ScaleKD')):
        mine = [line[len(f'benchmark: {title}: '):] for line in lines
                if line.startswith(f'benchmark: {title}: ')]
        assert mine[0].startswith('built in '), name
        assert mine[1].startswith('warm-up step 1/1: '), name
        # one line per timed step, with the time the report holds
        times = report['variants'][name]['step_time_s']['all']
        assert mine[2:4] == [f'timed step {i + 1}/2: {t:.3f} s'
                             for i, t in enumerate(times)], name
        assert mine[4] == 'counting multiply-adds (one more step)', name
    parts = [line.rsplit(' ', 1)[-1] for line in lines
             if line.startswith('benchmark: (c) full ScaleKD: part ')]
    assert parts == list(report['variants']['scalekd']['parts'])


def _bce(logits, targets):
    """mmpretrain's sigmoid CrossEntropyLoss: summed, divided by N."""
    return F.binary_cross_entropy_with_logits(
        logits, targets, reduction='sum') / logits.shape[0]


def head_loss(head, samples):
    """The head's logits and its loss on random features of the batch."""
    feats = (torch.randn(len(samples), head.in_channels), )
    return head(feats), head.loss(feats, samples)['loss']


def test_rsb_a2_multi_label_head_gets_one_hot_targets():
    cfg = load_config(RSB_A2['resnet50'], SMALL)
    student, _ = build_variant(cfg, 'student')
    assert student.head.loss_module.use_sigmoid
    inputs, samples = synthetic_batch(cfg, student, 3)
    # no batch augments in this recipe: the head one-hot encodes the labels
    assert [s.gt_label.tolist() for s in samples] == [[0], [1], [2]]
    assert not any('gt_score' in s for s in samples)
    torch.manual_seed(0)
    logits, loss = head_loss(student.head, samples)
    assert loss.item() == pytest.approx(
        _bce(logits, torch.eye(1000)[:3]).item(), rel=1e-6)


def test_rsb_a2_bce_head_with_batch_augments_gets_mixed_targets():
    cfg = load_config(RSB_A2['mobilenet-v1'], SMALL)
    student, _ = build_variant(cfg, 'student')
    assert student.head.loss_module.use_sigmoid
    batch_size = 4
    inputs, samples = synthetic_batch(cfg, student, batch_size)
    assert inputs.shape == (batch_size, 3, 64, 64)
    scores = torch.stack([s.gt_score for s in samples])
    assert scores.shape == (batch_size, 1000)
    # Mixup / CutMix of one-hot rows: each row sums to one, on the batch's
    # classes only, and the batch is mixed (not one-hot any more).
    assert scores.sum(1).tolist() == pytest.approx([1.0] * batch_size)
    assert set(scores.nonzero()[:, 1].tolist()) <= set(range(batch_size))
    assert not torch.equal(scores, torch.eye(1000)[:batch_size])
    # seeded: the same targets again
    again = synthetic_batch(cfg, student, batch_size)[1]
    assert torch.equal(scores, torch.stack([s.gt_score for s in again]))
    logits, loss = head_loss(student.head, samples)
    assert loss.item() == pytest.approx(_bce(logits, scores).item(),
                                        rel=1e-6)
    # What the benchmark gave before: hard labels, which this head's BCE
    # loss cannot take.
    for sample in samples:
        del sample.gt_score
    with pytest.raises(AssertionError):
        head_loss(student.head, samples)


def test_rsb_a2_student_step_runs_in_the_tool(tool):
    result = tool.main([
        RSB_A2['mobilenet-v1'], '--variant', 'student', '--iters', '1',
        '--warmup', '0', '--batch-size', '2', '--cfg-options',
        'model.input_size=64'
    ])
    assert result['step_time_s']['median'] > 0
    assert result['macs_per_step'] > 0


def test_compile_and_precision_reach_the_distiller():
    cfg = load_config(SMOKE_CONFIG)
    eager, _ = build_variant(cfg, 'scalekd')
    assert eager.compile_options is None and eager.teacher.dtype is None
    assert not eager.channels_last
    model, _ = build_variant(cfg, 'logit_kd', precision='bf16',
                             compile=True, channels_last=True)
    # model.compile: the teacher is compiled too
    assert model.compile_options is not None
    assert model.teacher.dtype is torch.bfloat16
    assert model.channels_last
    # the config's own teacher dtype wins
    cfg = load_config(SMOKE_CONFIG, {'model.teacher.dtype': 'float32'})
    model, _ = build_variant(cfg, 'logit_kd', precision='bf16')
    assert model.teacher.dtype is torch.float32


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


def test_the_checks_setting_reaches_the_child_processes(tool):
    args = tool.parse_args([SMOKE_CONFIG, '--checks', 'before-step'])
    child = tool.parse_args(
        tool.child_command(args, 'scalekd', 'out.json')[2:])
    assert child.checks == 'before-step'
    assert tool.parse_args([SMOKE_CONFIG]).checks == 'all'
