from .cross_attention_projector import CrossAttentionProjector

__all__ = ['CrossAttentionProjector']
