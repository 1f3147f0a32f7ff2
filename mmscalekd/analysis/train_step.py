"""One training step of a config's model on a synthetic batch, to measure.

Three variants come from one ScaleKD config: ``'student'`` (the student
classifier alone), ``'logit_kd'`` (the distiller without its feature stages)
and ``'scalekd'`` (the distiller as configured). Weights are random: the
teacher checkpoint is never loaded, since weights do not change the cost.
"""
import contextlib
import copy
from dataclasses import dataclass
from typing import Callable, List, Optional, Tuple

import torch
from mmengine.config import Config
from mmengine.optim import build_optim_wrapper
from mmengine.registry import init_default_scope

__all__ = [
    'VARIANTS', 'PRECISIONS', 'TrainStep', 'load_config', 'build_variant',
    'optim_wrapper_cfg', 'compile_variant', 'synthetic_batch',
    'make_train_step', 'build_train_step'
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


def build_variant(cfg: Config, variant: str) -> Tuple[torch.nn.Module,
                                                      List[str]]:
    """The model of ``variant`` from ``cfg``, seeded, and notes on what
    changed from the config."""
    from mmpretrain.registry import MODELS
    if variant not in VARIANTS:
        raise ValueError(f'variant={variant!r}: use one of {VARIANTS}.')
    notes = []
    torch.manual_seed(0)
    if variant == 'student':
        model = MODELS.build(copy.deepcopy(cfg.model.student))
    else:
        model_cfg = copy.deepcopy(cfg.model)
        model_cfg.teacher.checkpoint = None
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


def compile_variant(model: torch.nn.Module, variant: str) -> None:
    """torch.compile, in place, of what the student and projectors run.

    The distiller calls the student's ``extract_feat`` and ``head``, not
    its ``forward``, so the parts are compiled one by one.
    """
    student = model if variant == 'student' else model.student
    parts = [student.backbone, student.head]
    if getattr(student, 'neck', None) is not None:
        parts.append(student.neck)
    if variant == 'scalekd':
        parts += list(model.projectors.values())
    for part in parts:
        part.compile()


def synthetic_batch(cfg: Config, model: torch.nn.Module, batch_size: int,
                    device: str = 'cpu',
                    channels_last: bool = False) -> Tuple[torch.Tensor, list]:
    """A seeded batch at the config's ``model.input_size``, already
    preprocessed (zero mean, unit variance), labels cycling over classes.

    Returns:
        tuple: inputs of shape (N, C, H, W) with C from
        ``model.input_channels`` (default 3), and N ``DataSample``.
    """
    from mmpretrain.structures import DataSample
    size = cfg.model.get('input_size', 224)
    height, width = (size, size) if isinstance(size, int) else size
    channels = cfg.model.get('input_channels', 3)
    generator = torch.Generator().manual_seed(0)
    inputs = torch.randn(batch_size, channels, height, width,
                         generator=generator).to(device)
    if channels_last:
        inputs = inputs.contiguous(memory_format=torch.channels_last)
    student = model if hasattr(model, 'backbone') else model.student
    num_classes = student.head.num_classes
    samples = [
        DataSample().set_gt_label(i % num_classes).to(device)
        for i in range(batch_size)
    ]
    return inputs, samples


def make_train_step(model: torch.nn.Module, optim_wrapper,
                    inputs: torch.Tensor, samples: list,
                    autocast: Callable = contextlib.nullcontext
                    ) -> Callable[[], None]:
    """One training step: ``BaseModel.train_step`` without the data
    preprocessor (the batch is already preprocessed)."""
    from mmscalekd.engine import FiniteCheckHook

    # Every training run checks each step for non-finite values; so does
    # the measured step.
    FiniteCheckHook().attach(model, optim_wrapper, iteration=lambda: 0)

    def train_step():
        with optim_wrapper.optim_context(model), autocast():
            losses = model.loss(inputs, samples)
        loss, _ = model.parse_losses(losses)
        optim_wrapper.update_params(loss)

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
    """
    step: Callable[[], None]
    model: torch.nn.Module
    inputs: torch.Tensor
    autocast: Callable
    notes: List[str]


def build_train_step(config: str,
                     options: Optional[dict] = None,
                     variant: str = 'scalekd',
                     batch_size: int = 4,
                     device: str = 'cpu',
                     precision: str = 'fp32',
                     channels_last: bool = False,
                     compile: bool = False,
                     lr: Optional[float] = None) -> TrainStep:
    """The training step of ``variant`` of ``config``, ready to call.

    Args:
        config (str): a ScaleKD config file.
        options (dict, optional): config overrides, as ``--cfg-options``,
            e.g. ``{'model.final_stage.projector.conv_impl': 'native'}``.
        variant (str): ``'student'``, ``'logit_kd'`` or ``'scalekd'``.
        batch_size (int): images per step.
        device (str): ``'cpu'`` or ``'cuda[:N]'``.
        precision (str): ``'fp32'``, ``'bf16'`` or ``'fp16'`` (CUDA only).
        channels_last (bool): channels-last inputs and 4-D weights.
        compile (bool): torch.compile the student and the projectors.
        lr (float, optional): replaces the optimizer's learning rate.
    """
    cfg = load_config(config, options)
    model, notes = build_variant(cfg, variant)
    model.to(device)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    model.train()  # the distiller keeps its teacher in eval mode
    wrapper_cfg = optim_wrapper_cfg(cfg, precision)
    if lr is not None:
        wrapper_cfg['optimizer']['lr'] = lr
    optim_wrapper = build_optim_wrapper(model, wrapper_cfg)
    if compile:
        compile_variant(model, variant)
    inputs, samples = synthetic_batch(cfg, model, batch_size, device,
                                      channels_last)
    dtype = PRECISIONS[precision]

    def autocast():
        # fp16 autocast comes from AmpOptimWrapper.optim_context.
        if dtype is torch.bfloat16:
            return torch.autocast(device.split(':')[0], dtype=dtype)
        return contextlib.nullcontext()

    step = make_train_step(model, optim_wrapper, inputs, samples, autocast)
    return TrainStep(step, model, inputs, autocast, notes)
