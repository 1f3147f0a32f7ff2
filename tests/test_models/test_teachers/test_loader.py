"""load_frozen_teacher: ``model.teacher`` read once, into a FrozenTeacher."""
import pytest
import torch

from mmpretrain.registry import MODELS

from mmscalekd.models.teachers import (FrozenTeacher, load_frozen_teacher,
                                       read_teacher_config)
from tests.conftest import tiny_swin_teacher

CLIP = dict(mean=[122.7709383, 116.7460125, 104.09373615],
            std=[68.5005327, 66.6321579, 70.32316305])


def counting_config(tmp_path):
    """A teacher config file that appends a line to ``reads.txt`` each time
    it is parsed (mmengine runs a Python config to read it)."""
    reads = tmp_path / 'reads.txt'
    path = tmp_path / 'teacher.py'
    path.write_text(
        f'open({str(reads)!r}, "a").write("read\\n")\n'
        f'model = {tiny_swin_teacher()!r}\n'
        f'data_preprocessor = dict(type="ClsDataPreprocessor", '
        f'mean={CLIP["mean"]!r}, std={CLIP["std"]!r})\n')
    return str(path), reads


def test_teacher_config_is_read_once(tmp_path):
    path, reads = counting_config(tmp_path)
    teacher = load_frozen_teacher(path, None, split=2)
    assert reads.read_text().splitlines() == ['read']
    # Both what it reads are used: the model and its normalisation.
    assert isinstance(teacher, FrozenTeacher)
    torch.testing.assert_close(
        teacher.input_scale.flatten(), 1 / torch.tensor(CLIP['std']))


def test_read_teacher_config_gives_model_and_normalisation(tmp_path):
    path, _ = counting_config(tmp_path)
    config = read_teacher_config(path)
    assert config.model == tiny_swin_teacher()
    assert config.normalization == CLIP
    inline = read_teacher_config(tiny_swin_teacher())
    assert inline.model == tiny_swin_teacher() and \
        inline.normalization is None


def test_a_config_without_model_names_the_key(tmp_path):
    path = tmp_path / 'empty.py'
    path.write_text('x = 1\n')
    with pytest.raises(KeyError, match=r'model\.teacher\.config=.*no `model`'):
        load_frozen_teacher(str(path), None)


def test_frozen_teacher_is_built_by_the_loader_not_by_name():
    """No config names FrozenTeacher by ``type=``: ``model.teacher`` is
    its own dict of keys."""
    assert MODELS.get('FrozenTeacher') is None


def test_initialising_the_distiller_keeps_the_teacher_weights():
    """The runner calls ``model.init_weights()``; the teacher's weights
    (here random, as from a file) stay what they are."""
    from tests.conftest import build_distiller
    distiller = build_distiller()
    before = {k: v.clone()
              for k, v in distiller.teacher.network.state_dict().items()}
    distiller.init_weights()
    after = distiller.teacher.network.state_dict()
    assert all(torch.equal(after[k], v) for k, v in before.items())
