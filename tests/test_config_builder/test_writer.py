"""The written configs: where the data, the classes and the runtime go."""
import os.path as osp

import pytest
from mmengine.config import Config

from mmscalekd.config_builder import data_settings, plan_pair, write_pair
from tests.conftest import REPO_ROOT

QUICKSTART = osp.join(REPO_ROOT, 'configs', 'quickstart')
TEACHER = osp.join(QUICKSTART, 'vit-tiny_digits_teacher.py')
STUDENT = osp.join(QUICKSTART, 'mixer-tiny_digits_alone.py')


def _write(tmp_path, **kwargs):
    plan = plan_pair(TEACHER, STUDENT, input_size=16, **kwargs)
    return plan, write_pair(plan, str(tmp_path / 'own'))


def test_other_classes_reach_head_and_batch_augments_without_logit_kd(
        tmp_path):
    plan, paths = _write(tmp_path, num_classes=5)
    assert sorted(paths) == ['scalekd', 'student']  # no logit-KD baseline
    assert not osp.exists(tmp_path / 'own' / 'logit-kd_vit-tiny_mixer-tiny.py')
    assert 'the teacher predicts 10 classes and the student 5' in \
        plan.choices['logit_kd'].reason
    student = Config.fromfile(paths['student'])
    assert student.model.head.num_classes == 5
    assert student.data_preprocessor.num_classes == 5
    assert Config.fromfile(paths['scalekd']).model.logit_kd is None


def test_data_config_replaces_the_recipes_loaders(tmp_path):
    loader = dict(batch_size=7, dataset=dict(type='CustomDataset',
                                             data_root='my_images'))
    data = str(tmp_path / 'data.py')
    Config(dict(train_dataloader=loader,
                val_evaluator=dict(type='Accuracy'))).dump(data)
    _, paths = _write(tmp_path, data=data_settings(data, batch_size=3))
    student = Config.fromfile(paths['student'])
    # the recipe's dataset keys are gone, the batch size is the flag's
    assert student.train_dataloader.dataset == loader['dataset']
    assert student.train_dataloader.batch_size == 3
    assert student.val_evaluator == dict(type='Accuracy')


@pytest.mark.slow
def test_recipe_with_its_own_hooks_keeps_them_before_the_runtime(tmp_path):
    _, paths = _write(
        tmp_path, recipe='mmpretrain::convnext/convnext-tiny_32xb128_in1k.py',
        num_classes=10)
    hooks = [h['type'] for h in Config.fromfile(paths['student']).custom_hooks]
    runtime = Config.fromfile(
        osp.join(REPO_ROOT, 'configs', '_base_', 'scalekd_runtime.py'))
    assert hooks == ['EMAHook'] + [h['type'] for h in runtime.custom_hooks]


def test_student_checkpoint_is_the_students_strict_start(tmp_path):
    _, paths = _write(tmp_path, student_checkpoint='student.pth')
    start = dict(type='Pretrained', checkpoint='student.pth')
    assert Config.fromfile(paths['student']).model.init_cfg == start
    # the distiller's student is the student config's model: it loads the
    # start itself, strictly, into the student alone
    assert Config.fromfile(paths['scalekd']).model.student.init_cfg == start


def test_image_folder_replaces_the_recipes_loaders(tmp_path):
    from mmscalekd.config_builder import folder_settings
    from mmscalekd.config_builder.own_data import image_folder_data
    from tests.test_config_builder.test_own_data import write_image_folder
    root = write_image_folder(tmp_path / 'images')
    folder = image_folder_data(root, input_size=16, batch_size=4)
    plan, paths = _write(tmp_path, data=folder_settings(folder))
    student = Config.fromfile(paths['student'])
    assert student.model.head.num_classes == 3
    assert student.train_dataloader.dataset == dict(
        folder['train_dataloader']['dataset'])
    assert student.train_dataloader.batch_size == 4
    assert 'the teacher predicts 10 classes and the student 3' in \
        plan.choices['logit_kd'].reason
