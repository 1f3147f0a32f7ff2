"""Pairs that are not released: the written configs build and train one
step (random weights, small images)."""
import os.path as osp

import pytest
import torch
from mmengine.config import Config

from mmscalekd.config_builder import data_settings, plan_pair, write_pair
from mmscalekd.config_builder.check import check_config
from tests.conftest import build_runner

pytestmark = pytest.mark.slow

# The ImageNet heads of the recipes and teachers: logit KD and its baseline
# are written.
NUM_CLASSES = 1000
BATCH = 2

PAIRS = {
    'vit-base_resnet18': dict(
        teacher='mmpretrain::vision_transformer/vit-base-p16_64xb64_in1k.py',
        student='mmpretrain::resnet/resnet18_8xb32_in1k.py',
        input_size=64, taps=('backbone.layer3', 'backbone.layer4'),
        split=9),
    'swin-tiny_mobilenet-v2': dict(
        teacher='mmpretrain::swin_transformer/swin-tiny_16xb64_in1k.py',
        student='mmpretrain::mobilenet_v2/mobilenet-v2_8xb32_in1k.py',
        # Swin's 7x7 windows need a 7x7 last stage
        # conv2: mmpretrain's MobileNet-V2 lists its last 1x1 conv as a layer
        input_size=224, taps=('backbone.layer5', 'backbone.conv2'),
        split=2),
    'deit-small_convnext-atto': dict(
        teacher='mmpretrain::deit/deit-small_4xb256_in1k.py',
        student='timm/convnext_atto',
        recipe='mmpretrain::convnext/convnext-tiny_32xb128_in1k.py',
        input_size=64,
        taps=('backbone.model.stages.2', 'backbone.model.stages.3'),
        split=9),
    'beit-base_mixer-s16': dict(
        teacher='mmpretrain::beit/benchmarks/beit-base-p16_8xb64_in1k.py',
        student='timm/mixer_s16_224',
        recipe='mmpretrain::mlp_mixer/mlp-mixer-base-p16_64xb64_in1k.py',
        input_size=224,
        taps=('backbone.model.blocks.5', 'backbone.model.blocks.7'),
        split=9),
    'convnext-tiny_resnet34': dict(
        teacher='mmpretrain::convnext/convnext-tiny_32xb128_in1k.py',
        student='mmpretrain::resnet/resnet34_8xb32_in1k.py',
        input_size=64, taps=('backbone.layer3', 'backbone.layer4'),
        split=2),
    'timm-vit-tiny_timm-resnet10t': dict(
        teacher='timm/vit_tiny_patch16_224',
        student='timm/resnet10t',
        recipe='mmpretrain::resnet/resnet18_8xb32_in1k.py',
        input_size=96, taps=('backbone.model.layer3',
                             'backbone.model.layer4'),
        split=9),
}


def _data_config(tmp_path, input_size: int) -> str:
    """Two synthetic images of the pair's size: one epoch is one step."""
    loader = dict(
        batch_size=BATCH, num_workers=0, persistent_workers=False,
        dataset=dict(type='SyntheticClassificationDataset',
                     num_samples=BATCH, num_classes=NUM_CLASSES,
                     image_size=input_size, seed=0,
                     pipeline=[dict(type='PackInputs')]),
        sampler=dict(type='DefaultSampler', shuffle=False))
    path = tmp_path / 'data.py'
    Config(dict(train_dataloader=loader, val_dataloader=loader,
                val_evaluator=dict(type='Accuracy', topk=(1, )),
                test_dataloader=loader,
                test_evaluator=dict(type='Accuracy', topk=(1, )))).dump(
                    str(path))
    return str(path)


def _one_step(path: str, work_dir) -> dict:
    cfg = Config.fromfile(path)
    cfg.work_dir = str(work_dir)
    cfg.train_cfg = dict(by_epoch=True, max_epochs=1, val_interval=10)
    # The recipes' schedules span their 100-300 epochs.
    cfg.param_scheduler = None
    cfg.default_hooks.checkpoint = dict(type='CheckpointHook', interval=10)
    runner = build_runner(cfg)
    runner.train()
    return runner


@pytest.mark.parametrize('pair', sorted(PAIRS))
def test_written_configs_train_one_step(pair, tmp_path):
    spec = PAIRS[pair]
    plan = plan_pair(spec['teacher'], spec['student'],
                     recipe=spec.get('recipe'),
                     data=data_settings(_data_config(tmp_path,
                                                     spec['input_size'])),
                     num_classes=NUM_CLASSES,
                     input_size=spec['input_size'])
    assert plan.model['perception_stage']['student_tap'] == spec['taps'][0]
    assert plan.model['final_stage']['student_tap'] == spec['taps'][1]
    assert plan.model['perception_stage']['teacher_split'] == spec['split']
    paths = write_pair(plan, str(tmp_path / 'own'))
    assert sorted(paths) == ['logit_kd', 'scalekd', 'student']
    report = '\n'.join(check_config(paths['scalekd'], BATCH))
    assert 'max relative error' in report
    for kind in ('scalekd', 'logit_kd', 'student'):
        runner = _one_step(paths[kind], tmp_path / kind)
        assert runner.iter == 1
        weights = torch.cat([p.detach().flatten()
                             for p in runner.model.parameters()])
        assert torch.isfinite(weights).all()
    assert osp.isfile(paths['student'])
