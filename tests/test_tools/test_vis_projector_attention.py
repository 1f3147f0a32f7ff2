"""tools/visualization/vis_projector_attention.py on a smoke checkpoint."""
import logging
import os.path as osp
import sys

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.logging import MMLogger
from PIL import Image

from tests.conftest import (IMAGE_SIZE, REPO_ROOT, SMOKE_CONFIG, load_tool,
                            run_command)

# Trains a checkpoint and runs the tool on it: tens of seconds each.
pytestmark = pytest.mark.slow

TOOL = osp.join(REPO_ROOT, 'tools', 'visualization',
                'vis_projector_attention.py')


def import_tool():
    return load_tool(TOOL)


@pytest.fixture(scope='module')
def checkpoint(one_epoch_run):
    """A real mmengine training checkpoint of the smoke config (its message
    hub holds the HistoryBuffers a safe load must allow)."""
    return osp.join(one_epoch_run, 'epoch_1.pth')


@pytest.fixture(scope='module')
def image_file(tmp_path_factory):
    height = width = IMAGE_SIZE
    y, x = np.mgrid[:height, :width]
    image = np.stack([x * 255 // width, y * 255 // height,
                      (x + y) * 127 // width], axis=-1).astype(np.uint8)
    path = str(tmp_path_factory.mktemp('vis_image') / 'image.png')
    Image.fromarray(image).save(path)
    return path


@pytest.fixture(scope='module')
def tool():
    return import_tool()


def test_writes_attention_png(tool, checkpoint, image_file, tmp_path):
    out = str(tmp_path / 'attention.png')
    maps = tool.main([
        SMOKE_CONFIG, checkpoint, image_file, '--out', out,
        '--cfg-options', 'model.teacher.checkpoint=None'
    ])
    # final_spatial of the smoke config: 2x2 teacher tokens (all four drawn
    # by default) over the student's 2x2 stage-4 grid.
    assert maps.shape == (4, 2, 2)
    assert (maps >= 0).all()
    torch.testing.assert_close(maps.sum((1, 2)), torch.ones(4))

    with Image.open(out) as image:
        assert image.format == 'PNG'
        assert image.width > 0 and image.height > 0
        pixels = np.asarray(image.convert('RGB'))
    # not blank: the figure holds the image and coloured heat maps
    assert pixels.std() > 10
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 100


def test_maps_are_the_projector_attention(tool, checkpoint, image_file):
    cfg = Config.fromfile(SMOKE_CONFIG)
    model = tool.build_model(cfg, checkpoint)
    saved = torch.load(checkpoint, weights_only=False)['state_dict']
    (weight, ) = [k for k in saved if 'final' in k and 'spatial' in k
                  and k.endswith('query_proj.weight')]
    torch.testing.assert_close(model.state_dict()[weight], saved[weight])
    assert not model.training and not model.teacher.training

    packed = tool.load_image(cfg, image_file)
    assert packed['inputs'].shape == (3, IMAGE_SIZE, IMAGE_SIZE)
    inputs = model.data_preprocessor(
        dict(inputs=[packed['inputs']],
             data_samples=[packed['data_samples']]), False)['inputs']

    assert tool.default_tokens((4, 4)) == [0, 2, 3, 8, 10, 11, 12, 14, 15]
    perception = tool.attention_maps(model, inputs, 'perception_frequency',
                                     tool.default_tokens((4, 4)))
    assert perception.shape == (9, 4, 4)
    torch.testing.assert_close(perception.sum((1, 2)), torch.ones(9))

    # The final projector is queried by the perception outputs
    # (self_query=False): the maps follow the image through them.
    maps = tool.attention_maps(model, inputs, 'final_spatial', [3, 0])
    again = tool.attention_maps(model, inputs, 'final_spatial', [0, 1, 2, 3])
    torch.testing.assert_close(maps, again[[3, 0]])
    other = tool.attention_maps(model, inputs.flip(-1), 'final_spatial',
                                [3, 0])
    assert not torch.allclose(maps, other)

    with pytest.raises(KeyError, match='final_spatial'):
        tool.attention_maps(model, inputs, 'final_spatiall', [0])
    with pytest.raises(ValueError, match=r'indices 0\.\.3'):
        tool.attention_maps(model, inputs, 'final_spatial', [4])


def test_wrong_image_size_names_the_fix(tool, checkpoint, tmp_path):
    path = str(tmp_path / 'small.png')
    Image.fromarray(np.zeros((IMAGE_SIZE // 2, IMAGE_SIZE // 2, 3),
                             np.uint8)).save(path)
    with pytest.raises(ValueError, match='model.input_size'):
        tool.main([SMOKE_CONFIG, checkpoint, path, '--out',
                   str(tmp_path / 'x.png')])


def test_quiet_by_default(checkpoint, image_file, tmp_path):
    """As a user runs it: the random-teacher warning and the file written,
    not mmengine's line per initialised weight (hundreds, with --verbose)."""
    out = str(tmp_path / 'attention.png')
    command = [sys.executable, TOOL, SMOKE_CONFIG, checkpoint, image_file,
               '--out', out]
    result = run_command(command)
    output = result.stdout + result.stderr
    assert 'TEACHER IS RANDOMLY' in output
    assert result.stdout.splitlines()[-1] == f'Wrote {out}'
    assert 'torch.Size(' not in output and 'init_weights' not in output
    # 7 lines of the random-teacher warning and `Wrote ...` (mmcv-lite's
    # warning about its missing compiled ops is silenced).
    assert len(output.splitlines()) <= 10, output
    assert 'MultiScaleDeformableAttention' not in output

    verbose = run_command(command + ['--verbose']).stdout
    # a 4-line record per parameter of the teacher, student and projectors
    assert verbose.count('torch.Size(') > 50
    assert len(verbose.splitlines()) > 200
    assert 'TEACHER IS RANDOMLY' in verbose


class _Records(logging.Handler):

    def __init__(self):
        super().__init__(logging.DEBUG)
        self.records = []

    def emit(self, record):
        self.records.append(record)


def test_warnings_pass_and_level_is_restored(tool, checkpoint, image_file,
                                             tmp_path):
    """Called in-process, main() lets warnings and errors through and gives
    the caller's logger its level back, also when it raises."""
    logger = MMLogger.get_current_instance()
    level = logger.level
    handler = _Records()
    logger.addHandler(handler)
    try:
        tool.main([SMOKE_CONFIG, checkpoint, image_file, '--out',
                   str(tmp_path / 'attention.png')])
        assert logger.level == level
        assert [r.levelno for r in handler.records] == [logging.WARNING]
        assert 'TEACHER IS RANDOMLY' in handler.records[0].getMessage()

        missing = str(tmp_path / 'missing.pth')
        with pytest.raises(FileNotFoundError, match='missing.pth'):
            tool.main([SMOKE_CONFIG, missing, image_file])
        assert logger.level == level
    finally:
        logger.removeHandler(handler)


def test_an_empty_image_file_is_refused_naming_it(tool, tmp_path):
    path = tmp_path / 'empty.png'
    path.write_bytes(b'')
    with pytest.raises(ValueError, match=r'empty\.png'):
        # refused before the model is built: no checkpoint is needed
        tool.main([SMOKE_CONFIG, str(tmp_path / 'missing.pth'), str(path),
                   '--out', str(tmp_path / 'x.png')])
    assert not (tmp_path / 'x.png').exists()
