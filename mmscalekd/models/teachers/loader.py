"""From ``model.teacher`` to a :class:`FrozenTeacher`: the teacher's config
read once, its values checked, its network built and its weights loaded
strictly."""
import copy
from typing import NamedTuple, Optional, Union

import torch
from mmengine.config import Config, ConfigDict
from mmengine.logging import print_log
from torch import nn

from mmpretrain.registry import MODELS

from mmscalekd.models.utils.config_values import (check_choice,
                                                  check_numbers, check_size)
from mmscalekd.utils.checkpoint import (CheckpointError,
                                        check_finite_weights,
                                        describe_mismatch,
                                        load_state_dict_file)
from .base import build_teacher_adapter
from .frozen_teacher import FrozenTeacher

__all__ = [
    'TeacherConfig', 'read_teacher_config', 'load_teacher_model_config',
    'teacher_normalization', 'load_teacher_weights', 'load_frozen_teacher'
]

_RANDOM_TEACHER_WARNING = (
    '\n' + '!' * 78 + '\n'
    '!! `model.teacher.checkpoint` is None: the TEACHER IS RANDOMLY\n'
    '!! INITIALISED. Distilling from it teaches nothing; this is only for\n'
    '!! tests and smoke runs. Set `model.teacher.checkpoint` to the teacher\n'
    '!! weights for a real run.\n' + '!' * 78)

_TEACHER_DTYPES = ('float32', 'bfloat16', 'float16')


class TeacherConfig(NamedTuple):
    """What ``model.teacher.config`` gives.

    Attributes:
        model (dict): the teacher's ``model`` dict.
        normalization (dict, optional): the ``mean`` / ``std`` the teacher
            was trained with (its config's top-level or model's
            ``data_preprocessor``); None when the config gives none.
    """
    model: dict
    normalization: Optional[dict]


def read_teacher_config(config: Union[str, dict]) -> TeacherConfig:
    """Read ``model.teacher.config`` once: a package-scoped config
    (``'mmpretrain::swin_transformer/swin-large_16xb64_in1k.py'``), a config
    file path, or a model dict."""
    if isinstance(config, (dict, ConfigDict)):
        model = copy.deepcopy(dict(config))
        sources = [model.get('data_preprocessor')]
    elif isinstance(config, str):
        if '::' in config:
            from mmengine.hub import get_config
            cfg = get_config(config)
        else:
            cfg = Config.fromfile(config)
        if 'model' not in cfg:
            raise KeyError(
                f'`model.teacher.config={config!r}` has no `model`.')
        model = cfg.model.to_dict() if hasattr(cfg.model, 'to_dict') \
            else dict(cfg.model)
        sources = [cfg.get('data_preprocessor'),
                   model.get('data_preprocessor')]
    else:
        raise TypeError('`model.teacher.config` must be a config path or a '
                        f'model dict, got {type(config).__name__}.')
    normalization = next(
        (dict(mean=list(source['mean']), std=list(source['std']))
         for source in sources
         if source and source.get('mean') is not None), None)
    return TeacherConfig(model, normalization)


def load_teacher_model_config(config: Union[str, dict]) -> dict:
    """The teacher's ``model`` dict from a config path or an inline dict."""
    return read_teacher_config(config).model


def teacher_normalization(config: Union[str, dict]) -> Optional[dict]:
    """The ``mean`` / ``std`` the teacher was trained with, from its config;
    None when the config gives none (e.g. a bare model dict)."""
    return read_teacher_config(config).normalization


def _layout_hint(missing: list, unexpected: list) -> str:
    """What the key names say about where the file comes from."""
    if missing and unexpected and all(
            k.startswith(('backbone.', 'neck.', 'head.')) for k in missing) \
            and not any(k.startswith(('backbone.', 'head.'))
                        for k in unexpected):
        return (' The file uses another layout (an original or timm '
                'release, not an mmpretrain classifier): convert it with '
                "mmpretrain's tools/model_converters/<family>_to_mmpretrain.py"
                ', or use a timm teacher (TimmClassifier) with '
                'tools/model_converters/timm_teacher_weights.py.')
    return (' Use the checkpoint of exactly this teacher architecture (an '
            'mmpretrain classifier checkpoint).')


def load_teacher_weights(teacher: nn.Module, checkpoint: str,
                         key: str = 'model.teacher.checkpoint') -> None:
    """Load ``checkpoint`` into ``teacher`` strictly, or raise naming ``key``.

    A checkpoint whose keys or shapes do not match the teacher exactly is an
    error: a teacher that is partly random would silently ruin a run of
    many GPU-days.
    """
    state_dict = load_state_dict_file(checkpoint, key=key)
    mismatch = describe_mismatch(teacher.state_dict(), state_dict)
    problems = []
    if mismatch['missing']:
        problems.append(f'{len(mismatch["missing"])} missing keys '
                        f'(e.g. {mismatch["missing"][:5]})')
    if mismatch['unexpected']:
        problems.append(f'{len(mismatch["unexpected"])} unexpected keys '
                        f'(e.g. {mismatch["unexpected"][:5]})')
    if mismatch['mismatched']:
        problems.append('tensors of other shapes: ' +
                        '; '.join(mismatch['mismatched'][:5]))
    if mismatch['dtypes']:
        problems.append('tensors of another kind of dtype (loading would '
                        'cast them): ' + '; '.join(mismatch['dtypes'][:5]))
    if problems:
        raise CheckpointError(
            f'`{key}={checkpoint!r}` does not match the teacher built from '
            '`model.teacher.config`: ' + '; '.join(problems) + '.' +
            _layout_hint(mismatch['missing'], mismatch['unexpected']))
    # Values are read only now that the keys and shapes are the teacher's.
    check_finite_weights(state_dict, f'`{key}={checkpoint!r}`')
    teacher.load_state_dict(state_dict, strict=True)


def _renormalization(mean, std, data_normalization):
    """``(scale, shift)`` (C, 1, 1) taking the data's normalisation to
    the teacher's, ``x * scale + shift``; ``(None, None)`` if they agree."""
    if mean is None:
        return None, None
    mean = torch.tensor(mean, dtype=torch.float32).view(-1, 1, 1)
    std = torch.tensor(std, dtype=torch.float32).view(-1, 1, 1)
    data_mean, data_std = data_normalization or (torch.zeros_like(mean),
                                                 torch.ones_like(std))
    data_mean = data_mean.detach().float().cpu().view(-1, 1, 1)
    data_std = data_std.detach().float().cpu().view(-1, 1, 1)
    if data_mean.shape == mean.shape and torch.equal(data_mean, mean) and \
            torch.equal(data_std, std):
        return None, None
    # x = (raw - data_mean) / data_std, and the teacher wants
    # (raw - mean) / std = x * data_std / std + (data_mean - mean) / std.
    return data_std / std, (data_mean - mean) / std


def _check_values(dtype, input_size, mean, std):
    """The values of ``model.teacher``, checked before the (slow) build;
    returns ``input_size`` as an (H, W) pair or None."""
    if dtype is not None:
        check_choice(dtype, 'model.teacher.dtype', _TEACHER_DTYPES,
                     note='or None for the built dtype')
    if input_size is not None:
        input_size = check_size(
            input_size, 'model.teacher.input_size', example='196',
            note='the resolution the teacher was trained at, or None '
            'for the training images\' own')
    if (mean is None) != (std is None):
        raise KeyError('Give both `model.teacher.mean` and '
                       '`model.teacher.std`, or neither.')
    if mean is not None:
        check_numbers(mean, 'model.teacher.mean')
        check_numbers(std, 'model.teacher.std', greater_than=0)
        if len(mean) != len(std):
            raise ValueError(
                f'`model.teacher.mean={mean!r}` and `model.teacher.std='
                f'{std!r}` must give one value per image channel each.')
    return input_size


def _build_network(model: dict, checkpoint: Optional[str]) -> nn.Module:
    """The teacher classifier with its weights, frozen, in eval mode."""
    network = MODELS.build(model)
    if checkpoint is None:
        print_log(_RANDOM_TEACHER_WARNING, logger='current', level=30)
        network.init_weights()
    else:
        # Every key comes from the file (strict), so no init is needed; it
        # would also fetch a `Pretrained` init_cfg from the network.
        load_teacher_weights(network, checkpoint)
    network.requires_grad_(False)
    return network.eval()


def load_frozen_teacher(config: Union[str, dict],
                        checkpoint: Optional[str],
                        adapter: Optional[str] = None,
                        split: Optional[int] = None,
                        eval_mode: bool = True,
                        mean: Optional[list] = None,
                        std: Optional[list] = None,
                        input_size=None,
                        data_normalization: Optional[tuple] = None,
                        dtype: Optional[str] = None) -> FrozenTeacher:
    """Build the :class:`FrozenTeacher` of ``model.teacher``.

    Args:
        config (str | dict): the teacher's mmpretrain config (e.g.
            ``'mmpretrain::swin_transformer/swin-large_16xb64_in1k.py'``) or
            its ``model`` dict (``model.teacher.config``), read once.
        checkpoint (str, optional): path or URL of its weights, loaded
            strictly (``model.teacher.checkpoint``). None gives a random
            teacher, with a loud warning: for tests and smoke runs only.
        adapter (str, optional): a registered teacher adapter; chosen from
            the network's class when None (``model.teacher.adapter``).
        split (int, optional): the split point for teacher parameter
            perception (``model.perception_stage.teacher_split``); without
            it the teacher gives logits only.
        eval_mode (bool): keep the network in eval mode (default). False
            reproduces the reference code, whose teacher trains with
            drop-path on (``model.keep_teacher_eval``).
        mean (list, optional): the per-channel mean (0-255 scale, RGB) the
            teacher was trained with (``model.teacher.mean``); read from
            its config's ``data_preprocessor`` when None.
        std (list, optional): its per-channel std (``model.teacher.std``).
        input_size (int | tuple, optional): the resolution the teacher was
            trained at (``model.teacher.input_size``, e.g. 196 for EVA-L/14
            196px). None: the teacher sees the training images at their
            size, as in the reference code.
        data_normalization (tuple, optional): ``(mean, std)`` tensors
            (C, 1, 1) of the distiller's data preprocessor. Where they
            differ from the teacher's, the images are renormalised for the
            teacher: EVA / BEiT teachers were trained with CLIP's mean and
            std, not ImageNet's.
        dtype (str, optional): hold the network's weights in this dtype
            (``model.teacher.dtype``: ``'bfloat16'``, ``'float16'`` or
            ``'float32'``); None keeps the built dtype.
    """
    input_size = _check_values(dtype, input_size, mean, std)
    teacher_config = read_teacher_config(config)
    network = _build_network(teacher_config.model, checkpoint)
    if mean is None:
        trained = teacher_config.normalization or {}
        mean, std = trained.get('mean'), trained.get('std')
    return FrozenTeacher(
        network,
        # Built on the network in its built dtype, as before any cast.
        adapter=None if split is None else build_teacher_adapter(
            network, split, adapter),
        eval_mode=eval_mode,
        renormalization=_renormalization(mean, std, data_normalization),
        input_size=input_size,
        dtype=None if dtype is None else getattr(torch, dtype))
