from .base import TeacherAdapter, TeacherOutputs, build_teacher_adapter
from .swin import SwinTeacherAdapter

__all__ = [
    'TeacherAdapter', 'TeacherOutputs', 'build_teacher_adapter',
    'SwinTeacherAdapter'
]
