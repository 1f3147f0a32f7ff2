"""The ScaleKD authors' released students -> mmpretrain (and timm) files.

Every family is laid out as their distiller saves it (``student.`` beside
``teacher.``, ``distill_losses.`` projectors, their unused ``linear``,
mmengine's meta / optimizer / message hub, an EMA copy where they train
with EMA), converted, loaded strictly from the written config, and must
predict what the source network predicts."""
import copy
import os.path as osp
import pickle
import re
import sys

import numpy as np
import pytest
import timm
import torch
import torch.nn as nn
from mmengine.config import Config
from mmengine.logging import MessageHub
from mmengine.registry import init_default_scope
from mmengine.runner import load_checkpoint
from PIL import Image

from mmpretrain.registry import MODELS

from mmscalekd.engine.official_students import (FAMILIES,
                                                convert_official_student,
                                                infer_family)
from tests.conftest import run_command, tiny_swin_teacher

TOOL = 'tools/model_converters/scalekd_official_student.py'
NUM_CLASSES = 7

# Narrower networks with every key name of the released ones (the same
# depths and module names; only widths differ), as `--cfg-options` of the
# written config (`_delete_`: an arch dict in place of the arch name).
# MobileNet-V1 is converted at full size.
_VIT = dict(_delete_=True, embed_dims=32, num_layers=12, num_heads=2,
            feedforward_channels=64)
_MIXER = dict(_delete_=True, embed_dims=32, tokens_mlp_dims=16,
              channels_mlp_dims=64)
NARROW = {
    'resnet50-d': {'model.backbone.stem_channels': 16,
                   'model.backbone.base_channels': 8,
                   'model.head.in_channels': 256},
    'mobilenet-v1': {},
    'convnext-tiny': {'model.backbone.arch': dict(
        _delete_=True, depths=[3, 3, 9, 3], channels=[8, 16, 32, 64]),
        'model.head.in_channels': 64},
    'mixer-s16': {'model.backbone.arch': dict(_MIXER, num_layers=8),
                  'model.head.in_channels': 32},
    'mixer-b16': {'model.backbone.arch': dict(_MIXER, num_layers=12),
                  'model.head.in_channels': 32},
    'mixer-b14': {'model.backbone.arch': dict(_MIXER, num_layers=12),
                  'model.head.in_channels': 32},
    'vit-small': {'model.backbone.arch': _VIT, 'model.head.in_channels': 32},
    'vit-base': {'model.backbone.arch': _VIT, 'model.head.in_channels': 32},
    'vit-base-p14': {'model.backbone.arch': _VIT,
                     'model.head.in_channels': 32},
    'swin-tiny': {'model.backbone.arch': dict(
        _delete_=True, embed_dims=8, depths=[2, 2, 6, 2],
        num_heads=[1, 2, 4, 8]),
        'model.head.in_channels': 64},
}
# The families trained with mmengine's EMAHook in the authors' configs.
EMA = {'convnext-tiny', 'vit-small', 'vit-base'}


# ------------------------------------------------ the authors' networks
def _conv_bn(inp, oup, stride):
    return nn.Sequential(
        nn.Conv2d(inp, oup, 3, stride, 1, bias=False), nn.BatchNorm2d(oup),
        nn.ReLU(inplace=True))


def _conv_dw(inp, oup, stride):
    return nn.Sequential(
        nn.Conv2d(inp, inp, 3, stride, 1, groups=inp, bias=False),
        nn.BatchNorm2d(inp), nn.ReLU(inplace=True),
        nn.Conv2d(inp, oup, 1, 1, 0, bias=False), nn.BatchNorm2d(oup),
        nn.ReLU(inplace=True))


class AuthorsMobileNetV1(nn.Module):
    """The cls_KD MobileNet-V1 classifier (stem + 13 depthwise-separable
    blocks with ReLU, average pooling, ``head.fc``), its blocks kept as
    ``model`` + ``s4`` or, in the four-stage split, ``s1``-``s4``."""

    BLOCKS = [(32, 64, 1), (64, 128, 2), (128, 128, 1), (128, 256, 2),
              (256, 256, 1), (256, 512, 2)] + [(512, 512, 1)] * 5 + [
                  (512, 1024, 2), (1024, 1024, 1)]

    def __init__(self, num_classes, split='model'):
        super().__init__()
        blocks = [_conv_bn(3, 32, 2)] + [_conv_dw(*b) for b in self.BLOCKS]
        cuts = dict(model=dict(model=12, s4=2),
                    stages=dict(s1=4, s2=4, s3=4, s4=2))[split]
        self.backbone = nn.Module()
        start = 0
        for name, count in cuts.items():
            setattr(self.backbone, name,
                    nn.Sequential(*blocks[start:start + count]))
            start += count
        self.order = list(cuts)
        self.head = nn.Module()
        self.head.fc = nn.Linear(1024, num_classes)

    def forward(self, x):
        for name in self.order:
            x = getattr(self.backbone, name)(x)
        return self.head.fc(x.mean((2, 3)))


def _their_vit_logits(network, images):
    """Their ViT forward: the position embedding added to [class token,
    patches], the class token dropped, the blocks, the final norm, then the
    patches' mean (through ``ln2`` under ``avg_token``) and the head."""
    backbone = network.backbone
    x, _ = backbone.patch_embed(images)
    token = backbone.cls_token.expand(x.shape[0], -1, -1)
    x = (torch.cat([token, x], dim=1) + backbone.pos_embed)[:, 1:]
    for layer in backbone.layers:
        x = layer(x)
    x = backbone.ln1(x).mean(dim=1)
    if hasattr(backbone, 'ln2'):
        x = backbone.ln2(x)
    return network.head.fc(x)


def _their_model_config(name, options):
    """Their student as mmpretrain builds it where the modules agree (their
    ResNet-50 head is a MultiLabelLinearClsHead; their ViTs hold a class
    token)."""
    cfg = Config(dict(model=copy.deepcopy(FAMILIES[name].model)))
    cfg.merge_from_dict({**copy.deepcopy(options),
                       'model.head.num_classes': NUM_CLASSES})
    model = cfg.model.to_dict()
    model.pop('data_preprocessor', None)
    if name == 'resnet50-d':
        model['head']['type'] = 'MultiLabelLinearClsHead'
        model['head'].pop('topk')
    if name.startswith('vit'):
        model['backbone']['with_cls_token'] = True
        if name == 'vit-base-p14':
            model['backbone']['out_type'] = 'avg_featmap'
            model['neck'] = None
    return model


def authors_student(name, options=None, seed=0, split='model'):
    """(network, logits function): one of their students, random weights
    with non-trivial norm statistics."""
    torch.manual_seed(seed)
    if name == 'mobilenet-v1':
        network = AuthorsMobileNetV1(NUM_CLASSES, split)
        logits = network
    else:
        init_default_scope('mmpretrain')
        network = MODELS.build(_their_model_config(name, options or {}))
        logits = ((lambda x: _their_vit_logits(network, x))
                  if name.startswith('vit') else
                  (lambda x: network(x, mode='tensor')))
    with torch.no_grad():
        for key, value in network.state_dict().items():
            if key.endswith(('running_mean', 'running_var', 'cls_token',
                             'pos_embed')):
                value.copy_(torch.rand_like(value) + 0.5)
    return network.eval(), logits


def authors_file(path, student, ema=False, transferred=False):
    """A checkpoint as their distiller and mmengine save it (or, with
    ``transferred``, as their pth_transfer.py rewrites it)."""
    teacher = MODELS.build(tiny_swin_teacher()).state_dict()
    state_dict = {f'student.{k}': v for k, v in student.items()}
    state_dict.update({f'teacher.{k}': v for k, v in teacher.items()})
    for loss in ('loss_fmd_s3', 'loss_fmd_s4'):
        for projector in ('projector_0', 'projector_1'):
            state_dict[f'distill_losses.{loss}.{projector}.pos_embed'] = (
                torch.randn(1, 49, 16))
    state_dict.update({'linear.weight': torch.randn(384, 384),
                       'linear.bias': torch.randn(384)})
    classes = tuple(f'class_{i}' for i in range(NUM_CLASSES))
    checkpoint = dict(
        meta=dict(mmengine_version='0.7.3', epoch=300, iter=375300,
                  seed=1234, experiment_name='swin-l_distill_s3_s4',
                  time='20240501_120000', dataset_meta=dict(classes=classes)),
        state_dict=state_dict,
        message_hub=MessageHub.get_instance('authors_run').state_dict(),
        optimizer=dict(state={}, param_groups=[dict(lr=0.0, params=[0])]),
        param_schedulers=[dict(last_epoch=300)])
    if ema:
        # EMAHook swaps the averaged weights into `state_dict` before
        # saving; the trained ones go to `ema_state_dict`.
        checkpoint['ema_state_dict'] = {
            f'module.{k}': v + 1 for k, v in state_dict.items()
            if v.is_floating_point()}
        checkpoint['ema_state_dict']['steps'] = torch.tensor(375300)
    if transferred:
        checkpoint['state_dict'] = dict(student)
        checkpoint.pop('optimizer')
    torch.save(checkpoint, path)
    return str(path)


def _images(batch=2, seed=3):
    return torch.randn(batch, 3, 224, 224,
                       generator=torch.Generator().manual_seed(seed))


def _load_written(written):
    cfg = Config.fromfile(written['config'])
    init_default_scope('mmpretrain')
    model = MODELS.build(cfg.model)
    load_checkpoint(model, written['checkpoint'], strict=True)
    return cfg, model.eval()


# ------------------------------------------------------------------ tests
@pytest.mark.parametrize('name', [n for n in FAMILIES if n != 'mobilenet-v1'])
def test_every_family_predicts_as_the_authors_network(tmp_path, name):
    network, logits = authors_student(name, NARROW[name])
    source = authors_file(tmp_path / 'theirs.pth', network.state_dict(),
                          ema=name in EMA)
    written = convert_official_student(
        source, str(tmp_path / 'out'), family=name,
        cfg_options=NARROW[name])
    assert written['family'] == name
    cfg, model = _load_written(written)
    images = _images()
    with torch.no_grad():
        torch.testing.assert_close(
            model(images, mode='tensor'), logits(images), atol=1e-5,
            rtol=1e-5)
    saved = torch.load(written['checkpoint'])
    assert not any(k.startswith(('teacher.', 'student.', 'distill_losses.',
                                 'linear.')) for k in saved['state_dict'])
    assert saved['meta']['official_family'] == name
    assert saved['meta']['ema_weights'] is (name in EMA)
    assert saved['meta']['epoch'] == 300
    assert len(saved['meta']['dataset_meta']['classes']) == NUM_CLASSES
    assert cfg.model.head.num_classes == NUM_CLASSES
    assert cfg.test_dataloader.dataset.data_prefix == 'val'
    assert [t['type'] for t in cfg.test_dataloader.dataset.pipeline] == [
        'LoadImageFromFile', 'ResizeEdge', 'CenterCrop', 'PackInputs']
    assert not osp.exists(osp.join(tmp_path, 'out', f'{name}.safetensors'))


def test_vit_class_token_and_its_position_are_dropped(tmp_path):
    network, _ = authors_student('vit-small', NARROW['vit-small'])
    theirs = network.state_dict()
    written = convert_official_student(
        authors_file(tmp_path / 'theirs.pth', theirs), str(tmp_path / 'out'),
        cfg_options=NARROW['vit-small'], family='vit-small')
    ours = torch.load(written['checkpoint'])['state_dict']
    assert tuple(theirs['backbone.pos_embed'].shape) == (1, 197, 32)
    assert 'backbone.cls_token' not in ours
    torch.testing.assert_close(ours['backbone.pos_embed'],
                               theirs['backbone.pos_embed'][:, 1:])


def test_pth_transfer_output_and_four_stage_mobilenet(tmp_path):
    # Their pth_transfer.py file (student keys without prefix, no
    # optimizer) of the four-stage MobileNet-V1 split.
    network, logits = authors_student('mobilenet-v1', split='stages')
    assert any(k.startswith('backbone.s3.') for k in network.state_dict())
    source = authors_file(tmp_path / 'theirs.pth', network.state_dict(),
                          transferred=True)
    written = convert_official_student(source, str(tmp_path / 'out'))
    assert written['family'] == 'mobilenet-v1'
    cfg, model = _load_written(written)
    assert cfg.model.type == 'TimmClassifier'
    images = _images()
    with torch.no_grad():
        torch.testing.assert_close(model(images, mode='tensor'),
                                   logits(images), atol=1e-5, rtol=1e-5)


@pytest.fixture(scope='module')
def converted_mobilenet(tmp_path_factory):
    """The cls_KD MobileNet-V1 laid out as their distiller saves it,
    converted by the tool without `--family`."""
    tmp = tmp_path_factory.mktemp('mobilenet')
    network, logits = authors_student('mobilenet-v1')
    source = authors_file(tmp / 'swin-l_distill_mbv1.pth',
                          network.state_dict())
    result = run_command([sys.executable, TOOL, source, str(tmp / 'out'),
                          '--name', 'mbv1_scalekd'])
    return tmp / 'out', network, logits, result.stdout


def test_tool_writes_mmpretrain_and_timm_files(converted_mobilenet):
    out, network, logits, stdout = converted_mobilenet
    assert 'family: mobilenet-v1' in stdout
    assert sorted(p.name for p in out.iterdir()) == [
        'mbv1_scalekd.pth', 'mbv1_scalekd.safetensors',
        'mbv1_scalekd_config.py']
    images = _images()
    with torch.no_grad():
        want = logits(images)
        _, model = _load_written(dict(
            config=str(out / 'mbv1_scalekd_config.py'),
            checkpoint=str(out / 'mbv1_scalekd.pth')))
        torch.testing.assert_close(model(images, mode='tensor'), want,
                                   atol=1e-5, rtol=1e-5)
        timm_model = timm.create_model(
            'mobilenetv1_100', pretrained=True, act_layer='relu',
            num_classes=NUM_CLASSES, pretrained_cfg_overlay=dict(
                file=str(out / 'mbv1_scalekd.safetensors'),
                num_classes=NUM_CLASSES)).eval()
        torch.testing.assert_close(timm_model(images), want, atol=1e-5,
                                   rtol=1e-5)


def test_tools_test_py_evaluates_a_converted_student(converted_mobilenet,
                                                     tmp_path):
    out, network, logits, _ = converted_mobilenet
    # Six images in class folders (one per class, as their README lays out
    # ImageNet val), at another size than 224.
    root = tmp_path / 'val'
    rng = np.random.RandomState(0)
    for index in range(6):
        folder = root / f'class_{index}'
        folder.mkdir(parents=True)
        Image.fromarray(rng.randint(0, 256, (300, 260, 3), dtype=np.uint8)
                        ).save(folder / f'{index}.png')
    predictions = tmp_path / 'predictions.pkl'
    result = run_command([
        sys.executable, 'tools/test.py', str(out / 'mbv1_scalekd_config.py'),
        str(out / 'mbv1_scalekd.pth'), '--work-dir', str(tmp_path / 'work'),
        '--out', str(predictions), '--cfg-options',
        'test_dataloader.dataset.type=CustomDataset',
        f'test_dataloader.dataset.data_root={tmp_path}',
        'test_dataloader.num_workers=0'])
    with open(predictions, 'rb') as f:
        results = pickle.load(f)
    assert len(results) == 6
    labels = [int(r['gt_label']) for r in results]
    assert labels == list(range(6))

    # The source network on the same pipeline's images.
    from mmpretrain.datasets import CustomDataset
    cfg = Config.fromfile(out / 'mbv1_scalekd_config.py')
    dataset = CustomDataset(data_root=str(tmp_path), data_prefix='val',
                            pipeline=cfg.test_pipeline)
    preprocessor = MODELS.build(cfg.model.data_preprocessor)
    batch = preprocessor(
        dict(inputs=[dataset[i]['inputs'] for i in range(6)]), False)
    with torch.no_grad():
        scores = logits(batch['inputs']).softmax(dim=1)
    torch.testing.assert_close(
        torch.stack([torch.as_tensor(r['pred_score']) for r in results]),
        scores, atol=1e-5, rtol=1e-4)
    top1 = 100 * float((scores.argmax(dim=1) == torch.tensor(labels)
                        ).float().mean())
    reported = re.search(r'accuracy/top1: ([\d.]+)',
                         result.stdout + result.stderr)
    assert reported, result.stdout[-2000:]
    assert float(reported.group(1)) == pytest.approx(top1, abs=1e-3)


@pytest.mark.parametrize('split', ['model', 'stages'])
def test_mobilenet_family_is_told_from_either_layout(split):
    network = AuthorsMobileNetV1(1000, split)
    assert infer_family(network.state_dict(), 'f') == 'mobilenet-v1'


def test_each_released_size_is_told_from_its_keys():
    # Full-size networks, in memory (built, never initialised or run).
    init_default_scope('mmpretrain')
    for name in FAMILIES:
        if name == 'mobilenet-v1':
            continue
        state_dict = MODELS.build(_their_model_config(name, {})).state_dict()
        assert infer_family(state_dict, 'f') == name


def test_tool_reports_bad_input_in_one_message(tmp_path):
    network, _ = authors_student('vit-small', NARROW['vit-small'])
    source = authors_file(tmp_path / 'theirs.pth', network.state_dict())
    result = run_command([sys.executable, TOOL, source, str(tmp_path / 'out'),
                          '--family', 'vit-small'], check=False)
    assert result.returncode == 1
    assert 'Traceback' not in result.stderr
    # The narrow ViT is not the released ViT-S: the shapes are listed.
    assert 'renamed as `--family vit-small`) does not hold' in result.stderr
    assert 'backbone.pos_embed: file (1, 196, 32), model (1, 196, 384)' in (
        result.stderr)
    assert not (tmp_path / 'out').exists()


def test_the_tools_family_names_are_the_librarys():
    from mmscalekd.engine.official_students import FAMILIES
    from tests.conftest import REPO_ROOT, load_tool
    tool = load_tool(osp.join(REPO_ROOT, 'tools', 'model_converters',
                               'scalekd_official_student.py'))
    assert tool.FAMILY_NAMES == tuple(FAMILIES)
