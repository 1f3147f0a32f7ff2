"""The sweep: runs derived from a ScaleKD config, a resumable local sweep on
the digits with its report, and the slurm array script."""
import contextlib
import glob
import io
import json
import os
import os.path as osp
import re
import subprocess

import pytest
from mmengine.config import Config

from mmscalekd.analysis import sweep
from mmscalekd.datasets.digits import prepare_digits
from tests.conftest import REPO_ROOT, load_tool

QUICKSTART = osp.join(REPO_ROOT, 'configs', 'quickstart',
                      'mixer-tiny_digits_scalekd.py')
GRID = ['spatial_weight=0.04,0.08', 'frequency_weight=0.03,0.06']


def test_runs_derived_from_the_distiller():
    cfg = Config.fromfile(QUICKSTART)
    runs = sweep.plan_runs(sweep.parse_grid(GRID), [0, 1])
    assert len(runs) == 2 * (2 + 4)
    assert [r.name for r in runs[:3]] == [
        'alone_seed0', 'logit_kd_seed0',
        'scalekd_spatial_weight-0.04_frequency_weight-0.03_seed0'
    ]
    alone = sweep.run_config(cfg, runs[0])
    assert alone.model.type == 'ImageClassifier'
    assert alone.model.backbone.type == 'MlpMixer'
    logit_kd = sweep.run_config(cfg, runs[1])
    assert logit_kd.model.perception_stage is None
    assert logit_kd.model.final_stage is None
    assert logit_kd.model.logit_kd.alpha == 0.5
    last = sweep.run_config(cfg, runs[-1])
    for stage in ('perception_stage', 'final_stage'):
        assert last.model[stage].loss.spatial_weight == 0.08
        assert last.model[stage].loss.frequency_weight == 0.06
    assert last.randomness.seed == 1
    # the config itself is left as it was
    assert cfg.model.final_stage.loss.spatial_weight == 0.08
    assert cfg.model.perception_stage.loss.frequency_weight == 0.06


def test_presets_scale_the_configs_values():
    cfg = Config.fromfile(QUICKSTART)
    assert sweep.preset_grid(cfg, 'weights') == dict(
        spatial_weight=[0.04, 0.08, 0.16],
        frequency_weight=[0.03, 0.06, 0.12])
    assert sweep.preset_grid(cfg, 'kd') == dict(tau=[1.0, 2.0, 4.0],
                                                alpha=[0.25, 0.5])
    assert sweep.preset_grid(cfg, 'attention') == dict(
        softmax_scale=[2.5, 5.0, 10.0])


def _main(argv):
    tool = load_tool(osp.join(REPO_ROOT, 'tools', 'analysis', 'sweep.py'))
    output = io.StringIO()
    with contextlib.redirect_stdout(output):
        tool.main(argv)
    return output.getvalue()


@pytest.fixture(scope='module')
def digits_sweep(tmp_path_factory):
    """A 2x2 grid x 2 seeds on the digits: 1 epoch of 64 images a run."""
    root = tmp_path_factory.mktemp('sweep')
    data_root = str(root / 'digits')
    prepare_digits(data_root, test_fraction=0.2)
    config = root / 'digits_scalekd.py'
    classes = osp.join(data_root, 'meta', 'classes.txt')
    config.write_text(
        f'_base_ = [{QUICKSTART!r}]\n'
        f'train_dataloader = dict(dataset=dict(data_root={data_root!r}, '
        f'classes={classes!r}))\n'
        f'val_dataloader = dict(dataset=dict(data_root={data_root!r}, '
        f'classes={classes!r}))\n'
        f'test_dataloader = dict(dataset=dict(data_root={data_root!r}, '
        f"classes={classes!r}, ann_file='meta/test.txt'))\n")
    work_dir = str(root / 'work')
    argv = [str(config), '--grid', *GRID, '--seeds', '0', '1', '--epochs',
            '1', '--subset', '64', '--work-dir', work_dir]
    return argv, work_dir, _main(argv)


def _progress(output):
    return re.findall(r'^\[sweep\] run (\d+)/12 .* seed \d: val [\d.]+%, '
                      r'[\d.]+ min; (\d+) left, ETA [\d.]+ min$', output,
                      re.M)


@pytest.mark.slow
def test_report_of_the_digits_sweep(digits_sweep):
    _, work_dir, output = digits_sweep
    assert _progress(output) == [(str(i), str(12 - i)) for i in range(1, 13)]
    with open(osp.join(work_dir, 'sweep.json')) as f:
        report = json.load(f)
    methods = {m['method']: m for m in report['methods']}
    settings = [m for m in methods if m.startswith('scalekd')]
    assert list(methods)[:2] == ['alone', 'logit_kd'] and len(settings) == 4
    for row in methods.values():
        assert row['seeds'] == [0, 1]
        assert len(row['test_accuracies']) == 2
        assert all(0 <= a <= 100 for a in row['test_accuracies'])
    # chosen on val, judged on the 360 held-out test images
    assert report['chosen'] == max(settings,
                                   key=lambda m: methods[m]['val_mean'])
    comparison = report['comparison']
    assert comparison['num_images'] == 360
    assert len(comparison['comparisons']) == 1 + 2 * 4
    assert all(c['test'] == 'welch' for c in comparison['comparisons'])
    for setting in settings:
        for reference, key in (('alone', 'beats_alone'),
                               ('logit_kd', 'beats_logit_kd')):
            (decided, ) = [c for c in comparison['comparisons']
                           if (c['reference'], c['method']) ==
                           (reference, setting)]
            assert methods[setting][key] == (decided['significant']
                                             and decided['difference'] > 0)
    assert report['beats_both'] == [
        s for s in settings
        if methods[s]['beats_alone'] and methods[s]['beats_logit_kd']
    ]
    expected = 'beat both' if report['beats_both'] else 'no ScaleKD setting'
    # the files hold the student's predictions (not the teacher's): their
    # accuracy is the one the run logged for the student
    for row in methods.values():
        for run in row['runs']:
            with open(osp.join(work_dir, run, 'result.json')) as f:
                result = json.load(f)
            (log, ) = glob.glob(osp.join(work_dir, run, '*', '*.log'))
            with open(log) as f:
                logged = re.findall(
                    r'Epoch\((?:val|test)\) .*?\] +accuracy/top1: ([\d.]+)',
                    f.read())
            assert [float(v) for v in logged[-2:]] == pytest.approx(
                [result['val_accuracy'], result['test_accuracy']], abs=1e-3)
    assert expected in report['summary']
    assert len(report['chosen_verdicts']) == 2
    with open(osp.join(work_dir, 'sweep.md')) as f:
        markdown = f.read()
    assert report['summary'] in markdown
    assert all(v in markdown for v in comparison['verdicts'])
    with open(osp.join(work_dir, 'sweep_accuracy.png'), 'rb') as f:
        assert f.read(8) == b'\x89PNG\r\n\x1a\n'


@pytest.mark.slow
def test_recommended_config_has_the_chosen_weights(digits_sweep):
    from mmpretrain.registry import MODELS
    _, work_dir, _ = digits_sweep
    with open(osp.join(work_dir, 'sweep.json')) as f:
        report = json.load(f)
    cfg = Config.fromfile(report['recommended_config'])
    chosen = report['chosen_setting']
    for stage in ('perception_stage', 'final_stage'):
        loss = cfg.model[stage].loss
        assert (loss.spatial_weight, loss.frequency_weight) == (
            chosen['spatial_weight'], chosen['frequency_weight'])
    # the rest of the config, and the full schedule, as they were
    assert cfg.model.perception_stage.teacher_split == 1
    assert cfg.train_cfg.max_epochs == 15
    assert cfg.test_dataloader.dataset.ann_file == 'meta/test.txt'
    model = MODELS.build(cfg.model)
    assert model.stages['final'].loss.spatial_weight == \
        chosen['spatial_weight']


@pytest.mark.slow
def test_rerun_trains_only_the_unfinished_runs(digits_sweep):
    argv, work_dir, _ = digits_sweep
    lost = 'scalekd_spatial_weight-0.08_frequency_weight-0.03_seed1'
    os.remove(osp.join(work_dir, lost, 'result.json'))
    kept = osp.join(work_dir, 'alone_seed0', 'result.json')
    before = os.stat(kept).st_mtime_ns
    output = _main(argv)
    assert '11 of 12 runs already finished' in output
    assert _progress(output) == [('12', '0')]
    assert re.search(r'run 12/12 scalekd spatial_weight=0.08 '
                     r'frequency_weight=0.03 seed 1', output)
    assert osp.isfile(osp.join(work_dir, lost, 'result.json'))
    assert os.stat(kept).st_mtime_ns == before
    # a run trained with other arguments is not one of this sweep's
    cfg = Config.fromfile(argv[0])
    runs = sweep.plan_runs(sweep.parse_grid(GRID), [0, 1])
    indices = sweep.subset_indices(cfg, 64)
    assert sweep.unfinished(cfg, runs, work_dir, 1, indices) == []
    assert sweep.unfinished(cfg, runs, work_dir, 2, indices) == runs
    assert sweep.unfinished(cfg, runs, work_dir, 1, indices[:-1]) == runs


@pytest.mark.slow
def test_slurm_array_script_lists_every_run(digits_sweep, tmp_path):
    argv, work_dir, _ = digits_sweep
    slurm_dir = str(tmp_path / 'slurm_sweep')
    output = _main(argv[:-1] + [slurm_dir, '--launcher', 'slurm'])
    script = osp.join(slurm_dir, 'sweep.sbatch')
    subprocess.run(['bash', '-n', script], check=True)
    with open(script) as f:
        text = f.read()
    assert '#SBATCH --array=0-11' in text and '#SBATCH --requeue' in text
    names = [r.name for r in sweep.plan_runs(sweep.parse_grid(GRID), [0, 1])]
    listed = re.search(r'RUNS=\(\n(.*?)\n\)', text, re.S).group(1).split()
    assert listed == names
    assert '--run "$RUN"' in text and '--work-dir ' + slurm_dir in text
    # the collector: the same command with --collect and no --launcher
    (collect, ) = re.findall(r'the report: (.*)$', output, re.M)
    assert collect.endswith(' --collect') and '--launcher' not in collect
    assert f'--work-dir {slurm_dir}' in collect
    # it writes the report once every run has its result
    os.remove(osp.join(work_dir, 'sweep.md'))
    _main(argv + ['--collect'])
    assert osp.isfile(osp.join(work_dir, 'sweep.md'))


def test_the_tools_preset_names_are_the_librarys():
    tool = load_tool(osp.join(REPO_ROOT, 'tools', 'analysis', 'sweep.py'))
    assert tool.PRESET_NAMES == tuple(sorted(sweep.PRESETS))
