"""tools/misc/scalekd_config.py: the choices printed with their reasons,
overrides, the CPU check, and the tool found by mim in the installed copy."""
import os
import os.path as osp
import subprocess
import sys

import pytest
from mmengine.config import Config

from tests.conftest import REPO_ROOT, run_command

pytestmark = pytest.mark.slow

TOOL = osp.join(REPO_ROOT, 'tools', 'misc', 'scalekd_config.py')
# The quick start's pair: a 4-block ViT teacher, a 4-block Mixer student,
# 16 px digits; built and checked in seconds.
TEACHER = osp.join(REPO_ROOT, 'configs', 'quickstart',
                   'vit-tiny_digits_teacher.py')
STUDENT = osp.join(REPO_ROOT, 'configs', 'quickstart',
                   'mixer-tiny_digits_alone.py')
PAIR = ['--teacher', TEACHER, '--student', STUDENT, '--input-size', '16']


def _tool(*args, **kwargs):
    return run_command([sys.executable, TOOL, *args], **kwargs)


def test_choices_are_printed_with_reasons_and_checked(tmp_path):
    out = tmp_path / 'own'
    result = _tool(*PAIR, '--out-dir', str(out), '--name', 'digits')
    printed = result.stdout
    assert "teacher_split: 1" in printed
    assert 'after block 2 of 4: the rest is the last two blocks' in printed
    assert "('backbone.layers.2', 'backbone.layers.3')" in printed
    assert '4 blocks on one grid: block 3' in printed
    assert 'num_heads: (8, 8)' in printed
    assert 'a plain-ViT teacher and a token student: 1.0' in printed
    # the check: split, shapes, cost, one step and its memory
    assert 'teacher rest on its own split tokens: max relative error' \
        in printed
    assert 'final_spatial: student map (2, 32, 4, 4), queries (2, 16, 64)' \
        in printed
    assert 'of activations kept for the backward pass (measured' in printed
    assert sorted(p.name for p in out.iterdir()) == [
        'logit-kd_digits.py', 'scalekd_digits.py', 'student_digits.py']
    model = Config.fromfile(str(out / 'scalekd_digits.py')).model
    assert model.perception_stage.teacher_split == 1
    assert model.final_stage.projector.self_query is False
    assert model.logit_kd == dict(type='LogitKDLoss', tau=1.0, alpha=0.5)
    baseline = Config.fromfile(str(out / 'logit-kd_digits.py')).model
    assert baseline.perception_stage is None
    assert baseline.logit_kd.alpha == 0.5


def test_flags_override_the_rules(tmp_path):
    result = _tool(*PAIR, '--out-dir', str(tmp_path), '--no-check',
                   '--num-heads', '4,2', '--self-query', 'yes,yes',
                   '--softmax-scale', '2.5', '--teacher-split', '2',
                   '--student-taps', 'backbone.layers.1,backbone.layers.3',
                   '--spatial-weights', '0.1,0.2', '--frequency-weights',
                   '0.0,0.05', '--tau', '2.0', '--alpha', '0.25',
                   '--feature-only')
    assert 'set by --num-heads' in result.stdout
    assert 'max relative error' not in result.stdout  # --no-check
    name = 'vit-tiny_mixer-tiny'
    model = Config.fromfile(str(tmp_path / f'scalekd_{name}.py')).model
    perception, final = model.perception_stage, model.final_stage
    assert (perception.projector.num_heads, final.projector.num_heads) == \
        (4, 2)
    assert final.projector.self_query is True
    assert perception.projector.softmax_scale == 2.5
    assert perception.teacher_split == 2
    assert perception.student_tap == 'backbone.layers.1'
    assert (perception.loss.spatial_weight, final.loss.spatial_weight,
            perception.loss.frequency_weight,
            final.loss.frequency_weight) == (0.1, 0.2, 0.0, 0.05)
    assert model.logit_kd is None  # --feature-only
    baseline = Config.fromfile(str(tmp_path / f'logit-kd_{name}.py')).model
    assert (baseline.logit_kd.tau, baseline.logit_kd.alpha) == (2.0, 0.25)


def test_mim_runs_the_installed_tool(tmp_path):
    # The installed copy (`make install` first), from a folder of its own,
    # without the checkout on the path: mim finds the tool in its .mim.
    env = dict(os.environ,
               PATH=osp.dirname(sys.executable) + os.pathsep +
               os.environ['PATH'])
    env.pop('PYTHONPATH', None)
    result = subprocess.run(
        [sys.executable, '-m', 'mim', 'run', 'mmscalekd', 'scalekd_config',
         *PAIR, '--out-dir', str(tmp_path), '--no-check'],
        cwd=str(tmp_path), env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr
    assert '.mim/tools/misc/scalekd_config.py' in result.stdout + \
        result.stderr
    assert 'site-packages' in result.stdout + result.stderr
    assert osp.isfile(tmp_path / 'scalekd_vit-tiny_mixer-tiny.py')
