from .conv_projector import ConvProjector
from .cross_attention_projector import (Conv3x3, CrossAttentionProjector,
                                        auto_uses_gemm, conv3x3_as_matmul)

__all__ = [
    'ConvProjector', 'CrossAttentionProjector', 'Conv3x3', 'auto_uses_gemm',
    'conv3x3_as_matmul'
]
