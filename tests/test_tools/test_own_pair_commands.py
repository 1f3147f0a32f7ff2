"""README's "Your own teacher, student and data" commands, run as written
(in a scratch folder that holds the data, the configs written and the work
dirs): the digits, a teacher trained on them, the pair builder, the sweep,
and the training of the recommended config."""
import json
import os
import os.path as osp
import shlex
import sys

import pytest
from mmengine.config import Config

from tests.conftest import REPO_ROOT, run_command
from tests.test_readme import _command_lines, _section


@pytest.mark.slow
def test_readme_own_pair_commands_work_as_written(tmp_path):
    commands = _command_lines(
        _section('Your own teacher, student and data').split('\n###')[0])
    assert [shlex.split(c)[1] for c in commands] == [
        'tools/dataset_converters/prepare_digits.py', 'tools/train.py',
        'tools/misc/scalekd_config.py', 'tools/analysis/sweep.py',
        'tools/train.py'
    ]
    # configs/own is written here, not into the checkout
    os.symlink(osp.join(REPO_ROOT, 'tools'), tmp_path / 'tools')
    (tmp_path / 'configs').mkdir()
    for name in ('_base_', 'quickstart'):
        os.symlink(osp.join(REPO_ROOT, 'configs', name),
                   tmp_path / 'configs' / name)
    outputs = []
    for command in commands:
        words = shlex.split(command)
        assert words[0] == 'python'
        outputs.append(run_command([sys.executable, *words[1:]],
                                   cwd=str(tmp_path)).stdout)

    own = tmp_path / 'configs' / 'own'
    assert sorted(os.listdir(own)) == [
        'logit-kd_digits.py', 'scalekd_digits.py', 'student_digits.py'
    ]
    assert 'teacher rest on its own split tokens' in outputs[2]
    sweep = tmp_path / 'work_dirs' / 'sweep' / 'scalekd_digits'
    with open(sweep / 'sweep.json') as f:
        report = json.load(f)
    # 2 seeds each of the student alone, logit KD and 2 settings
    assert sum(len(m['runs']) for m in report['methods']) == 8
    recommended = Config.fromfile(
        str(sweep / 'recommended_scalekd_digits.py'))
    assert recommended.model.perception_stage.loss.spatial_weight in (0.04,
                                                                      0.08)
    run = tmp_path / 'work_dirs' / 'recommended_scalekd_digits'
    last = f'epoch_{recommended.train_cfg.max_epochs}'
    assert (run / f'{last}.pth').is_file()
    assert (run / f'{last}_student.pth').is_file()
