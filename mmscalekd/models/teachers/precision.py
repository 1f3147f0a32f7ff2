"""The teacher's weight dtype (``model.teacher.dtype``): run a network held
in a 16-bit dtype on tensors of another, and keep that dtype when the
module holding it is moved."""
import contextlib
from typing import Callable, Optional

import torch
from torch import nn

__all__ = ['cast', 'floating_dtype', 'run_in_dtype', 'keeping_dtype']


def cast(tensor: Optional[torch.Tensor],
         dtype: Optional[torch.dtype]) -> Optional[torch.Tensor]:
    """``tensor`` in ``dtype`` (differentiably); anything else, or a
    ``dtype`` of None, as it is."""
    if not isinstance(tensor, torch.Tensor) or dtype is None:
        return tensor
    return tensor.to(dtype)


def floating_dtype(network: nn.Module) -> Optional[torch.dtype]:
    """The dtype of the network's floating-point parameters."""
    return next((p.dtype for p in network.parameters()
                 if p.is_floating_point()), None)


def _autocast(dtype: Optional[torch.dtype], device: torch.device):
    """Autocast to a 16-bit network dtype: the network's own float32
    constants (e.g. Swin's shifted-window mask) then meet its weights in
    that dtype, and softmax / norms run in float32 as autocast keeps them
    (on CUDA)."""
    if dtype not in (torch.bfloat16, torch.float16):
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)


def run_in_dtype(fn: Callable, dtype: Optional[torch.dtype],
                 inputs: torch.Tensor, *others):
    """``fn(inputs, *others)`` with the tensors cast to ``dtype`` (under
    autocast to it), and every tensor it returns (one, or a tuple of them)
    cast back to the dtype of ``inputs``; a ``dtype`` of None runs ``fn``
    as it is."""
    if dtype is None:
        return fn(inputs, *others)
    with _autocast(dtype, inputs.device):
        result = fn(cast(inputs, dtype), *(cast(o, dtype) for o in others))
    if isinstance(result, tuple):
        return type(result)(*(cast(value, inputs.dtype) for value in result))
    return cast(result, inputs.dtype)


def keeping_dtype(fn: Callable, network: nn.Module,
                  dtype: torch.dtype) -> Callable:
    """``fn`` of ``.to()``, ``.float()``, ``.half()`` ... with ``dtype`` kept
    for the network's floating-point tensors, unless ``fn`` asks for
    float64 (a float64 reference run), in one conversion."""
    current = next(network.parameters())
    probe = fn(torch.zeros((), dtype=current.dtype, device=current.device))
    if probe.dtype == torch.float64:
        return fn
    return lambda t: (t.to(probe.device, dtype)
                      if t.is_floating_point() else fn(t))
