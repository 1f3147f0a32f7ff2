from .scalekd_distiller import ScaleKDDistiller
from .teacher_builder import build_frozen_teacher, load_teacher_model_config

__all__ = [
    'ScaleKDDistiller', 'build_frozen_teacher', 'load_teacher_model_config'
]
