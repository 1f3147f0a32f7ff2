"""A checkpoint that does not hold the model's weights is an error wherever
a user can pass one, naming the parts and the file; a resume with another
config is refused before the first step."""
import os.path as osp
import shutil
import sys

import pytest
import torch

from mmscalekd.utils import CheckpointError
from tests.conftest import (REPO_ROOT, SMOKE_CONFIG, build_distiller,
                            build_runner, load_checkpoint, load_tool,
                            run_command, run_log, smoke_config)


@pytest.fixture
def trained(one_epoch_run, tmp_path):
    """A copy of a one-epoch run's work dir (epoch_1.pth), to resume in."""
    work_dir = tmp_path / 'trained'
    shutil.copytree(one_epoch_run, work_dir)
    return work_dir


def without(trained, tmp_path, prefix):
    """epoch_1.pth without the weights under ``prefix``."""
    checkpoint = load_checkpoint(trained / 'epoch_1.pth')
    checkpoint['state_dict'] = {
        k: v for k, v in checkpoint['state_dict'].items()
        if not k.startswith(prefix)
    }
    path = tmp_path / f'without_{prefix.strip(".")}.pth'
    torch.save(checkpoint, path)
    return str(path)


def test_tools_test_refuses_a_checkpoint_without_the_head(trained, tmp_path):
    path = without(trained, tmp_path, 'student.head.')
    result = run_command(
        [sys.executable, 'tools/test.py', SMOKE_CONFIG, path, '--work-dir',
         str(tmp_path / 'test')], check=False)
    assert result.returncode != 0
    assert 'missing student head' in result.stderr
    assert path in result.stderr
    assert 'accuracy' not in result.stdout + result.stderr


def test_load_from_refuses_missing_projectors(trained, tmp_path):
    path = without(trained, tmp_path, 'final_stage.projectors.')
    runner = build_runner(smoke_config(tmp_path / 'run', load_from=path))
    with pytest.raises(CheckpointError) as error:
        runner.train()
    message = str(error.value)
    assert 'projector final_spatial' in message
    assert 'projector final_frequency' in message
    assert path in message
    assert runner.iter == 0


def test_a_student_alone_checkpoint_gets_a_hint(trained, tmp_path):
    checkpoint = load_checkpoint(trained / 'epoch_1.pth')
    checkpoint['state_dict'] = {
        k[len('student.'):]: v
        for k, v in checkpoint['state_dict'].items() if k.startswith('student.')
    }
    path = tmp_path / 'student.pth'
    torch.save(checkpoint, path)
    runner = build_runner(smoke_config(tmp_path / 'run', load_from=str(path)))
    with pytest.raises(CheckpointError, match="init_cfg=dict.type='Pretrained'"):
        runner.train()


def test_resume_with_another_student_width_is_refused(trained, tmp_path):
    runner = build_runner(
        smoke_config(trained, max_epochs=2, resume=True,
                     **{'model.student.backbone.base_channels': 8,
                        'model.student.head.in_channels': 64}))
    with pytest.raises(CheckpointError) as error:
        runner.train()
    message = str(error.value)
    assert 'other shapes' in message
    assert 'student.backbone.layer1.0.conv1.weight: file (16, 64, 3, 3), ' \
        'model (8, 64, 3, 3)' in message
    assert runner.iter == 0 and runner.epoch == 0


def test_resume_with_other_projector_heads_is_refused(trained, tmp_path):
    # Same weight shapes, another function: only the recorded architecture
    # tells them apart.
    runner = build_runner(
        smoke_config(trained, max_epochs=2, resume=True,
                     **{'model.final_stage.projector.num_heads': 2}))
    with pytest.raises(CheckpointError,
                       match=r'model\.final_stage\.projector\.num_heads` is '
                       r'4 in the checkpoint and 2 in the config'):
        runner.train()


def test_extract_student_refuses_another_students_checkpoint(
        trained, tmp_path):
    from mmengine.config import Config
    from mmscalekd.engine.student_export import extract_student
    cfg = Config.fromfile(SMOKE_CONFIG)
    cfg.model.student.backbone.depth = 34  # more blocks than the file has
    config = tmp_path / 'deeper.py'
    cfg.dump(str(config))
    with pytest.raises(CheckpointError,
                       match=r'its student\.\* weights.*missing backbone'):
        extract_student(str(config), str(trained / 'epoch_1.pth'),
                        str(tmp_path / 'out'))
    assert not (tmp_path / 'out' / 'student.pth').exists()


def test_vis_tool_refuses_a_checkpoint_without_its_projectors(
        trained, tmp_path):
    from mmengine.config import Config
    tool = load_tool(osp.join(REPO_ROOT, 'tools', 'visualization',
                              'vis_projector_attention.py'))
    path = without(trained, tmp_path,
                   'perception_stage.projectors.spatial.')
    with pytest.raises(CheckpointError,
                       match='missing projector perception_spatial'):
        tool.build_model(Config.fromfile(SMOKE_CONFIG), path)


def test_teacher_entries_in_a_checkpoint_are_ignored(trained, tmp_path):
    checkpoint = load_checkpoint(trained / 'epoch_1.pth')
    teacher = build_distiller().teacher.network.state_dict()
    checkpoint['state_dict'].update(
        {f'teacher.{k}': torch.full_like(v, 7.0) for k, v in teacher.items()
         if v.is_floating_point()})
    path = tmp_path / 'with_teacher.pth'
    torch.save(checkpoint, path)
    runner = build_runner(smoke_config(tmp_path / 'run', load_from=str(path)))
    network = runner.model.teacher.network
    before = {k: v.clone() for k, v in network.state_dict().items()}
    runner.test()
    assert 'teacher entries in the file' in run_log(runner)
    for key, value in network.state_dict().items():
        assert torch.equal(value, before[key]), key
