"""Tiny real models (mmpretrain Swin and ResNet) shared by the tests."""
import copy
import importlib.util
import os
import os.path as osp
import subprocess
import sys

import pytest
import torch
from mmengine.config import Config

import mmscalekd  # noqa: F401  (registers the package)

REPO_ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
SMOKE_CONFIG = osp.join(REPO_ROOT, 'configs', 'smoke',
                        'scalekd_smoke_synthetic.py')

# The tests use the shipped smoke config's tiny networks: a 4-stage Swin on
# 64 px images (16, 8, 4, 2 tokens a side; 32, 64, 128, 256 channels) and a
# ResNet-18 with 16 base channels (stage 3: 64 ch @ 4x4, stage 4: 128 @ 2x2).
_SMOKE = Config.fromfile(SMOKE_CONFIG)
NUM_CLASSES = _SMOKE.num_classes
IMAGE_SIZE = _SMOKE.image_size


def tiny_swin_teacher(**backbone):
    cfg = _SMOKE.teacher.to_dict()
    cfg['backbone'].update(backbone)
    return cfg


def tiny_resnet_student():
    return _SMOKE.student.to_dict()


def distiller_cfg(**overrides):
    cfg = _SMOKE.model.to_dict()
    cfg['data_preprocessor'] = _SMOKE.data_preprocessor.to_dict()
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(cfg.get(key), dict):
            cfg[key] = {**cfg[key], **value}
        else:
            cfg[key] = value
    return copy.deepcopy(cfg)


def build_distiller(**overrides):
    from mmpretrain.registry import MODELS
    torch.manual_seed(0)
    return MODELS.build(distiller_cfg(**overrides))


def make_batch(batch_size=4, seed=0):
    """A (data_preprocessor-ready) batch as mmengine data loaders give it."""
    from mmpretrain.structures import DataSample
    generator = torch.Generator().manual_seed(seed)
    images = torch.randint(
        0, 256, (batch_size, 3, IMAGE_SIZE, IMAGE_SIZE),
        generator=generator, dtype=torch.uint8)
    samples = [
        DataSample().set_gt_label(i % NUM_CLASSES) for i in range(batch_size)
    ]
    return dict(inputs=list(images), data_samples=samples)


@pytest.fixture
def distiller():
    return build_distiller()


def load_tool(path: str):
    """Import a script under ``tools/`` (not a package) as a module."""
    name = osp.splitext(osp.basename(path))[0]
    spec = importlib.util.spec_from_file_location(f'tools_{name}', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_command(cmd, check=True, **kwargs):
    """Run a tool as a user would, on this checkout's source.

    ``python tools/x.py`` puts ``tools/`` first on ``sys.path`` and would
    otherwise import whichever mmscalekd is installed.
    """
    env = dict(
        os.environ,
        PYTHONPATH=os.pathsep.join([REPO_ROOT,
                                    os.environ.get('PYTHONPATH', '')]),
        PATH=osp.dirname(sys.executable) + os.pathsep + os.environ['PATH'],
        PYTHON=sys.executable)
    kwargs.setdefault('timeout', 600)
    result = subprocess.run(
        cmd, cwd=REPO_ROOT, env=env, capture_output=True, text=True,
        **kwargs)
    if check:
        assert result.returncode == 0, (
            result.stdout[-3000:] + result.stderr[-5000:])
    return result


_RUNS = iter(range(10**6))


def smoke_config(work_dir, num_samples=64, max_epochs=1, validate=False,
                 **options):
    """The smoke config as a short run in ``work_dir``.

    64 samples are two iterations an epoch; every epoch is checkpointed and
    kept. Each config gets its own experiment name, so mmengine's logger and
    message hub (global instances looked up by that name) never carry one
    run's state into the next run of the same test process.
    """
    cfg = Config.fromfile(SMOKE_CONFIG)
    cfg.work_dir = str(work_dir)
    cfg.experiment_name = f'test_run_{next(_RUNS)}_{os.getpid()}'
    cfg.train_dataloader.dataset.num_samples = num_samples
    cfg.train_cfg.max_epochs = max_epochs
    cfg.default_hooks.checkpoint.max_keep_ckpts = -1
    if not validate:
        cfg.val_cfg = cfg.val_dataloader = cfg.val_evaluator = None
        cfg.train_cfg.val_interval = 10**6
    cfg.merge_from_dict(options)
    return cfg


def load_checkpoint(path):
    """A training checkpoint, read as training code reads it."""
    from mmscalekd.utils import MMENGINE_CHECKPOINT_GLOBALS
    with torch.serialization.safe_globals(MMENGINE_CHECKPOINT_GLOBALS):
        return torch.load(path, weights_only=True)


@pytest.fixture(scope='session')
def one_epoch_run(tmp_path_factory):
    """Work dir of a one-epoch smoke run (epoch_1.pth), shared: read it,
    copy it, never change it."""
    work_dir = tmp_path_factory.mktemp('one_epoch_run')
    build_runner(smoke_config(work_dir, max_epochs=1)).train()
    return work_dir


def build_runner(cfg):
    from mmengine.registry import RUNNERS
    return RUNNERS.build(cfg)


def run_log(runner) -> str:
    """Everything the run logged to its log file."""
    with open(osp.join(runner.log_dir, f'{runner.timestamp}.log')) as f:
        return f.read()
