"""Student feature taps as (N, C, H, W) maps, whatever the student family.

The projectors take a student feature as a map (N, C, H, W). CNN stages give
one; transformer and MLP-Mixer students give tokens instead:

- ViT / DeiT blocks (mmpretrain ``VisionTransformer``, timm ViTs): (N, E + L, C)
  with E class / distillation tokens in front of L = H*W patch tokens;
- MLP-Mixer blocks: (N, L, C);
- mmpretrain Swin stages: a tuple ``(tokens (N, L, C), (H, W))``.

This is the one place where such outputs become maps. It needs two facts
about the student: how many extra tokens lead the sequence and the patch
grid. Both are read off the student unless the config gives them in
``model.student_tokens``:

- ``extra_tokens``: from the backbone's ``num_extra_tokens`` (mmpretrain
  ViTs; :class:`TimmStudentBackbone` forwards timm's ``num_prefix_tokens``),
  else 0;
- ``grid``: from the (H, W) a Swin stage returns with its tokens, else from
  the input size: the patch stride s with (H0/s) * (W0/s) = L.
"""
import math
from typing import Optional, Sequence, Tuple

import torch
from torch import nn

from .config_values import check_integer, check_size
from .tokens import tokens_to_map

__all__ = ['StudentFeatureReader']

_TOKEN_KEYS = {'grid', 'extra_tokens'}


class StudentFeatureReader:
    """Turn what a student tap gives into a (N, C, H, W) feature map.

    Maps (N, C, H, W) pass through unchanged; tokens are reshaped by
    :func:`tokens_to_map`. See the module docstring for where the extra
    token count and the grid come from.

    Args:
        grid (tuple, optional): the (H, W) patch grid of every token tap
            (``model.student_tokens.grid``); inferred when None.
        extra_tokens (int, optional): tokens in front of the patch tokens
            (``model.student_tokens.extra_tokens``). Defaults to 0;
            :meth:`from_student` reads it off the student backbone.
    """

    def __init__(self,
                 grid: Optional[Sequence[int]] = None,
                 extra_tokens: Optional[int] = None) -> None:
        if grid is not None:
            grid = check_size(grid, 'model.student_tokens.grid',
                              example='(14, 14)',
                              note='the patch grid of the token taps')
        if extra_tokens is not None:
            extra_tokens = check_integer(
                extra_tokens, 'model.student_tokens.extra_tokens', minimum=0,
                note='the class / distillation tokens in front of the patch '
                'tokens')
        self.grid = grid
        self.extra_tokens = extra_tokens or 0

    @classmethod
    def from_student(cls, student: nn.Module,
                     student_tokens: Optional[dict] = None
                     ) -> 'StudentFeatureReader':
        """Config values first, the rest read off ``student.backbone``."""
        student_tokens = dict(student_tokens or {})
        unknown = sorted(set(student_tokens) - _TOKEN_KEYS)
        if unknown:
            raise KeyError(f'Unknown key(s) {unknown} in '
                           f'`model.student_tokens`; allowed keys are '
                           f'{sorted(_TOKEN_KEYS)}.')
        extra_tokens = student_tokens.get('extra_tokens')
        if extra_tokens is None:
            backbone = getattr(student, 'backbone', None)
            extra_tokens = int(getattr(backbone, 'num_extra_tokens', 0) or 0)
        return cls(student_tokens.get('grid'), extra_tokens)

    def __call__(self, output, input_size: Sequence[int],
                 stage: str) -> torch.Tensor:
        """A tap's output -> (N, C, H, W).

        Args:
            output: what the tapped module returned: a map, tokens, or a
                tuple whose first item is one of those (a Swin stage's
                ``(tokens, (H, W))``).
            input_size (tuple): (H0, W0) of the images, to infer the grid.
            stage (str): ``'perception'`` or ``'final'``, for error messages.
        """
        hw = None
        if isinstance(output, (tuple, list)) and output:
            if len(output) > 1 and _is_size(output[1]):
                hw = tuple(int(v) for v in output[1])
            output = output[0]
        key = f'`model.{stage}_stage.student_tap`'
        if isinstance(output, torch.Tensor) and output.dim() == 4:
            return output
        if not (isinstance(output, torch.Tensor) and output.dim() == 3):
            raise ValueError(
                f'{key} must give a (N, C, H, W) feature map or (N, L, C) '
                f'tokens; it gives {_describe(output)}. '
                'Tap a stage or block, not a pooled feature.')
        num_patches = output.shape[1] - self.extra_tokens
        grid = self.grid or hw or _grid_from_input(num_patches, input_size)
        if grid is None or grid[0] * grid[1] != num_patches:
            raise ValueError(
                f'{key} gives {output.shape[1]} tokens; with '
                f'`model.student_tokens.extra_tokens={self.extra_tokens!r}` '
                f'that leaves {num_patches} patch tokens, which do not fit '
                f'{"the grid " + str(grid) if grid else "any patch grid"} of '
                f'a {tuple(input_size)} input. Set '
                '`model.student_tokens=dict(grid=(H, W), extra_tokens=E)` '
                'to the tap\'s patch grid and its number of class/'
                'distillation tokens.')
        return tokens_to_map(output, grid, self.extra_tokens)


def _describe(output) -> str:
    if isinstance(output, torch.Tensor):
        return f'a tensor of shape {tuple(output.shape)}'
    return f'a {type(output).__name__}'


def _is_size(value) -> bool:
    return (isinstance(value, (tuple, list, torch.Size)) and len(value) == 2
            and all(isinstance(v, int) for v in value))


def _grid_from_input(num_patches: int,
                     input_size: Sequence[int]) -> Optional[Tuple[int, int]]:
    """The (H0/s, W0/s) grid of a patch stride s giving ``num_patches``."""
    height, width = (int(v) for v in input_size)
    if num_patches < 1:
        return None
    stride = math.isqrt(height * width // num_patches)
    for s in (stride, stride + 1):
        if s > 0 and height % s == 0 and width % s == 0 and (
                height // s) * (width // s) == num_patches:
            return height // s, width // s
    return None
