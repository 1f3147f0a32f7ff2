"""Every config in configs/ builds and takes one training step on CPU.

Real teacher weights cannot be downloaded here, so the teacher checkpoint is
replaced by a random-weight checkpoint of the same teacher, saved once per
teacher and loaded strictly; all else is the config as a user runs it, at the config's own input size. Three
kinds of config: ScaleKD, and its two baselines: logit distillation only
(``logit-kd_*``) and the student alone (``student_*``).
"""
import glob
import os.path as osp

import pytest
import torch
from mmengine.config import Config
from mmengine.dataset import Compose
from mmengine.optim import build_optim_wrapper
from mmengine.registry import init_default_scope

from mmpretrain.registry import MODELS
from mmpretrain.structures import DataSample

from tests.conftest import REPO_ROOT

CONFIGS = sorted(
    glob.glob(osp.join(REPO_ROOT, 'configs', '**', '*.py'), recursive=True))
CONFIGS = [c for c in CONFIGS if '_base_' not in c]


_TEACHER_FILES = {}


def teacher_checkpoint(teacher_config, tmp_path_factory):
    """A random-weight checkpoint of the config's teacher, made once.

    Many configs share a teacher (Swin-L, EVA-L). Its random
    ``init_weights`` costs up to half a minute on a CPU, a strict load of a
    saved state dict a second; loading also runs the real path a user's
    teacher checkpoint takes.
    """
    from mmscalekd.models.distillers import load_teacher_model_config
    model_cfg = load_teacher_model_config(teacher_config)
    key = repr(sorted(model_cfg.items(), key=lambda item: item[0]))
    if key not in _TEACHER_FILES:
        torch.manual_seed(0)
        teacher = MODELS.build(model_cfg)
        path = tmp_path_factory.mktemp('teacher') / 'teacher.pth'
        torch.save(teacher.state_dict(), path)
        _TEACHER_FILES[key] = str(path)
    return _TEACHER_FILES[key]


def config_id(path):
    return osp.relpath(path, osp.join(REPO_ROOT, 'configs'))


def test_configs_are_found():
    names = {config_id(c) for c in CONFIGS}
    assert 'smoke/scalekd_smoke_synthetic.py' in names
    assert 'scalekd/scalekd_swin-l_resnet50_8xb32_in1k.py' in names


@pytest.mark.slow
@pytest.mark.parametrize('path', CONFIGS, ids=config_id)
def test_config_builds_and_takes_a_training_step(path, tmp_path_factory):
    cfg = Config.fromfile(path)
    init_default_scope(cfg.get('default_scope', 'mmpretrain'))
    assert cfg.runner_type == 'ScaleKDRunner'
    assert 'mmscalekd' in cfg.custom_imports['imports']
    # The training pipeline of the config builds.
    Compose(cfg.train_dataloader.dataset.pipeline)

    model_cfg = cfg.model.copy()
    distiller = model_cfg.type == 'ScaleKDDistiller'
    if distiller:
        model_cfg.teacher.checkpoint = teacher_checkpoint(
            model_cfg.teacher.config, tmp_path_factory)
    model_cfg.setdefault('data_preprocessor', cfg.get('data_preprocessor'))
    torch.manual_seed(0)
    model = MODELS.build(model_cfg)
    model.init_weights()
    # torch's SGD and AdamW run as one fused kernel in every ImageNet
    # config (the same update, faster; docs/benchmarks.md). Lamb has no
    # fused version; the quick start and smoke configs keep the plain
    # update their recorded results were measured with.
    optimizer = cfg.optim_wrapper.optimizer
    fused = optimizer.type in ('SGD', 'AdamW') and path.startswith(
        osp.join(REPO_ROOT, 'configs', 'scalekd'))
    if fused:
        assert optimizer.get('fused') is True, optimizer
    optim_wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
    if fused:
        assert optim_wrapper.optimizer.defaults['fused'] is True
    student = model.student if distiller else model

    # Batch 1 for the largest teachers (Swin-L, BEiT-L) keeps the suite
    # fast; 2 elsewhere. Every path runs either way.
    large = distiller and sum(
        p.numel() for p in model.teacher.parameters()) > 150_000_000
    batch_size = 1 if large else 2
    # the distiller's input_size, else the config's image_size, else 224
    size = model_cfg.get('input_size', cfg.get('image_size', 224))
    num_classes = student.head.num_classes
    batch = dict(
        inputs=list(
            torch.randint(0, 256, (batch_size, 3, size, size),
                          dtype=torch.uint8)),
        data_samples=[
            DataSample().set_gt_label(i % num_classes)
            for i in range(batch_size)
        ])
    frozen = model.teacher if distiller else torch.nn.Module()
    teacher_before = {k: v.clone() for k, v in frozen.state_dict().items()}
    student_before = {
        k: v.clone()
        for k, v in student.state_dict().items()
    }
    model.train()
    log_vars = model.train_step(batch, optim_wrapper)

    if not distiller:  # a baseline: the student alone
        expected = ('loss', )
    elif model.distill_features:  # ScaleKD
        expected = ('loss_cls', 'loss_perception_spatial',
                    'loss_final_spatial')
    else:  # a baseline: logit distillation only
        expected = ('loss_cls', 'loss_kd')
    for key in expected:
        assert key in log_vars, key
    assert all(torch.isfinite(v) for v in log_vars.values())
    assert all(
        torch.equal(v, teacher_before[k])
        for k, v in frozen.state_dict().items())
    changed = [
        k for k, v in student.state_dict().items()
        if not torch.equal(v, student_before[k])
    ]
    assert any(k.startswith('backbone.') for k in changed)
