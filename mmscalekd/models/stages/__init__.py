from .scalekd_stage import ScaleKDStage, build_stage

__all__ = ['ScaleKDStage', 'build_stage']
