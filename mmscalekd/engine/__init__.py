from .runner import ScaleKDRunner

__all__ = ['ScaleKDRunner']
