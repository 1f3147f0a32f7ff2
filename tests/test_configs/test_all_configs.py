"""Every config in configs/ parses and builds; every config that trains
something of its own takes one training step on CPU.

Three kinds of config: ScaleKD, and its two baselines: logit distillation
only (``logit-kd_*``) and the student alone (``student_*``). The ScaleKD
configs, and the quick start's and smoke run's configs of every kind, take
one real training step at the config's own input size. The shipped
baselines are their ScaleKD config with the feature stages set to None, or
that config's student and recipe alone: they are checked to be exactly that,
and to build; the step of their ScaleKD config has trained the same student
with the same teacher and recipe.

Real teacher weights cannot be downloaded here: every config that names a
teacher gets the one random-weight network of it that the test run builds
(``shared_teacher`` in tests/conftest.py), so Swin-L and EVA-L are built once.
"""
import copy
import functools
import glob
import os.path as osp
import re

import pytest
import torch
from mmengine.config import Config
from mmengine.dataset import Compose
from mmengine.optim import build_optim_wrapper
from mmengine.registry import init_default_scope

from mmpretrain.registry import MODELS
from mmpretrain.structures import DataSample

from tests.conftest import (REPO_ROOT, shared_base_variables, shared_teacher,
                            with_shared_teacher)

# Every shipped model is built (Swin-L and EVA-L teachers among them): many
# minutes on a CPU.
pytestmark = pytest.mark.slow

CONFIGS = sorted(
    glob.glob(osp.join(REPO_ROOT, 'configs', '**', '*.py'), recursive=True))
CONFIGS = [c for c in CONFIGS if '_base_' not in c]
SHIPPED = osp.join(REPO_ROOT, 'configs', 'scalekd')


def config_id(path):
    return osp.relpath(path, osp.join(REPO_ROOT, 'configs'))


def shipped(prefix):
    return [c for c in CONFIGS if c.startswith(osp.join(SHIPPED, prefix))]


# The shipped baselines; everything else trains in the step test.
LOGIT_KD = shipped('logit-kd_')
STUDENT_ALONE = shipped('student_')
STEPPED = [c for c in CONFIGS if c not in LOGIT_KD + STUDENT_ALONE]


RUNTIME = Config.fromfile(osp.join(REPO_ROOT, 'configs', '_base_',
                                   'scalekd_runtime.py'))
RUNTIME_HOOKS = [h['type'] for h in RUNTIME.custom_hooks]


@functools.lru_cache(maxsize=None)
def parse(path) -> Config:
    """The config, parsed once per test run (the baselines' checks read
    their ScaleKD configs again)."""
    return Config.fromfile(path)


def load(path) -> Config:
    """The config as a user's run reads it, checked as every run needs."""
    cfg = copy.deepcopy(parse(path))
    init_default_scope(cfg.get('default_scope', 'mmpretrain'))
    # mmengine's own Runner, with the hooks of configs/_base_/scalekd_runtime.py
    assert 'runner_type' not in cfg
    assert [h['type'] for h in cfg.custom_hooks
            if h['type'] != 'EMAHook'] == RUNTIME_HOOKS
    assert cfg.work_dir_lock == RUNTIME.work_dir_lock
    assert 'mmscalekd' in cfg.custom_imports['imports']
    # The training pipeline of the config builds.
    Compose(cfg.train_dataloader.dataset.pipeline)
    # torch's SGD and AdamW run as one fused kernel in every shipped config
    # (the same update, faster; docs/benchmarks.md). Lamb has no fused
    # version; the quick start and smoke configs keep the plain update their
    # recorded results were measured with.
    optimizer = cfg.optim_wrapper.optimizer
    if path.startswith(SHIPPED) and optimizer.type in ('SGD', 'AdamW'):
        assert optimizer.get('fused') is True, optimizer
    return cfg


def build_model(cfg):
    model_cfg = cfg.model.to_dict()
    if model_cfg['type'] == 'ScaleKDDistiller':
        model_cfg = with_shared_teacher(model_cfg)
    if cfg.get('data_preprocessor') is not None:
        model_cfg.setdefault('data_preprocessor',
                             cfg.data_preprocessor.to_dict())
    torch.manual_seed(0)
    return MODELS.build(model_cfg)


def flatten(value, prefix=''):
    """``{'a': {'b': 1}}`` -> ``{'a.b': 1}``, for naming differences."""
    if not isinstance(value, dict):
        return {prefix: value}
    flat = {}
    for key, item in value.items():
        flat.update(flatten(item, f'{prefix}.{key}' if prefix else key))
    return flat


def differences(a: dict, b: dict):
    a, b = flatten(a), flatten(b)
    return sorted(k for k in a.keys() | b.keys()
                  if a.get(k, '<absent>') != b.get(k, '<absent>'))


def test_configs_are_found():
    names = {config_id(c) for c in CONFIGS}
    assert 'smoke/scalekd_smoke_synthetic.py' in names
    assert 'scalekd/scalekd_swin-l_resnet50_8xb32_in1k.py' in names
    # Every shipped baseline has the ScaleKD config it is measured against.
    assert LOGIT_KD and STUDENT_ALONE
    for path in LOGIT_KD:
        assert osp.isfile(path.replace('logit-kd_', 'scalekd_')), path
    for path in STUDENT_ALONE:
        assert scalekd_configs_of(path), path


@pytest.mark.parametrize('path', CONFIGS, ids=config_id)
def test_config_states_its_global_batch(path):
    """``auto_scale_lr.base_batch_size`` is the global batch the lr is meant
    for: GPUs x batch per GPU as the name says (``8xb32``), else (the quick
    start and smoke run, one process) the batch itself."""
    cfg = parse(path)
    named = re.search(r'_(\d+)xb(\d+)', osp.basename(path))
    expected = int(named[1]) * int(named[2]) if named else \
        cfg.train_dataloader.batch_size
    assert cfg.auto_scale_lr.base_batch_size == expected
    # and the name's batch per GPU is the one the config trains with
    if named:
        assert cfg.train_dataloader.batch_size == int(named[2])


def make_batch(batch_size, size, num_classes):
    return dict(
        inputs=list(
            torch.randint(0, 256, (batch_size, 3, size, size),
                          dtype=torch.uint8)),
        data_samples=[
            DataSample().set_gt_label(i % num_classes)
            for i in range(batch_size)
        ])


@pytest.mark.parametrize('path', STEPPED, ids=config_id)
def test_config_takes_a_training_step(path):
    cfg = load(path)
    model_cfg = cfg.model
    distiller = model_cfg.type == 'ScaleKDDistiller'
    teacher = shared_teacher(model_cfg.teacher.config) if distiller else None
    model = build_model(cfg)
    model.init_weights()  # as the runner does
    optim_wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
    student = model.student if distiller else model

    # Batch 1 under the largest teachers (Swin-L, EVA-L) keeps the suite
    # fast; 2 elsewhere. Every path runs either way.
    large = teacher is not None and sum(
        p.numel() for p in teacher.parameters()) > 150_000_000
    # the distiller's input_size, else the config's image_size, else 224
    size = model_cfg.get('input_size', cfg.get('image_size', 224))
    batch = make_batch(1 if large else 2, size, student.head.num_classes)
    teacher_before = {} if teacher is None else {
        k: v.clone() for k, v in teacher.state_dict().items()}
    student_before = {
        k: v.clone() for k, v in student.state_dict().items()}
    model.train()
    log_vars = model.train_step(batch, optim_wrapper)

    losses = {k for k in log_vars if k.startswith('loss')}
    if not distiller:  # the student alone
        assert losses == {'loss'}
    else:
        expected = {'loss', 'loss_cls'}
        if model_cfg.get('logit_kd'):
            expected.add('loss_kd')
        assert expected <= losses, losses
        # ScaleKD: loss terms of both feature stages; logit KD only: none.
        for stage in ('perception', 'final'):
            terms = {k for k in losses if k.startswith(f'loss_{stage}_')}
            assert bool(terms) == (model_cfg.get(f'{stage}_stage')
                                   is not None), (stage, losses)
    assert all(torch.isfinite(v) for v in log_vars.values()), log_vars
    for key, value in teacher_before.items():
        assert torch.equal(teacher.state_dict()[key], value), key
    changed = [
        k for k, v in student.state_dict().items()
        if not torch.equal(v, student_before[k])
    ]
    assert any(k.startswith('backbone.') for k in changed)
    assert any(k.startswith('head.') for k in changed)


@pytest.mark.parametrize('path', LOGIT_KD, ids=config_id)
def test_logit_kd_baseline_is_its_scalekd_config_without_stages(path):
    cfg = load(path)
    scalekd = parse(path.replace('logit-kd_', 'scalekd_'))
    assert cfg.model.perception_stage is None
    assert cfg.model.final_stage is None
    assert cfg.model.logit_kd.type == 'LogitKDLoss'
    assert not [
        k for k in differences(cfg.to_dict(), scalekd.to_dict())
        if not k.startswith(('model.perception_stage', 'model.final_stage',
                             'model.logit_kd'))
    ]
    model = build_model(cfg)
    # Logit distillation only: the student is all that trains or is saved.
    assert set(model.state_dict()) == {
        f'student.{k}' for k in model.student.state_dict()}
    assert {n for n, p in model.named_parameters() if p.requires_grad} == {
        f'student.{n}' for n, _ in model.student.named_parameters()}


def scalekd_configs_of(student_alone):
    """The shipped ScaleKD configs that train this student config's
    student (``student_<student>.py`` -> ``scalekd_<teacher>_<student>.py``)."""
    suffix = '_' + osp.basename(student_alone)[len('student_'):]
    return [c for c in shipped('scalekd_') if c.endswith(suffix)]


# What a ScaleKD config may add to its student's own recipe: the distiller,
# the authors' gradient clipping of distillation runs, SyncBN, and the
# variables of the bases the ScaleKD configs share.
DISTILLATION_ONLY = ('model', 'optim_wrapper.clip_grad', 'sync_bn',
                     *shared_base_variables())


@pytest.mark.parametrize('path', STUDENT_ALONE, ids=config_id)
def test_student_baseline_is_the_student_of_its_scalekd_configs(path):
    cfg = load(path)
    for scalekd in map(parse, scalekd_configs_of(path)):
        assert cfg.model.to_dict() == scalekd.model.student.to_dict()
        assert not [
            k for k in differences(cfg.to_dict(), scalekd.to_dict())
            if not k.startswith(DISTILLATION_ONLY)
        ]
    model = build_model(cfg)
    assert model.head.num_classes == 1000
