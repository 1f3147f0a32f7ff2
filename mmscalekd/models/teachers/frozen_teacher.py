"""The frozen teacher: built, loaded strictly, frozen, kept in eval mode."""
import contextlib
import copy
from typing import Optional, Tuple, Union

import torch
import torch.nn.functional as F
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
from .base import TeacherOutputs, build_teacher_adapter

__all__ = [
    'FrozenTeacher', 'load_teacher_model_config', 'load_teacher_weights',
    'teacher_normalization'
]

_RANDOM_TEACHER_WARNING = (
    '\n' + '!' * 78 + '\n'
    '!! `model.teacher.checkpoint` is None: the TEACHER IS RANDOMLY\n'
    '!! INITIALISED. Distilling from it teaches nothing; this is only for\n'
    '!! tests and smoke runs. Set `model.teacher.checkpoint` to the teacher\n'
    '!! weights for a real run.\n' + '!' * 78)

_TEACHER_DTYPES = ('float32', 'bfloat16', 'float16')


def load_teacher_model_config(config: Union[str, dict]) -> dict:
    """The teacher's ``model`` dict from a config path or an inline dict.

    ``config`` may be ``'mmpretrain::swin_transformer/swin-large_16xb64_in1k.py'``
    (any package-scoped config), a config file path, or a model dict.
    """
    if isinstance(config, (dict, ConfigDict)):
        return copy.deepcopy(dict(config))
    if not isinstance(config, str):
        raise TypeError('`model.teacher.config` must be a config path or a '
                        f'model dict, got {type(config).__name__}.')
    if '::' in config:
        from mmengine.hub import get_config
        cfg = get_config(config)
    else:
        cfg = Config.fromfile(config)
    if 'model' not in cfg:
        raise KeyError(f'`model.teacher.config={config!r}` has no `model`.')
    return cfg.model.to_dict() if hasattr(cfg.model, 'to_dict') \
        else dict(cfg.model)


def teacher_normalization(config: Union[str, dict]) -> Optional[dict]:
    """The ``mean`` / ``std`` the teacher was trained with, from its config
    (the top-level or the model's ``data_preprocessor``); None when the
    config gives none (e.g. a bare model dict)."""
    if isinstance(config, str):
        if '::' in config:
            from mmengine.hub import get_config
            cfg = get_config(config)
        else:
            cfg = Config.fromfile(config)
        sources = [cfg.get('data_preprocessor'),
                   cfg.get('model', {}).get('data_preprocessor')]
    else:
        sources = [dict(config).get('data_preprocessor')]
    for source in sources:
        if source and source.get('mean') is not None:
            return dict(mean=list(source['mean']), std=list(source['std']))
    return None


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


def _cast(tensor: Optional[torch.Tensor],
          dtype: Optional[torch.dtype]) -> Optional[torch.Tensor]:
    """``tensor`` in ``dtype`` (differentiably); anything else, or a
    ``dtype`` of None, as it is."""
    if not isinstance(tensor, torch.Tensor) or dtype is None:
        return tensor
    return tensor.to(dtype)


def _floating_dtype(network: nn.Module) -> Optional[torch.dtype]:
    """The dtype of the network's floating-point parameters."""
    return next((p.dtype for p in network.parameters()
                 if p.is_floating_point()), None)


def _build_network(config: Union[str, dict],
                   checkpoint: Optional[str]) -> nn.Module:
    network = MODELS.build(load_teacher_model_config(config))
    if checkpoint is None:
        print_log(_RANDOM_TEACHER_WARNING, logger='current', level=30)
        network.init_weights()
    else:
        # Every key comes from the file (strict), so no init is needed; it
        # would also fetch a `Pretrained` init_cfg from the network.
        load_teacher_weights(network, checkpoint)
    # Marked as initialised so that no init_weights() overwrites it.
    network._is_init = True
    network.requires_grad_(False)
    return network.eval()


@MODELS.register_module()
class FrozenTeacher(nn.Module):
    """A frozen teacher classifier and its family adapter.

    The network is held, not registered as a submodule: it is then in no
    state dict, no DDP parameter list or broadcast, no optimizer, no SyncBN
    conversion, and an EMA copy of the distiller shares it instead of
    copying hundreds of MB. Moving the module (``.to``, ``.double``) moves
    it. It stays in eval mode when the runner calls ``train()``: in train
    mode it would apply drop-path and dropout to the targets (and update a
    CNN teacher's BatchNorm statistics), so the student would chase noise.

    Args:
        config (str | dict): the teacher's mmpretrain config (e.g.
            ``'mmpretrain::swin_transformer/swin-large_16xb64_in1k.py'``) or
            its ``model`` dict (``model.teacher.config``).
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
            196px). The images are resized to it (bicubic, antialiased)
            before the teacher sees them. None: the teacher sees the
            training images at their size, as in the reference code.
        data_normalization (tuple, optional): ``(mean, std)`` tensors
            (C, 1, 1) of the distiller's data preprocessor (set by the
            distiller). Where they differ from the teacher's, the images
            are renormalised for the teacher: EVA / BEiT teachers were
            trained with CLIP's mean and std, not ImageNet's.
        dtype (str, optional): hold the network's weights in this dtype
            (``model.teacher.dtype``: ``'bfloat16'``, ``'float16'`` or
            ``'float32'``); None keeps the built dtype. A 16-bit teacher
            takes half the memory and runs under autocast to its dtype (so
            the network's own float32 constants, e.g. Swin's window mask,
            mix with it). The images are normalised and resized in their
            own dtype and then cast to it; what the teacher gives
            (split tokens, final feature, logits, and ``forward_rest``'s
            output) is cast back to the dtype of its input, so the losses
            and softmaxes stay float32. The dtype survives ``.to(device)``,
            ``.float()`` and ``.half()`` of the distiller: it is the
            config's, not the runner's. Only ``.double()`` takes the
            teacher to float64, for float64 reference computations (then
            ``.float()`` brings it back to ``dtype``).

    Compilation: :meth:`compile_forwards` compiles the hot functions
    (the teacher's forward, its logits and ``forward_rest``); the module
    itself stays eager.
    """

    def __init__(self,
                 config: Union[str, dict],
                 checkpoint: Optional[str],
                 adapter: Optional[str] = None,
                 split: Optional[int] = None,
                 eval_mode: bool = True,
                 mean: Optional[list] = None,
                 std: Optional[list] = None,
                 input_size=None,
                 data_normalization: Optional[tuple] = None,
                 dtype: Optional[str] = None) -> None:
        super().__init__()
        # Every value is checked before the (slow) network build.
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
        object.__setattr__(self, 'network', _build_network(config,
                                                           checkpoint))
        #: The configured weight dtype (a torch.dtype), None: as built.
        self.dtype = None if dtype is None else getattr(torch, dtype)
        if self.dtype is not None:
            self.network.to(self.dtype)
        self._network_dtype = self.dtype
        # Eager until compile_forwards().
        self._outputs = self._eager_outputs
        self._logits = self._eager_logits
        self._rest = self._eager_rest
        self.eval_mode = eval_mode
        # A plain object, not a module: it holds no parameters.
        self.adapter = None if split is None else build_teacher_adapter(
            self.network, split, adapter)
        self.input_size = input_size
        if mean is None:
            trained = teacher_normalization(config) or {}
            mean, std = trained.get('mean'), trained.get('std')
        scale, shift = _renormalization(mean, std, data_normalization)
        # Not in the state dict; moved with the module.
        self.register_buffer('input_scale', scale, persistent=False)
        self.register_buffer('input_shift', shift, persistent=False)
        self._register_load_state_dict_pre_hook(self._drop_entries)
        self.train(False)

    def prepare(self, inputs: torch.Tensor) -> torch.Tensor:
        """The training images (N, C, H, W) as the teacher was trained to
        see them: its normalisation, its resolution."""
        if self.input_scale is not None:
            inputs = inputs * self.input_scale + self.input_shift
        if self.input_size is not None and \
                tuple(inputs.shape[-2:]) != self.input_size:
            inputs = F.interpolate(inputs, self.input_size, mode='bicubic',
                                   align_corners=False, antialias=True)
        return inputs

    @property
    def network_dtype(self) -> Optional[torch.dtype]:
        """The dtype the network is held in when ``dtype`` is set: that
        dtype, or float64 after ``.double()``. None without ``dtype``: the
        network then runs in whatever dtype it was moved to, uncast."""
        return self._network_dtype if self.dtype is not None else None

    @torch.no_grad()
    def forward(self, inputs: torch.Tensor) -> TeacherOutputs:
        """Images (N, 3, H, W) -> split tokens, final feature and logits,
        without gradients, in the dtype of ``inputs``."""
        if self.adapter is None:
            raise RuntimeError('This teacher has no split point; it gives '
                               'logits only (see `logits`).')
        return self._outputs(inputs)

    def _autocast(self, device: torch.device):
        """Autocast to a 16-bit network dtype: the network's own float32
        constants (e.g. Swin's shifted-window mask) then meet its weights
        in that dtype, and softmax / norms run in float32 as autocast
        keeps them (on CUDA)."""
        if self.network_dtype not in (torch.bfloat16, torch.float16):
            return contextlib.nullcontext()
        return torch.autocast(device.type, dtype=self.network_dtype)

    def _eager_outputs(self, inputs: torch.Tensor) -> TeacherOutputs:
        if self.network_dtype is None:
            return self.adapter(self.prepare(inputs))
        with self._autocast(inputs.device):
            outputs = self.adapter(
                _cast(self.prepare(inputs), self.network_dtype))
        return TeacherOutputs(*(_cast(value, inputs.dtype)
                                for value in outputs))

    @torch.no_grad()
    def logits(self, inputs: torch.Tensor) -> torch.Tensor:
        """Images (N, 3, H, W) -> class scores (N, K), without gradients,
        in the dtype of ``inputs``."""
        return self._logits(inputs)

    def _eager_logits(self, inputs: torch.Tensor) -> torch.Tensor:
        if self.network_dtype is None:
            return self.network(self.prepare(inputs), mode='tensor')
        with self._autocast(inputs.device):
            logits = self.network(
                _cast(self.prepare(inputs), self.network_dtype),
                mode='tensor')
        return _cast(logits, inputs.dtype)

    @torch.no_grad()
    def predict(self, inputs: torch.Tensor, data_samples: list) -> list:
        """The teacher's predictions, for evaluating it in validation."""
        with self._autocast(inputs.device):
            return self.network(
                _cast(self.prepare(inputs), self.network_dtype),
                data_samples, mode='predict')

    def forward_rest(self, tokens: torch.Tensor, split_size: Tuple[int, int],
                     extra_tokens: Optional[torch.Tensor] = None
                     ) -> torch.Tensor:
        """The teacher after its split point on other tokens (N, H*W, C):
        frozen weights, but gradients flow back into ``tokens``. Runs in
        the network's dtype and returns the dtype of ``tokens``."""
        return self._rest(tokens, tuple(split_size), extra_tokens)

    def _eager_rest(self, tokens: torch.Tensor, split_size: Tuple[int, int],
                    extra_tokens: Optional[torch.Tensor] = None
                    ) -> torch.Tensor:
        dtype = self.network_dtype
        if dtype is None:
            return self.adapter.forward_rest(tokens, split_size,
                                             extra_tokens)
        with self._autocast(tokens.device):
            feature = self.adapter.forward_rest(
                _cast(tokens, dtype), split_size, _cast(extra_tokens, dtype))
        return _cast(feature, tokens.dtype)

    def compile_forwards(self, **options) -> None:
        """Compile the forward, the logits and ``forward_rest`` with
        ``torch.compile(**options)``; each compiled function includes the
        input preparation and the dtype casts."""
        self._outputs = torch.compile(self._eager_outputs, **options)
        self._logits = torch.compile(self._eager_logits, **options)
        self._rest = torch.compile(self._eager_rest, **options)

    def train(self, mode: bool = True) -> 'FrozenTeacher':
        self.training = mode
        self.network.train(mode and not self.eval_mode)
        return self

    def _apply(self, fn, *args, **kwargs):
        # .to(), .cuda(), .double() ... reach the held network.
        if self.dtype is not None:
            fn = self._keeping_dtype(fn)
        self.network._apply(fn, *args, **kwargs)
        if self.dtype is not None:
            self._network_dtype = _floating_dtype(self.network)
        return super()._apply(fn, *args, **kwargs)

    def _keeping_dtype(self, fn):
        """``fn`` of ``.to()``, ``.float()``, ``.half()`` ... with the
        configured ``dtype`` kept for floating-point tensors, unless it
        asks for float64 (a float64 reference run), in one conversion."""
        current = next(self.network.parameters())
        probe = fn(torch.zeros((), dtype=current.dtype,
                               device=current.device))
        if probe.dtype == torch.float64:
            return fn
        return lambda t: (t.to(probe.device, self.dtype)
                          if t.is_floating_point() else fn(t))

    def __deepcopy__(self, memo: dict) -> 'FrozenTeacher':
        # It never changes: a copy (e.g. the EMA model's) shares it.
        return self

    def _drop_entries(self, state_dict: dict, prefix: str, *args) -> None:
        """A file with the teacher's weights loads without them: the
        teacher always comes from ``model.teacher.checkpoint``."""
        stale = [key for key in state_dict if key.startswith(prefix)]
        if stale:
            print_log(
                f'Ignoring {len(stale)} teacher entries in the file: '
                'the teacher comes from `model.teacher.checkpoint`.',
                logger='current', level=30)
        for key in stale:
            del state_dict[key]
