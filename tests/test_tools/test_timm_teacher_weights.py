"""Import timm weights from a local file into a timm teacher, strictly."""
import sys

import pytest
import timm
import torch
from mmengine.config import Config
from safetensors.torch import save_file

from mmscalekd.models.teachers import load_frozen_teacher
from tests.conftest import run_command

# Runs the converter as a script: about ten seconds each.
pytestmark = pytest.mark.slow

TOOL = 'tools/model_converters/timm_teacher_weights.py'
TEACHER = dict(
    type='TimmClassifier', model_name='vit_tiny_patch16_224', img_size=32,
    depth=2, num_classes=4)


def _config(tmp_path):
    path = str(tmp_path / 'teacher.py')
    Config(dict(model=TEACHER)).dump(path)
    return path


def _timm_model():
    kwargs = {k: v for k, v in TEACHER.items()
              if k not in ('type', 'model_name')}
    return timm.create_model('vit_tiny_patch16_224', **kwargs).eval()


def _timm_weights():
    """Weights no build initialises (norm scales included): drawn from
    their own generator, so only a load can give them to a teacher."""
    generator = torch.Generator().manual_seed(1)
    return {
        k: torch.randn(v.shape, generator=generator) * 0.1
        if v.is_floating_point() else v
        for k, v in _timm_model().state_dict().items()
    }


@pytest.mark.parametrize('suffix', ['.safetensors', '.bin'])
def test_timm_file_becomes_the_teachers_checkpoint(tmp_path, suffix):
    weights = _timm_weights()
    src = str(tmp_path / f'model{suffix}')
    if suffix == '.safetensors':
        save_file(weights, src)
    else:
        torch.save(weights, src)
    dst = str(tmp_path / 'teacher.pth')
    run_command([sys.executable, TOOL, _config(tmp_path), src, dst])
    teacher = load_frozen_teacher(TEACHER, dst)  # strict, as in training
    # The teacher predicts what timm's own model with the file's weights
    # predicts.
    reference = _timm_model()
    reference.load_state_dict(weights)
    images = torch.randn(2, 3, 32, 32, generator=torch.Generator()
                         .manual_seed(0))
    with torch.no_grad():
        expected = reference(images)
    torch.testing.assert_close(teacher.logits(images), expected)
    assert not torch.allclose(
        load_frozen_teacher(TEACHER, None).logits(images), expected)


def test_weights_of_another_model_are_refused_and_nothing_written(tmp_path):
    weights = _timm_weights()
    del weights['head.bias']
    src = str(tmp_path / 'model.safetensors')
    save_file(weights, src)
    dst = tmp_path / 'teacher.pth'
    result = run_command([sys.executable, TOOL, _config(tmp_path), src,
                          str(dst)], check=False)
    assert result.returncode != 0
    assert 'head.bias' in result.stderr
    assert not dst.exists() and not (tmp_path / 'teacher.pth.tmp').exists()
