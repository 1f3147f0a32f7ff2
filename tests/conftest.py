"""Tiny real models (mmpretrain Swin and ResNet) shared by the tests."""
import copy
import glob
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


def shared_base_variables() -> dict:
    """Variable -> value, of the bases the shipped ScaleKD configs share
    (configs/_base_/scalekd/): keys of a merged config that no run reads."""
    variables = {}
    for path in sorted(glob.glob(
            osp.join(REPO_ROOT, 'configs', '_base_', 'scalekd', '*.py'))):
        variables.update(Config.fromfile(path).to_dict())
    return variables


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


# The shipped configs' teachers (Swin-L, EVA-L: 200-300 M parameters) take
# seconds to build and up to a minute to initialise on a CPU. A test run
# builds each once, keeps torch's constructor initialisation (random weights
# are all a build-and-step check needs; real ones cannot be downloaded here)
# and hands that network to every config that names the teacher, through
# the config's own path: `model.teacher.config` may be a model dict, which
# the registry builds, and its `type` may be a callable.
_TEACHERS = {}


def shared_teacher(config):
    """The teacher network of ``model.teacher.config`` (a config path such
    as ``'mmpretrain::swin_transformer/swin-large_16xb64_in1k.py'`` or a
    model dict), built once per test run. Tests must not change it."""
    key = repr(config)
    if key not in _TEACHERS:
        from mmengine.hub import get_config
        from mmpretrain.registry import MODELS
        if isinstance(config, str):
            config = (get_config(config) if '::' in config else
                      Config.fromfile(config)).model
        torch.manual_seed(0)
        network = MODELS.build(copy.deepcopy(config))
        # Built once, initialised once: the init_weights() that a distiller
        # calls on a random teacher leaves it as built.
        network.init_weights = lambda: None
        _TEACHERS[key] = network
    return _TEACHERS[key]


def with_shared_teacher(model_cfg: dict) -> dict:
    """A distiller's ``model`` dict whose teacher is :func:`shared_teacher`.

    The distiller builds, freezes and adapts that network as it would a
    network of its own; ``checkpoint=None`` (a random teacher) skips the
    strict load, which tests of the teacher checkpoint cover.
    """
    model_cfg = copy.deepcopy(model_cfg)
    config = model_cfg['teacher']['config']
    model_cfg['teacher'].update(
        config=dict(type=shared_teacher, config=config), checkpoint=None)
    return model_cfg


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
    otherwise import whichever mmscalekd is installed. There is no time
    limit: on a loaded machine a tool takes as long as it takes, and a test
    that could hang (a rank left waiting) bounds itself otherwise.
    """
    env = dict(
        os.environ,
        PYTHONPATH=os.pathsep.join([REPO_ROOT,
                                    os.environ.get('PYTHONPATH', '')]),
        PATH=osp.dirname(sys.executable) + os.pathsep + os.environ['PATH'],
        PYTHON=sys.executable)
    kwargs.setdefault('cwd', REPO_ROOT)
    result = subprocess.run(
        cmd, env=env, capture_output=True, text=True, **kwargs)
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
    # `custom_hooks` join the config's (configs/_base_/scalekd_runtime.py),
    # replacing a hook of the same type.
    for hook in options.pop('custom_hooks', []):
        same = [i for i, h in enumerate(cfg.custom_hooks)
                if h['type'] == hook['type']]
        if same:
            cfg.custom_hooks[same[0]] = hook
        else:
            cfg.custom_hooks.append(hook)
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


def build_runner(cfg, training=True):
    """mmengine's Runner for ``cfg``, prepared as mmscalekd's tools prepare
    it (:func:`mmscalekd.engine.prepare_run`)."""
    from mmengine.registry import RUNNERS

    from mmscalekd.engine import prepare_run
    return RUNNERS.build(prepare_run(cfg, training))


def run_log(runner) -> str:
    """Everything the run logged to its log file."""
    with open(osp.join(runner.log_dir, f'{runner.timestamp}.log')) as f:
        return f.read()
