"""Round trip: distil a few iterations -> extract the student -> load it with
mmpretrain (and timm) -> the same predictions as the distiller."""
import os.path as osp
import sys
import warnings

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.registry import RUNNERS
from mmengine.runner import load_checkpoint
from safetensors.torch import load_file

from mmpretrain import ImageClassificationInferencer, get_model
from mmpretrain.registry import MODELS

from tests.conftest import (IMAGE_SIZE, NUM_CLASSES, SMOKE_CONFIG,
                            make_batch, run_command)

TOOL = 'tools/model_converters/extract_student.py'

_VIT = dict(embed_dims=32, num_layers=2, num_heads=2, feedforward_channels=64)
STUDENTS = {
    # a CNN of mmpretrain
    'resnet': (dict(
        type='ImageClassifier',
        backbone=dict(type='ResNet', depth=18, base_channels=16),
        neck=dict(type='GlobalAveragePooling'),
        head=dict(type='LinearClsHead', num_classes=NUM_CLASSES,
                  in_channels=128)), 'backbone.layer3', 'backbone.layer4'),
    # a ViT of mmpretrain (DeiT-style, class token)
    'deit': (dict(
        type='ImageClassifier',
        backbone=dict(type='VisionTransformer', arch=_VIT,
                      img_size=IMAGE_SIZE, patch_size=16),
        neck=None,
        head=dict(type='VisionTransformerClsHead', num_classes=NUM_CLASSES,
                  in_channels=32)), 'backbone.layers.0', 'backbone.layers.1'),
    # a timm CNN
    'timm-mobilenet-v1': (dict(
        type='ImageClassifier',
        backbone=dict(type='TimmStudentBackbone',
                      model_name='mobilenetv1_100'),
        neck=None,
        head=dict(type='LinearClsHead', num_classes=NUM_CLASSES,
                  in_channels=1024)), 'backbone.model.blocks.3',
        'backbone.model.blocks.4'),
}


def _distil(tmp_path, name):
    """Two training iterations of the smoke run with this student."""
    student, tap3, tap4 = STUDENTS[name]
    cfg = Config.fromfile(SMOKE_CONFIG)
    cfg.model.student = student
    cfg.model.perception_stage.student_tap = tap3
    cfg.model.final_stage.student_tap = tap4
    cfg.train_dataloader.dataset.num_samples = 16
    cfg.train_dataloader.batch_size = 8
    cfg.val_dataloader.dataset.num_samples = 8
    cfg.test_dataloader = cfg.val_dataloader
    cfg.train_cfg = dict(by_epoch=True, max_epochs=1, val_interval=1)
    cfg.param_scheduler = []
    cfg.work_dir = str(tmp_path / 'work')
    config = str(tmp_path / 'distill.py')
    cfg.dump(config)
    runner = RUNNERS.build(Config.fromfile(config))
    runner.train()
    distiller = runner.model.eval()
    return distiller, config, osp.join(cfg.work_dir, 'epoch_1.pth')


@pytest.mark.slow
@pytest.mark.parametrize('name', list(STUDENTS))
def test_extracted_student_predicts_like_the_distiller(tmp_path, name):
    distiller, config, checkpoint = _distil(tmp_path, name)
    out = tmp_path / 'student'
    run_command([sys.executable, TOOL, config, checkpoint, str(out)])
    files = {p.name for p in out.iterdir()}
    assert {'student.pth', 'student_config.py', 'backbone.pth'} <= files

    # (a) mmpretrain loads it, strictly and without warnings.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        model = get_model(str(out / 'student_config.py'),
                          pretrained=str(out / 'student.pth'))
    assert not [w for w in caught if 'state' in str(w.message).lower()
                or 'checkpoint' in str(w.message).lower()]
    load_checkpoint(model, str(out / 'student.pth'), strict=True)
    assert not any('projector' in k or 'teacher' in k
                   for k in torch.load(out / 'student.pth')['state_dict'])

    batch = make_batch(4, seed=1)
    with torch.no_grad():
        data = distiller.data_preprocessor(batch, False)
        expected = distiller(data['inputs'], data['data_samples'],
                             mode='predict')
        data = model.data_preprocessor(batch, False)
        got = model(data['inputs'], data['data_samples'], mode='predict')
    for want, have in zip(expected, got):
        torch.testing.assert_close(have.pred_score, want.pred_score)
        assert int(have.pred_label) == int(want.pred_label)

    # ... and so does its inferencer, on a plain image array.
    image = np.random.RandomState(0).randint(
        0, 256, (IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.uint8)
    inferencer = ImageClassificationInferencer(
        str(out / 'student_config.py'), pretrained=str(out / 'student.pth'))
    result = inferencer(image)[0]
    with torch.no_grad():
        data = distiller.data_preprocessor(
            dict(inputs=[torch.from_numpy(image).permute(2, 0, 1)]), False)
        want = distiller(data['inputs'], mode='predict')[0]
    np.testing.assert_allclose(result['pred_scores'],
                               want.pred_score.numpy(), rtol=1e-5,
                               atol=1e-6)

    # (b) the backbone alone, as mmdet / mmseg initialise a backbone.
    backbone_cfg = Config.fromfile(config).model.student.backbone.to_dict()
    backbone_cfg['init_cfg'] = dict(
        type='Pretrained', checkpoint=str(out / 'backbone.pth'),
        prefix='backbone.')
    backbone = MODELS.build(backbone_cfg)
    backbone.init_weights()
    want_backbone = distiller.student.backbone.state_dict()
    have_backbone = backbone.state_dict()
    assert have_backbone.keys() == want_backbone.keys()
    for key, value in want_backbone.items():
        torch.testing.assert_close(have_backbone[key], value)

    # (c) timm students: a file timm itself loads strictly.
    if name.startswith('timm-'):
        import timm
        path = out / 'mobilenetv1_100.safetensors'
        assert path.name in files
        timm_model = timm.create_model(
            'mobilenetv1_100', pretrained=True, num_classes=NUM_CLASSES,
            pretrained_cfg_overlay=dict(file=str(path),
                                        num_classes=NUM_CLASSES)).eval()
        assert set(load_file(str(path))) == set(timm_model.state_dict())
        with torch.no_grad():
            data = distiller.data_preprocessor(batch, False)
            torch.testing.assert_close(
                timm_model(data['inputs']),
                distiller.student(data['inputs'], mode='tensor'))
    else:
        assert not any(f.endswith('.safetensors') for f in files)


def test_a_checkpoint_without_a_student_is_refused(tmp_path):
    path = tmp_path / 'other.pth'
    torch.save(dict(state_dict={'backbone.conv.weight': torch.zeros(1)}),
               path)
    result = run_command(
        [sys.executable, TOOL, SMOKE_CONFIG, str(path),
         str(tmp_path / 'out')], check=False)
    assert result.returncode != 0
    assert 'no `student.*` weights' in result.stderr
