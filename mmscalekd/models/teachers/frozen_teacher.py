"""The frozen teacher: a network held frozen, in eval mode, and run in
parts."""
from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from mmengine.logging import print_log
from torch import nn

from mmscalekd.compat import apply_to_held_module
from .base import TeacherAdapter, TeacherOutputs
from .precision import floating_dtype, keeping_dtype, run_in_dtype

__all__ = ['FrozenTeacher']


class FrozenTeacher(nn.Module):
    """A frozen teacher classifier and its family adapter.

    Built by :func:`load_frozen_teacher` from ``model.teacher``. The
    network is held, not registered as a submodule: it is then in no state
    dict, no DDP parameter list or broadcast, no optimizer, no SyncBN
    conversion, and an EMA copy of the distiller shares it instead of
    copying hundreds of MB. Moving the module (``.to``, ``.double``) moves
    it. It stays in eval mode when the runner calls ``train()``: in train
    mode it would apply drop-path and dropout to the targets (and update a
    CNN teacher's BatchNorm statistics), so the student would chase noise.

    ``run_outputs``, ``run_logits`` and ``run_rest`` are the hot functions
    (the teacher's forward, its logits and ``forward_rest``, each with the
    input preparation and the dtype casts); a fast path may replace them by
    compiled versions.

    Args:
        network (nn.Module): the classifier, frozen and with its weights.
        adapter (TeacherAdapter, optional): reads ``network`` at its split
            point; None: the teacher gives logits only.
        eval_mode (bool): keep the network in eval mode (default). False
            reproduces the reference code, whose teacher trains with
            drop-path on (``model.keep_teacher_eval``).
        renormalization (tuple): ``(scale, shift)`` (C, 1, 1) taking the
            training images' normalisation to the teacher's, ``x * scale +
            shift``; ``(None, None)`` when they agree.
        input_size (tuple, optional): the (H, W) the teacher was trained at;
            the images are resized to it (bicubic, antialiased). None: the
            teacher sees the training images at their size.
        dtype (torch.dtype, optional): the network's weight dtype
            (``model.teacher.dtype``); None keeps the built dtype. A 16-bit
            teacher runs under autocast to its dtype; what it gives (split
            tokens, final feature, logits, ``forward_rest``'s output) is
            cast back to the dtype of its input, so the losses and softmaxes
            stay float32. The dtype survives ``.to(device)``, ``.float()``
            and ``.half()`` of the distiller: it is the config's, not the
            runner's. Only ``.double()`` takes the teacher to float64, for
            float64 reference computations (then ``.float()`` brings it
            back to ``dtype``).
    """

    def __init__(self,
                 network: nn.Module,
                 adapter: Optional[TeacherAdapter] = None,
                 eval_mode: bool = True,
                 renormalization: Tuple = (None, None),
                 input_size: Optional[Tuple[int, int]] = None,
                 dtype: Optional[torch.dtype] = None) -> None:
        super().__init__()
        object.__setattr__(self, 'network', network)
        #: The configured weight dtype, None: as built.
        self.dtype = dtype
        if dtype is not None:
            network.to(dtype)
        self._network_dtype = dtype
        self.eval_mode = eval_mode
        # A plain object, not a module: it holds no parameters.
        self.adapter = adapter
        self.input_size = input_size
        scale, shift = renormalization
        # Not in the state dict; moved with the module.
        self.register_buffer('input_scale', scale, persistent=False)
        self.register_buffer('input_shift', shift, persistent=False)
        self.register_load_state_dict_pre_hook(_drop_teacher_entries)
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
        return self.run_outputs(inputs)

    def run_outputs(self, inputs: torch.Tensor) -> TeacherOutputs:
        return run_in_dtype(self.adapter, self.network_dtype,
                            self.prepare(inputs))

    @torch.no_grad()
    def logits(self, inputs: torch.Tensor) -> torch.Tensor:
        """Images (N, 3, H, W) -> class scores (N, K), without gradients,
        in the dtype of ``inputs``."""
        return self.run_logits(inputs)

    def run_logits(self, inputs: torch.Tensor) -> torch.Tensor:
        return run_in_dtype(lambda x: self.network(x, mode='tensor'),
                            self.network_dtype, self.prepare(inputs))

    @torch.no_grad()
    def predict(self, inputs: torch.Tensor, data_samples: list) -> list:
        """The teacher's predictions, for evaluating it in validation."""
        return run_in_dtype(
            lambda x, samples: self.network(x, samples, mode='predict'),
            self.network_dtype, self.prepare(inputs), data_samples)

    def forward_rest(self, tokens: torch.Tensor, split_size: Tuple[int, int],
                     extra_tokens: Optional[torch.Tensor] = None
                     ) -> torch.Tensor:
        """The teacher after its split point on other tokens (N, H*W, C):
        frozen weights, but gradients flow back into ``tokens``. Runs in
        the network's dtype and returns the dtype of ``tokens``."""
        return self.run_rest(tokens, tuple(split_size), extra_tokens)

    def run_rest(self, tokens: torch.Tensor, split_size: Tuple[int, int],
                 extra_tokens: Optional[torch.Tensor] = None
                 ) -> torch.Tensor:
        return run_in_dtype(
            lambda x, extra: self.adapter.forward_rest(x, split_size, extra),
            self.network_dtype, tokens, extra_tokens)

    def train(self, mode: bool = True) -> 'FrozenTeacher':
        self.training = mode
        self.network.train(mode and not self.eval_mode)
        return self

    def _apply(self, fn, *args, **kwargs):
        # torch's one hook for .to(), .cuda(), .double() ...: they reach the
        # held network, which is no submodule.
        if self.dtype is not None:
            fn = keeping_dtype(fn, self.network, self.dtype)
        apply_to_held_module(self.network, fn, *args, **kwargs)
        if self.dtype is not None:
            self._network_dtype = floating_dtype(self.network)
        return super()._apply(fn, *args, **kwargs)

    def __deepcopy__(self, memo: dict) -> 'FrozenTeacher':
        # It never changes: a copy (e.g. the EMA model's) shares it.
        return self


def _drop_teacher_entries(module: FrozenTeacher, state_dict: dict,
                          prefix: str, *args) -> None:
    """A file with the teacher's weights loads without them: the teacher
    always comes from ``model.teacher.checkpoint``."""
    stale = [key for key in state_dict if key.startswith(prefix)]
    if stale:
        print_log(
            f'Ignoring {len(stale)} teacher entries in the file: '
            'the teacher comes from `model.teacher.checkpoint`.',
            logger='current', level=30)
    for key in stale:
        del state_dict[key]
