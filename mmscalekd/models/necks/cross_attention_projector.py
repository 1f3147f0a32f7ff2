"""Cross attention projector (method section 1)."""
from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from mmcv.cnn import build_norm_layer

from mmpretrain.registry import MODELS

from mmscalekd.models.utils.config_values import (check_choice, check_flag,
                                                  check_integer, check_number)

__all__ = [
    'CrossAttentionProjector', 'Conv3x3', 'auto_uses_gemm', 'conv3x3_as_matmul'
]


# 'auto' computes the 3x3 convolution as one matrix product on CPU for maps
# of at most this many positions and at least this many channels.
_GEMM_MAX_POSITIONS = 64
_GEMM_MIN_CHANNELS = 1024
_CONV_IMPLS = ('auto', 'native', 'gemm')


def conv3x3_as_matmul(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """``F.conv2d(x, weight, padding=1)`` (no bias) as one matrix product.

    The 3x3 neighbourhoods of every position of the batch become columns
    (im2col), so forward and both backward products are single GEMMs over
    all N*H*W positions. On CPU this is faster than the native convolution
    for small maps with many channels (e.g. 2048 ch @ 7x7), whose weight
    gradient the native kernel computes slowly (docs/benchmarks.md).
    """
    batch, channels, height, width = x.shape
    cols = F.unfold(x, 3, padding=1)  # (N, C*9, H*W), (c, kh, kw) order
    cols = cols.transpose(0, 1).reshape(channels * 9, -1)  # (C*9, N*H*W)
    out = weight.flatten(1) @ cols  # (Cout, N*H*W)
    return out.view(-1, batch, height, width).transpose(0, 1)


def auto_uses_gemm(x: torch.Tensor) -> bool:
    """The ``'auto'`` rule of :class:`Conv3x3` for an input (N, C, H, W):
    the matrix product on CPU for at most 64 positions and at least 1024
    channels (measured faster there, docs/benchmarks.md)."""
    return (x.device.type == 'cpu'
            and x.shape[-2] * x.shape[-1] <= _GEMM_MAX_POSITIONS
            and x.shape[1] >= _GEMM_MIN_CHANNELS)


class Conv3x3(nn.Conv2d):
    """A 3x3 convolution (stride 1, padding 1, no bias) that can run as a
    matrix product.

    Its parameters and state dict are those of ``nn.Conv2d``; only how the
    product is computed changes.

    Args:
        in_channels (int): input channels.
        out_channels (int): output channels.
        impl (str): ``'native'`` (``nn.Conv2d``), ``'gemm'``
            (:func:`conv3x3_as_matmul`) or ``'auto'``: ``'gemm'`` on CPU for
            maps of at most 64 positions with at least 1024 input channels,
            where it measured faster, ``'native'`` otherwise.
    """

    def __init__(self, in_channels: int, out_channels: int,
                 impl: str = 'auto') -> None:
        super().__init__(in_channels, out_channels, 3, padding=1, bias=False)
        self.impl = check_choice(impl, 'conv_impl', _CONV_IMPLS)

    def use_gemm(self, x: torch.Tensor) -> bool:
        """Whether ``forward(x)`` runs as a matrix product."""
        if self.impl != 'auto':
            return self.impl == 'gemm'
        return auto_uses_gemm(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.use_gemm(x):
            return conv3x3_as_matmul(x, self.weight)
        return super().forward(x)


def _pair(size) -> Tuple[int, int]:
    if isinstance(size, int):
        return size, size
    height, width = size
    return int(height), int(width)


@MODELS.register_module()
class CrossAttentionProjector(nn.Module):
    """Project a student feature map onto teacher-shaped tokens.

    Teacher-side queries attend, with global multi-head cross attention, to
    the student's positions; the result has the teacher's token grid and
    width whatever the student's resolution and width are.

    Args:
        student_channels (int): Cs of the student feature.
        teacher_channels (int): Ct of the teacher tokens.
        student_size (int | tuple): (Hs, Ws) of the student feature; sets the
            shape of the positional embedding.
        query_size (int | tuple): (Hq, Wq), the teacher's token grid.
        num_heads (int): attention heads h; must divide ``teacher_channels``.
        self_query (bool): learn the queries (True) or take them from
            ``forward`` (False). Defaults to True.
        softmax_scale (float): extra factor on the attention logits, 5.0 in
            every released config.
        mlp_ratio (int): hidden width of the output MLP over Ct. Defaults
            to 4.
        norm_cfg (dict): the norm of the student path, BatchNorm in the
            method. ``dict(type='SyncBN')`` follows from the config key
            ``sync_bn='torch'``; a norm without batch statistics (e.g.
            ``dict(type='GN', num_groups=1)``) makes multi-process runs equal
            single-process ones where SyncBN is unavailable (CPU).
        conv_impl (str): how the 3x3 convolution of the student path runs,
            the same function either way: ``'auto'`` (default), ``'native'``
            or ``'gemm'``; see :class:`Conv3x3`.

    Shapes:
        student feature (N, Cs, Hs, Ws), queries (N, Hq*Wq, Ct)
        -> tokens (N, Hq*Wq, Ct).
    """

    def __init__(self,
                 student_channels: int,
                 teacher_channels: int,
                 student_size,
                 query_size,
                 num_heads: int,
                 self_query: bool = True,
                 softmax_scale: float = 5.0,
                 mlp_ratio: int = 4,
                 norm_cfg: Optional[dict] = None,
                 conv_impl: str = 'auto') -> None:
        super().__init__()
        check_integer(
            num_heads, 'num_heads',
            note=f'a divisor of the teacher width {teacher_channels}')
        if num_heads < 1 or teacher_channels % num_heads != 0:
            raise ValueError(
                f'`num_heads={num_heads!r}` does not divide the teacher '
                f'width {teacher_channels}; pick a divisor of '
                f'{teacher_channels}.')
        check_number(
            softmax_scale, 'softmax_scale', greater_than=0,
            note='it multiplies the attention logits; released configs use '
            '5.0')
        check_integer(mlp_ratio, 'mlp_ratio', minimum=1,
                      note='the MLP hidden width over Ct; the method uses 4')
        check_flag(self_query, 'self_query')
        self.student_channels = student_channels
        self.teacher_channels = teacher_channels
        self.student_size = _pair(student_size)
        self.query_size = _pair(query_size)
        self.num_heads = num_heads
        self.head_dim = teacher_channels // num_heads
        self.self_query = self_query
        # Queries from outside: the final stage passes it P_sp / P_fr.
        self.takes_queries = not self_query
        self.softmax_scale = softmax_scale
        # The factor applied to Q K^T before the softmax.
        self.scale = self.head_dim**-0.5 * softmax_scale

        # Student path: ReLU(BN(Conv3x3(S))) + P.
        self.student_conv = Conv3x3(
            student_channels, student_channels, impl=conv_impl)
        self.student_norm = build_norm_layer(norm_cfg or dict(type='BN'),
                                             student_channels)[1]
        self.pos_embed = nn.Parameter(
            torch.zeros(1, student_channels, *self.student_size))
        nn.init.trunc_normal_(self.pos_embed, std=0.02)

        num_queries = self.query_size[0] * self.query_size[1]
        if self_query:
            self.query_embed = nn.Embedding(num_queries, teacher_channels)
        self.query_proj = nn.Linear(teacher_channels, teacher_channels)

        self.q = nn.Linear(teacher_channels, teacher_channels)
        self.k = nn.Linear(student_channels, teacher_channels)
        self.v = nn.Linear(student_channels, teacher_channels)
        self.out_proj = nn.Linear(teacher_channels, teacher_channels)

        self.norm = nn.LayerNorm(teacher_channels)
        self.mlp = nn.Sequential(
            nn.Linear(teacher_channels, mlp_ratio * teacher_channels),
            nn.ReLU(inplace=True),
            nn.Linear(mlp_ratio * teacher_channels, teacher_channels))

    def _split_heads(self, x: torch.Tensor) -> torch.Tensor:
        # (B, L, Ct) -> (B, h, L, d)
        batch, length, _ = x.shape
        return x.view(batch, length, self.num_heads,
                      self.head_dim).transpose(1, 2)

    def _student_tokens(self, student: torch.Tensor) -> torch.Tensor:
        """Student path: (N, Cs, Hs, Ws) -> tokens (N, Hs*Ws, Cs)."""
        channels, height, width = student.shape[1:]
        if (channels, height, width) != (self.student_channels,
                                         *self.student_size):
            raise ValueError(
                f'CrossAttentionProjector was built for student features '
                f'{(self.student_channels, *self.student_size)} (C, H, W) '
                f'but got {(channels, height, width)}.')
        s = F.relu(self.student_norm(self.student_conv(student)))
        s = s + self.pos_embed
        return s.flatten(2).transpose(1, 2)  # (N, Hs*Ws, Cs)

    def _query_tokens(self,
                      queries: Optional[torch.Tensor]) -> torch.Tensor:
        """Learned or given queries after ReLU(Linear): (1 or N, Lq, Ct)."""
        if self.self_query:
            if queries is not None:
                raise ValueError('This projector learns its queries '
                                 '(self_query=True); do not pass queries.')
            # Shared over the batch: project once, broadcast later.
            q = self.query_embed.weight.unsqueeze(0)  # (1, Lq, Ct)
        else:
            if queries is None:
                raise ValueError('This projector takes its queries from '
                                 'outside (self_query=False); pass queries.')
            expected = (self.query_size[0] * self.query_size[1],
                        self.teacher_channels)
            if tuple(queries.shape[1:]) != expected:
                raise ValueError(
                    f'Queries must be (N, {expected[0]}, {expected[1]}), got '
                    f'{tuple(queries.shape)}.')
            q = queries
        return F.relu(self.query_proj(q))

    def _attention_inputs(
        self, student: torch.Tensor, queries: Optional[torch.Tensor]
    ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Per-head Q (N, h, Lq, d), K and V (N, h, Ls, d)."""
        s = self._student_tokens(student)
        q = self._split_heads(self.q(self._query_tokens(queries)))
        k = self._split_heads(self.k(s))
        v = self._split_heads(self.v(s))
        return q.expand(student.shape[0], -1, -1, -1), k, v

    def forward(self,
                student: torch.Tensor,
                queries: Optional[torch.Tensor] = None) -> torch.Tensor:
        q, k, v = self._attention_inputs(student, queries)
        o = F.scaled_dot_product_attention(q, k, v, scale=self.scale)
        o = o.transpose(1, 2).flatten(2)  # (N, Hq*Wq, Ct), heads concatenated
        y = self.norm(self.out_proj(o))
        return y + self.mlp(y)  # (N, Hq*Wq, Ct)

    def attention_weights(
            self,
            student: torch.Tensor,
            queries: Optional[torch.Tensor] = None) -> torch.Tensor:
        """The attention ``forward`` applies, for inspection.

        ``forward`` uses the fused ``F.scaled_dot_product_attention``, which
        never materialises the weights; this recomputes them from the same
        Q and K with the same scale.

        Args:
            student (Tensor): (N, Cs, Hs, Ws), as for ``forward``.
            queries (Tensor, optional): (N, Hq*Wq, Ct), as for ``forward``.

        Returns:
            Tensor: (N, h, Hq*Wq, Hs*Ws); each row (one head, one teacher
            token) is a softmax over the student positions, row-major.
        """
        q, k, _ = self._attention_inputs(student, queries)
        return torch.softmax(q @ k.transpose(-2, -1) * self.scale, dim=-1)
