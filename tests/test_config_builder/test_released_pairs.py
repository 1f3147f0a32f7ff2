"""Given a released pair's teacher and student, the builder writes the
released model settings (no forward of the distiller, no weights)."""
import glob
import os.path as osp
import re

import pytest
from mmengine.config import Config

from mmscalekd.config_builder import plan_pair, write_pair
from tests.conftest import REPO_ROOT

# Builds each released teacher once (Swin-S/B/L, EVA-L): about a minute.
pytestmark = pytest.mark.slow

RELEASED = sorted(
    glob.glob(osp.join(REPO_ROOT, 'configs', 'scalekd', 'scalekd_*.py')))
# The projector's default, which some released configs leave out.
DEFAULT_SOFTMAX_SCALE = 5.0


def _settings(model) -> dict:
    """What the builder chooses, with the projector default filled in."""
    settings = {key: model[key] for key in ('perception_stage', 'final_stage',
                                            'logit_kd', 'input_size')}
    settings = Config(dict(settings)).to_dict()
    for stage in ('perception_stage', 'final_stage'):
        if settings[stage]:
            settings[stage]['projector'].setdefault('softmax_scale',
                                                    DEFAULT_SOFTMAX_SCALE)
    return settings


def _student_config(path: str) -> str:
    with open(path) as f:
        name = re.search(r"'\./(student_[^']+\.py)'", f.read()).group(1)
    return osp.join(osp.dirname(path), name)


def test_every_released_pair_is_covered():
    assert len(RELEASED) == 15
    assert not any('scalekd-' in osp.basename(p) for p in RELEASED)


@pytest.mark.parametrize('path', RELEASED, ids=osp.basename)
def test_builder_writes_the_released_model_settings(path, tmp_path,
                                                    monkeypatch):
    released = Config.fromfile(path).model
    plan = plan_pair(released.teacher.config, _student_config(path),
                     teacher_checkpoint=released.teacher.checkpoint)
    paths = write_pair(plan, str(tmp_path / 'own'))
    # Loaded from another directory: the written `_base_` paths hold.
    monkeypatch.chdir(tmp_path)
    written = Config.fromfile(paths['scalekd']).model
    assert _settings(written) == _settings(released)
    assert written.student == released.student
    assert written.teacher.config == released.teacher.config
    assert written.teacher.checkpoint == released.teacher.checkpoint
    baseline = path.replace('scalekd_', 'logit-kd_')
    if osp.isfile(baseline):
        assert _settings(Config.fromfile(paths['logit_kd']).model) == \
            _settings(Config.fromfile(baseline).model)
