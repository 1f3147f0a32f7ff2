"""What every shipped distillation config gives the runner, as pinned.

For each config in configs/scalekd/ that distils (``scalekd_*``, its
``logit-kd_*`` baseline and the ablations) the merged config is its student
config (``student_<student>.py``, the recipe and ``model.student``) plus
what distillation adds: ``tests/data/distillation_configs.json`` holds that
part (the distiller less its student, and any top-level key whose value is
not the student config's). The configs may share blocks through bases in
configs/_base_/scalekd/; such a base's own variables (read once, when the
config is parsed) are the only other keys a merged config may hold.
"""
import functools
import glob
import json
import os.path as osp

import pytest
from mmengine.config import Config

from tests.conftest import REPO_ROOT, shared_base_variables

# Parses every shipped config and its mmpretrain bases: minutes on a CPU.
pytestmark = pytest.mark.slow

SHIPPED = osp.join(REPO_ROOT, 'configs', 'scalekd')
PINNED = osp.join(REPO_ROOT, 'tests', 'data', 'distillation_configs.json')
DISTILLING = sorted(
    osp.basename(path) for path in glob.glob(osp.join(SHIPPED, '*.py'))
    if not osp.basename(path).startswith('student_'))


@functools.lru_cache(maxsize=None)
def merged(path) -> dict:
    return Config.fromfile(path).to_dict()


def student_of(name: str) -> str:
    """``<kind>_<teacher>_<student>.py`` -> ``student_<student>.py``."""
    return 'student_' + name.split('_', 2)[2]


def distillation_part(path: str) -> dict:
    """The merged config less its student config (checked to be there) and
    less the shared bases' variables (checked to be theirs), as JSON."""
    cfg = dict(merged(path))
    student = merged(osp.join(SHIPPED, student_of(osp.basename(path))))
    for key, value in shared_base_variables().items():
        if key in cfg:
            assert cfg.pop(key) == value, key
    assert not set(student) - set(cfg), set(student) - set(cfg)
    model = dict(cfg.pop('model'))
    assert model.pop('student') == student['model'], path
    recipe = {
        key: value
        for key, value in cfg.items() if key not in student
        or student[key] != value
    }
    return json.loads(json.dumps(dict(model=model, recipe=recipe)))


def read_pinned() -> dict:
    with open(PINNED) as f:
        return json.load(f)


def test_every_distillation_config_is_pinned():
    assert sorted(read_pinned()) == DISTILLING


@pytest.mark.parametrize('name', DISTILLING)
def test_merged_config_is_its_student_config_and_the_pinned_part(name):
    assert distillation_part(osp.join(SHIPPED, name)) == read_pinned()[name]


@pytest.mark.parametrize('change, where', [
    ('model = dict(final_stage=dict(projector=dict(num_heads=12)))', 'model'),
    ('model = dict(teacher=dict(checkpoint=None))', 'model'),
    ('train_cfg = dict(max_epochs=99)', 'recipe'),
])
def test_a_changed_setting_is_seen(tmp_path, change, where):
    name = 'scalekd_swin-l_resnet50_8xb32_in1k.py'
    changed = tmp_path / name
    changed.write_text(f"_base_ = [{osp.join(SHIPPED, name)!r}]\n{change}\n")
    ours, pinned = distillation_part(str(changed)), read_pinned()[name]
    assert ours[where] != pinned[where]
    other = 'recipe' if where == 'model' else 'model'
    assert ours[other] == pinned[other]
