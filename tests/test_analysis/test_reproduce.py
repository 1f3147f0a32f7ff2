"""The plan of the paper's table (mmscalekd.analysis.reproduce): which
configs a named set holds, the baselines each ScaleKD config gets, the cost
arithmetic, and the metafile and README updates of the collection. No
training here: tests/test_tools/test_reproduce.py runs the jobs."""
import difflib
import os
import os.path as osp
import shutil
import subprocess

import numpy as np
import pytest
import yaml
from mmengine.config import Config

from mmscalekd.analysis import reproduce
from mmscalekd.analysis.reproduce_results import (REPRODUCED_METRIC,
                                                  update_metafile,
                                                  update_readme)
from tests.conftest import REPO_ROOT, SMOKE_CONFIG, load_tool

SCALEKD = osp.join(REPO_ROOT, 'configs', 'scalekd')
METAFILE = osp.join(SCALEKD, 'metafile.yml')


def _models():
    with open(METAFILE) as f:
        return yaml.safe_load(f)['Models']


def _names(paths):
    return sorted(osp.splitext(osp.basename(p))[0] for p in paths)


@pytest.mark.parametrize('table', ['advanced', 'traditional'])
def test_strategy_sets_are_the_metafiles_scalekd_entries(table):
    # The ScaleKD collection's entries of that strategy, ablations aside.
    expected = sorted(
        m['Name'] for m in _models()
        if m['In Collection'] == 'ScaleKD' and 'Ablation' not in m['Metadata']
        and m['Metadata']['Strategy'] == table)
    chosen = reproduce.table_configs(table)
    assert _names(chosen) == expected
    assert len(chosen) == dict(advanced=11, traditional=4)[table]
    assert all(osp.isfile(p) for p in chosen)


def test_ablation_set_is_the_ablations_and_fd():
    expected = sorted(
        m['Name'] for m in _models()
        if 'Ablation' in m['Metadata'] or m['In Collection'] == 'FD')
    assert _names(reproduce.table_configs('ablations')) == expected
    assert len(expected) == 5


def test_the_tools_table_names_are_the_librarys():
    tool = load_tool(osp.join(REPO_ROOT, 'tools', 'reproduce.py'))
    assert tool.TABLE_NAMES == reproduce.TABLES


def test_shipped_siblings_are_the_baselines():
    def baselines(name):
        found = reproduce.baseline_configs(osp.join(SCALEKD, name + '.py'))
        return {k: v and osp.basename(v) for k, v in found.items()}

    assert baselines('scalekd_swin-l_mobilenet-v1_8xb256-rsb-a2-300e_in1k') \
        == dict(alone='student_mobilenet-v1_8xb256-rsb-a2-300e_in1k.py',
                logit_kd='logit-kd_swin-l_mobilenet-v1_8xb256-rsb-a2-300e_'
                'in1k.py')
    # an ablation: the baselines of the run it changes
    assert baselines('scalekd-no-tpp_swin-l_resnet50_8xb32_in1k') == dict(
        alone='student_resnet50_8xb32_in1k.py',
        logit_kd='logit-kd_swin-l_resnet50_8xb32_in1k.py')
    assert reproduce.baseline_configs(SMOKE_CONFIG) == dict(alone=None,
                                                            logit_kd=None)


def test_every_scalekd_config_has_both_shipped_baselines():
    for table in reproduce.TABLES:
        for path in reproduce.table_configs(table):
            assert None not in reproduce.baseline_configs(path).values(), \
                path


def test_ablations_share_their_baseline_jobs(tmp_path):
    configs = reproduce.table_configs('ablations')
    plan, selected = reproduce.plan_jobs(configs, [0, 1], str(tmp_path))
    # per seed: the five configs, one student alone, one logit KD
    assert len(plan.jobs) == len(selected) == 2 * 7
    alone = [j for j in plan.jobs if j.method == 'alone']
    assert [j.name for j in alone] == ['student_resnet50_8xb32_in1k'] * 2
    assert sorted(alone[0].rows) == _names(configs)
    assert {j.work_dir for j in plan.jobs} == {
        osp.join(str(tmp_path), j.name, f'seed{j.seed}') for j in plan.jobs}
    assert [j.index for j in plan.jobs] == list(range(14))
    # a later plan of one of them keeps the indices and adds nothing
    reproduce.write_plan(plan)
    again, selected = reproduce.plan_jobs(configs[:1], [1], str(tmp_path))
    assert [(j.name, j.seed) for j in again.jobs] == [
        (j.name, j.seed) for j in plan.jobs]
    assert sorted(again.jobs[i].method for i in selected) == sorted(
        reproduce.METHODS)


def test_derived_baselines_are_the_sweeps(tmp_path):
    plan, _ = reproduce.plan_jobs([SMOKE_CONFIG], [3], str(tmp_path))
    by_method = {j.method: j for j in plan.jobs}
    alone = Config.fromfile(by_method['alone'].config)
    logit_kd = Config.fromfile(by_method['logit_kd'].config)
    smoke = Config.fromfile(SMOKE_CONFIG)
    assert osp.dirname(by_method['alone'].config) == str(tmp_path / 'configs')
    assert alone.model.type == smoke.model.student.type == 'ImageClassifier'
    assert alone.data_preprocessor == smoke.data_preprocessor
    assert logit_kd.model.perception_stage is None
    assert logit_kd.model.final_stage is None
    assert logit_kd.model.logit_kd == smoke.model.logit_kd
    # the seed is the job's, not the file's
    assert alone.randomness == smoke.randomness
    assert by_method['alone'].fingerprint == reproduce.job_fingerprint(
        by_method['alone'].config, 3)
    assert reproduce.job_fingerprint(by_method['alone'].config, 4) != \
        by_method['alone'].fingerprint


def test_the_cost_of_a_measured_rate():
    # 300 epochs of ImageNet-1k train at 100 img/s per GPU, 8 GPUs
    cost = reproduce.job_cost(100.0, 300 * 1_281_167, 8)
    assert cost['gpu_hours'] == pytest.approx(1067.6391667, rel=1e-9)
    assert cost['wall_hours'] == pytest.approx(133.4548958, rel=1e-9)


def test_schedule_images_of_the_shipped_and_other_configs(tmp_path):
    cfg = Config.fromfile(osp.join(
        SCALEKD, 'scalekd_swin-l_resnet50_8xb256-rsb-a2-300e_in1k.py'))
    images, how = reproduce.schedule_images(cfg, 8)
    # no data/imagenet/meta/train.txt here: the known size of the split
    assert images == 300 * 1_281_167 and 'ImageNet-1k train' in how
    smoke = Config.fromfile(SMOKE_CONFIG)
    assert reproduce.schedule_images(smoke, 1)[0] == 3 * 192
    (tmp_path / 'meta').mkdir()
    (tmp_path / 'meta' / 'train.txt').write_text('a.png 0\nb.png 1\n\n'
                                                 'c.png 0\n')
    imagenet = dict(type='ImageNet', data_root=str(tmp_path), split='train')
    assert reproduce.dataset_images(imagenet)[0] == 3
    folder = dict(type='CustomDataset', data_root=str(tmp_path),
                  ann_file='meta/train.txt', indices=2)
    assert reproduce.dataset_images(folder)[0] == 2
    count, how = reproduce.dataset_images(dict(type='CustomDataset',
                                               data_root='elsewhere'))
    assert count is None and how.startswith('unknown')
    smoke.train_cfg = dict(by_epoch=False, max_iters=10)
    assert reproduce.schedule_images(smoke, 4)[0] == 10 * 32 * 4


def test_estimate_multiplies_the_measured_rate(tmp_path):
    plan, selected = reproduce.plan_jobs([SMOKE_CONFIG], [0], str(tmp_path))
    rates = dict(student=64.0, logit_kd=32.0, scalekd=16.0)
    measured = []

    def measure(config, variant, options, batch_size, device, warmup,
                iters):
        measured.append((config, variant, batch_size, iters))
        return dict(images_per_s=rates[variant])

    costs = reproduce.estimate_costs(plan, selected, 2, 'cpu', 5,
                                     measure=measure, progress=lambda *a,
                                     **k: None)
    assert sorted(m[1] for m in measured) == sorted(rates)
    assert {m[0] for m in measured} == {SMOKE_CONFIG}
    assert {m[2:] for m in measured} == {(32, 5)}  # batch per GPU, steps
    for row in costs['jobs']:
        rate = rates[reproduce.VARIANT_OF[row['method']]]
        assert row['images'] == 3 * 192
        assert row['gpu_hours'] == pytest.approx(3 * 192 / rate / 3600)
        assert row['wall_hours'] == pytest.approx(row['gpu_hours'] / 2)
    assert costs['total_gpu_hours'] == pytest.approx(
        sum(3 * 192 / r / 3600 for r in rates.values()))
    text = reproduce.render_costs(costs)
    assert 'measured on cpu' in text and 'Measured on the CPU' in text


def test_array_ranges():
    assert reproduce.array_ranges([5, 0, 1, 2, 7, 8]) == '0-2,5,7-8'
    assert reproduce.array_ranges([3]) == '3'


def test_job_commands_and_slurm_script(tmp_path):
    one = reproduce.job_command('/t/reproduce.py', '/root', 4, 1, 'py')
    assert one == 'py -u /t/reproduce.py --run-job 4 --work-root /root'
    eight = reproduce.job_command('/t/reproduce.py', '/root', 4, 8, 'py')
    assert eight == ('torchrun --nproc_per_node=8 /t/reproduce.py --run-job '
                     '4 --work-root /root --job-launcher pytorch')
    script = reproduce.slurm_script('/t/reproduce.py', '/root', [0, 1, 2, 6],
                                    16, 'gpu', 8, 5, 'py')
    for line in ('#SBATCH --array=0-2,6', '#SBATCH --requeue',
                 '#SBATCH --nodes=2', '#SBATCH --ntasks-per-node=8',
                 '#SBATCH --gres=gpu:8'):
        assert line in script.splitlines()
    assert ('srun --kill-on-bad-exit=1 py -u /t/reproduce.py --run-job '
            '"$JOB" --work-root /root --job-launcher slurm') in script
    path = tmp_path / 'job.sbatch'
    path.write_text(script)
    subprocess.run(['bash', '-n', str(path)], check=True)


def _metafile_copy(tmp_path):
    path = tmp_path / 'metafile.yml'
    shutil.copy(METAFILE, path)
    return str(path)


VALUES = {
    # with the paper's figure, without, and a student alone
    'scalekd_swin-l_resnet50_8xb256-rsb-a2-300e_in1k':
        dict(mean=81.904, std=0.1, seeds=[0, 1, 2]),
    'scalekd_swin-l_resnet50_8xb32_in1k': dict(mean=79.5, std=None,
                                               seeds=[0]),
    'student_resnet50_8xb32_in1k': dict(mean=76.125, std=0.25, seeds=[0, 1]),
    'scalekd_smoke_synthetic': dict(mean=50.0, std=None, seeds=[0]),
}


def test_metafile_update_keeps_its_text(tmp_path):
    path = _metafile_copy(tmp_path)
    with open(METAFILE) as f:
        before = f.read()
    assert update_metafile(path, VALUES) == list(VALUES)[:3]
    with open(path) as f:
        after = f.read()
    # lines are only added: comments and layout stay
    changes = [line for line in difflib.ndiff(before.splitlines(),
                                              after.splitlines())
               if line[:1] in '+-']
    assert all(line.startswith('+ ') for line in changes)
    models = {m['Name']: m for m in yaml.safe_load(after)['Models']}
    metrics = models['scalekd_swin-l_resnet50_8xb256-rsb-a2-300e_in1k'][
        'Results'][0]['Metrics']
    assert metrics == {'Paper Top 1 Accuracy': 82.03,
                       REPRODUCED_METRIC: 81.9}
    for name, value in (('scalekd_swin-l_resnet50_8xb32_in1k', 79.5),
                        ('student_resnet50_8xb32_in1k', 76.12)):
        (result, ) = models[name]['Results']
        assert result == {'Task': 'Image Classification',
                          'Dataset': 'ImageNet-1k',
                          'Metrics': {REPRODUCED_METRIC: value}}
        assert models[name]['Config'].endswith(name + '.py')
    # collected again: the figure is replaced, not repeated
    update_metafile(path, {'scalekd_swin-l_resnet50_8xb32_in1k':
                           dict(mean=79.0, std=None, seeds=[0])})
    with open(path) as f:
        again = f.read()
    assert again.count(REPRODUCED_METRIC + ':') == 3
    assert yaml.safe_load(again)['Models'] != yaml.safe_load(after)['Models']
    # and the model index's own checks hold for it
    from tests.test_configs import test_model_index
    for model in yaml.safe_load(again)['Models']:
        for result in model.get('Results', []):
            assert set(result['Metrics']) <= {
                test_model_index.PAPER_METRIC,
                test_model_index.REPRODUCED_METRIC}


def test_readme_update_fills_the_reproduced_column(tmp_path):
    path = tmp_path / 'README.md'
    shutil.copy(osp.join(SCALEKD, 'README.md'), path)
    before = path.read_text()
    assert sorted(update_readme(str(path), VALUES)) == sorted(
        list(VALUES)[:3])
    after = path.read_text()
    rows = {line.split(']')[0][3:]: line for line in after.splitlines()
            if line.startswith('| [')}
    assert rows['scalekd_swin-l_resnet50_8xb256-rsb-a2-300e_in1k'].endswith(
        '| 82.03 (+3.39) | 81.90 ± 0.10 (3 seeds) |')
    assert rows['scalekd_swin-l_resnet50_8xb32_in1k'].endswith(
        '| – | 79.50 (1 seed) |')
    assert rows['student_resnet50_8xb32_in1k'].endswith(
        '| – | 76.12 ± 0.25 (2 seeds) |')
    assert rows['scalekd_swin-s_resnet50_8xb32_in1k'].endswith('| – | – |')
    changed = [line for line in difflib.ndiff(before.splitlines(),
                                              after.splitlines())
               if line[:1] in '+-']
    assert len(changed) == 6


def test_one_seed_is_judged_by_mcnemar_and_a_missing_seed_listed(tmp_path):
    """Results written as the jobs write them: seed 0 of all three methods,
    seed 1 of ScaleKD only."""
    from mmscalekd.analysis import compare_students
    from mmscalekd.analysis.reproduce_results import (collect_results,
                                                      render_results)
    from mmscalekd.analysis.sweep import write_json
    from tests.test_analysis.test_statistics import write_predictions
    root = str(tmp_path / 'root')
    plan, _ = reproduce.plan_jobs([SMOKE_CONFIG], [0, 1], root)
    reproduce.write_plan(plan)
    right = dict(alone=50, logit_kd=60, scalekd=75)
    files = {}
    for job in plan.jobs:
        if job.seed == 1 and job.method != 'scalekd':
            continue
        correct = np.zeros(100, bool)
        correct[:right[job.method] + job.seed] = True
        os.makedirs(job.work_dir)
        preds = write_predictions(osp.join(job.work_dir, 'preds.pkl'),
                                  correct)
        if job.seed == 0:
            files[job.method] = [preds]
        write_json(osp.join(job.work_dir, 'result.json'), dict(
            fingerprint=job.fingerprint, preds=preds,
            accuracy=float(correct.mean() * 100)))
    results = collect_results(root, n_resamples=99)
    (row, ) = results['rows']
    assert row['seeds'] == [0]
    assert row['missing'] == ['scalekd_smoke_synthetic_alone/seed1',
                              'scalekd_smoke_synthetic_logit-kd/seed1']
    assert [j['index'] for j in results['missing']] == [3, 4]
    assert row['methods']['scalekd'] == dict(accuracies=[75.0], mean=75.0,
                                             std=None)
    report = compare_students(files, n_resamples=99, pairs=[
        ('alone', 'scalekd'), ('logit_kd', 'scalekd')])
    for reference, paired in zip(('alone', 'logit_kd'), report['paired']):
        gain = row['gains'][reference]
        assert gain['test'] == 'mcnemar'
        assert gain['pvalue'] == paired['mcnemar_pvalue']
        assert gain['difference'] == pytest.approx(75 - right[reference])
    # the metafile's figure is over every finished seed of a config
    assert results['configs']['scalekd_smoke_synthetic'] == dict(
        seeds=[0, 1], mean=75.5, std=pytest.approx(np.std([75, 76], ddof=1)))
    text = render_results(results)
    assert '| scalekd_smoke_synthetic | 1 | 50.00 | 60.00 | 75.00 |' in text
    assert '- job 3: scalekd_smoke_synthetic_alone seed 1' in text
