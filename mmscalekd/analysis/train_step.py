"""One training step of a config's model on a synthetic batch, to measure.

Three variants come from one ScaleKD config: ``'student'`` (the student
classifier alone), ``'logit_kd'`` (the distiller without its feature stages)
and ``'scalekd'`` (the distiller as configured). Weights are random: the
teacher checkpoint is never loaded, since weights do not change the cost.
The batch goes once through the config's own data preprocessor, so each head
gets the targets it gets in training (one-hot or mixed scores where the
recipe has batch augments).
"""
import contextlib
import copy
from dataclasses import dataclass
from typing import Callable, List, Optional, Tuple

import numpy as np
import torch
from mmengine.config import Config
from mmengine.optim import build_optim_wrapper
from mmengine.registry import init_default_scope

__all__ = [
    'VARIANTS', 'PRECISIONS', 'TrainStep', 'load_config', 'build_variant',
    'optim_wrapper_cfg', 'compile_student', 'synthetic_batch',
    'make_train_step', 'build_train_step', 'CHECKS'
]

VARIANTS = ('student', 'logit_kd', 'scalekd')
PRECISIONS = {'fp32': None, 'bf16': torch.bfloat16, 'fp16': torch.float16}
DEFAULT_LOGIT_KD = dict(type='LogitKDLoss', tau=1.0, alpha=0.5)


def load_config(path: str, options: Optional[dict] = None) -> Config:
    """``path`` with ``--cfg-options``-style ``options`` merged in."""
    cfg = Config.fromfile(path)
    if options:
        cfg.merge_from_dict(options)
    init_default_scope(cfg.get('default_scope', 'mmpretrain'))
    return cfg


def build_variant(cfg: Config,
                  variant: str,
                  precision: str = 'fp32',
                  compile: bool = False,
                  channels_last: bool = False
                  ) -> Tuple[torch.nn.Module, List[str]]:
    """The model of ``variant`` from ``cfg``, seeded, and notes on what
    changed from the config.

    As the runner does, the config's top-level ``data_preprocessor`` goes
    to the model (for ``'student'``, to the student classifier). Under
    bf16 or fp16 the frozen teacher is held in that dtype unless
    ``model.teacher.dtype`` is set, as ``tools/train.py --amp`` does;
    ``compile`` sets ``model.compile=dict()`` and ``channels_last``
    ``model.channels_last=True`` for the distillers, as ``tools/train.py
    --compile --channels-last`` do (the student classifier alone is
    compiled by :func:`compile_student`).
    """
    from mmpretrain.registry import MODELS
    if variant not in VARIANTS:
        raise ValueError(f'variant={variant!r}: use one of {VARIANTS}.')
    if precision not in PRECISIONS:
        raise ValueError(f'precision={precision!r}: use one of '
                         f'{tuple(PRECISIONS)}.')
    notes = []
    torch.manual_seed(0)
    data_preprocessor = cfg.get('data_preprocessor')
    if variant == 'student':
        model_cfg = copy.deepcopy(cfg.model.student)
        if data_preprocessor is not None:
            model_cfg.setdefault('data_preprocessor',
                                 copy.deepcopy(data_preprocessor))
        model = MODELS.build(model_cfg)
        if compile:
            compile_student(model)
    else:
        model_cfg = copy.deepcopy(cfg.model)
        if data_preprocessor is not None:
            model_cfg.setdefault('data_preprocessor',
                                 copy.deepcopy(data_preprocessor))
        model_cfg.teacher.checkpoint = None
        if PRECISIONS[precision] is not None:
            model_cfg.teacher.setdefault(
                'dtype', str(PRECISIONS[precision]).split('.')[-1])
        if compile:
            model_cfg.compile = dict()
        if channels_last:
            model_cfg.channels_last = True
        if variant == 'logit_kd':
            model_cfg.perception_stage = None
            model_cfg.final_stage = None
            if not model_cfg.get('logit_kd'):
                model_cfg.logit_kd = DEFAULT_LOGIT_KD
                notes.append('the config has no logit_kd: (b) uses '
                             'LogitKDLoss(tau=1, alpha=0.5)')
        model = MODELS.build(model_cfg)
    model.init_weights()
    return model, notes


def optim_wrapper_cfg(cfg: Config, precision: str = 'fp32') -> dict:
    """The config's optimizer; its own AMP settings give way to
    ``precision``.

    fp16 needs loss scaling, which mmengine's AmpOptimWrapper does (CUDA
    only); bf16 runs under our own autocast with a plain OptimWrapper.
    """
    if precision not in PRECISIONS:
        raise ValueError(f'precision={precision!r}: use one of '
                         f'{tuple(PRECISIONS)}.')
    wrapper = copy.deepcopy(cfg.optim_wrapper).to_dict()
    for key in ('dtype', 'loss_scale'):
        wrapper.pop(key, None)
    if precision == 'fp16':
        wrapper.update(type='AmpOptimWrapper', dtype='float16')
    elif wrapper.get('type') == 'AmpOptimWrapper':
        wrapper['type'] = 'OptimWrapper'
    return wrapper


def compile_student(student: torch.nn.Module) -> None:
    """torch.compile, in place, of the student classifier trained alone
    (variant ``'student'``; the distillers compile through
    ``model.compile``).

    The classifier's ``loss`` calls ``extract_feat`` and the head, not its
    ``forward``, so the parts are compiled one by one.
    """
    for part in (student.backbone, getattr(student, 'neck', None),
                 student.head):
        if part is not None:
            part.compile()


def synthetic_batch(cfg: Config, model: torch.nn.Module, batch_size: int,
                    device: str = 'cpu',
                    channels_last: bool = False) -> Tuple[torch.Tensor, list]:
    """A seeded batch at the config's ``model.input_size``, labels cycling
    over the classes, through the model's own data preprocessor.

    The images are made so that the preprocessor's normalisation (and BGR
    to RGB flip) turns them into a standard normal batch; its one-hot
    conversion and batch augments (Mixup, CutMix) then give the targets the
    head trains on: ``gt_score`` where the recipe makes scores, the hard
    ``gt_label`` otherwise. Batch augments also mix the images.

    Returns:
        tuple: inputs of shape (N, C, H, W) with C from
        ``model.input_channels`` (default 3), and N ``DataSample``.
    """
    from mmpretrain.structures import DataSample
    size = cfg.model.get('input_size', 224)
    height, width = (size, size) if isinstance(size, int) else size
    channels = cfg.model.get('input_channels', 3)
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(batch_size, channels, height, width,
                         generator=generator)
    preprocessor = model.data_preprocessor
    if isinstance(getattr(preprocessor, 'mean', None), torch.Tensor):
        images = images * preprocessor.std.cpu() + preprocessor.mean.cpu()
    if getattr(preprocessor, 'to_rgb', False) and channels == 3:
        images = images.flip(1)  # the preprocessor flips it back
    student = model if hasattr(model, 'backbone') else model.student
    num_classes = student.head.num_classes
    samples = [
        DataSample().set_gt_label(i % num_classes)
        for i in range(batch_size)
    ]
    # Batch augments draw from numpy's and torch's global generators:
    # seeded too, so both sides of a comparison get the same batch.
    numpy_state = np.random.get_state()
    with torch.random.fork_rng(devices=[]):
        np.random.seed(0)
        torch.manual_seed(0)
        data = preprocessor(dict(inputs=images, data_samples=samples),
                            training=True)
    np.random.set_state(numpy_state)
    inputs, samples = data['inputs'].to(device), data['data_samples']
    if channels_last:
        inputs = inputs.contiguous(memory_format=torch.channels_last)
    return inputs, samples


CHECKS = ('all', 'before-step', 'none')


def make_train_step(model: torch.nn.Module, optim_wrapper,
                    inputs: torch.Tensor, samples: list,
                    autocast: Callable = contextlib.nullcontext,
                    checks: str = 'all') -> Callable[[], None]:
    """One training step: ``BaseModel.train_step`` without the data
    preprocessor (the batch is already preprocessed).

    Every training run checks each step for non-finite values (the loss and
    gradients before the update, the weights after it); so does the measured
    step, unless ``checks`` is ``'before-step'`` (the first only) or
    ``'none'``, to measure what they cost.
    """
    from mmscalekd.engine import FiniteCheckHook
    if checks not in CHECKS:
        raise ValueError(f'checks={checks!r}: use one of {CHECKS}.')
    hook = None
    if checks != 'none':
        hook = FiniteCheckHook(check_updates=checks == 'all')
        hook.attach(model, optim_wrapper, iteration=lambda: 0)

    def train_step():
        with optim_wrapper.optim_context(model), autocast():
            losses = model.loss(inputs, samples)
        loss, _ = model.parse_losses(losses)
        optim_wrapper.update_params(loss)
        if hook is not None:
            hook.check_update()  # what the hook does after each iteration

    return train_step


@dataclass
class TrainStep:
    """A built training step and what it runs on.

    Attributes:
        step (Callable): one forward, backward and optimizer step.
        model (nn.Module): the variant's model, in train mode.
        inputs (torch.Tensor): the synthetic batch, (N, C, H, W).
        autocast (Callable): the precision's autocast context (a null
            context for fp32 and fp16, whose autocast the optimizer wrapper
            brings).
        notes (list[str]): what differs from the config.
        optim_wrapper: the step's optimizer wrapper.
    """
    step: Callable[[], None]
    model: torch.nn.Module
    inputs: torch.Tensor
    autocast: Callable
    notes: List[str]
    optim_wrapper: object = None


def build_train_step(config: str,
                     options: Optional[dict] = None,
                     variant: str = 'scalekd',
                     batch_size: int = 4,
                     device: str = 'cpu',
                     precision: str = 'fp32',
                     channels_last: bool = False,
                     compile: bool = False,
                     lr: Optional[float] = None,
                     checks: str = 'all') -> TrainStep:
    """The training step of ``variant`` of ``config``, ready to call.

    Args:
        config (str): a ScaleKD config file.
        options (dict, optional): config overrides, as ``--cfg-options``,
            e.g. ``{'model.final_stage.projector.conv_impl': 'native'}``.
        variant (str): ``'student'``, ``'logit_kd'`` or ``'scalekd'``.
        batch_size (int): images per step.
        device (str): ``'cpu'`` or ``'cuda[:N]'``.
        precision (str): ``'fp32'``, ``'bf16'`` or ``'fp16'`` (CUDA only).
        channels_last (bool): channels-last inputs and 4-D weights (on any
            device), and ``model.channels_last=True`` for the distillers.
        compile (bool): torch.compile what the step runs: for the
            distillers ``model.compile=dict()`` (teacher, student,
            projectors), for ``'student'`` the student's parts.
        lr (float, optional): replaces the optimizer's learning rate.
        checks (str): which of FiniteCheckHook's checks the step runs
            (:func:`make_train_step`).
    """
    cfg = load_config(config, options)
    model, notes = build_variant(cfg, variant, precision, compile,
                                 channels_last)
    model.to(device)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    model.train()  # the distiller keeps its teacher in eval mode
    wrapper_cfg = optim_wrapper_cfg(cfg, precision)
    if lr is not None:
        wrapper_cfg['optimizer']['lr'] = lr
    optim_wrapper = build_optim_wrapper(model, wrapper_cfg)
    inputs, samples = synthetic_batch(cfg, model, batch_size, device,
                                      channels_last)
    dtype = PRECISIONS[precision]

    def autocast():
        # fp16 autocast comes from AmpOptimWrapper.optim_context.
        if dtype is torch.bfloat16:
            return torch.autocast(device.split(':')[0], dtype=dtype)
        return contextlib.nullcontext()

    step = make_train_step(model, optim_wrapper, inputs, samples, autocast,
                           checks)
    return TrainStep(step, model, inputs, autocast, notes, optim_wrapper)
