from .cross_attention_projector import (Conv3x3, CrossAttentionProjector,
                                        conv3x3_as_matmul)

__all__ = ['CrossAttentionProjector', 'Conv3x3', 'conv3x3_as_matmul']
