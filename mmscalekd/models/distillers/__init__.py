from .scalekd_distiller import ScaleKDDistiller

__all__ = ['ScaleKDDistiller']
