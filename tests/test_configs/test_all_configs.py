"""Every config in configs/ builds and takes one training step on CPU.

Real teacher weights cannot be downloaded here, so the teacher checkpoint is
set to None (a random teacher, which the distiller announces loudly); all
else is the config as a user runs it, at the config's own input size.
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


def config_id(path):
    return osp.relpath(path, osp.join(REPO_ROOT, 'configs'))


def test_configs_are_found():
    names = {config_id(c) for c in CONFIGS}
    assert 'smoke/scalekd_smoke_synthetic.py' in names
    assert 'scalekd/scalekd_swin-l_resnet50_8xb32_in1k.py' in names


@pytest.mark.slow
@pytest.mark.parametrize('path', CONFIGS, ids=config_id)
def test_config_builds_and_takes_a_training_step(path):
    cfg = Config.fromfile(path)
    init_default_scope(cfg.get('default_scope', 'mmpretrain'))
    assert cfg.runner_type == 'ScaleKDRunner'
    assert 'mmscalekd' in cfg.custom_imports['imports']
    # The training pipeline of the config builds.
    Compose(cfg.train_dataloader.dataset.pipeline)

    model_cfg = cfg.model.copy()
    model_cfg.teacher.checkpoint = None
    model_cfg.setdefault('data_preprocessor', cfg.get('data_preprocessor'))
    torch.manual_seed(0)
    model = MODELS.build(model_cfg)
    model.init_weights()
    optim_wrapper = build_optim_wrapper(model, cfg.optim_wrapper)

    size = model_cfg.get('input_size', 224)
    num_classes = model.student.head.num_classes
    batch = dict(
        inputs=list(torch.randint(0, 256, (2, 3, size, size),
                                  dtype=torch.uint8)),
        data_samples=[
            DataSample().set_gt_label(i % num_classes) for i in range(2)
        ])
    teacher_before = {
        k: v.clone()
        for k, v in model.teacher.state_dict().items()
    }
    student_before = {
        k: v.clone()
        for k, v in model.student.state_dict().items()
    }
    model.train()
    log_vars = model.train_step(batch, optim_wrapper)

    for key in ('loss_cls', 'loss_perception_spatial', 'loss_final_spatial'):
        assert key in log_vars, key
    assert all(torch.isfinite(v) for v in log_vars.values())
    assert all(
        torch.equal(v, teacher_before[k])
        for k, v in model.teacher.state_dict().items())
    changed = [
        k for k, v in model.student.state_dict().items()
        if not torch.equal(v, student_before[k])
    ]
    assert any(k.startswith('backbone.') for k in changed)
