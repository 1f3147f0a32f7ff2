from mmscalekd.models.teachers import load_teacher_model_config
from .scalekd_distiller import ScaleKDDistiller

__all__ = ['ScaleKDDistiller', 'load_teacher_model_config']
