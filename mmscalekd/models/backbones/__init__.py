from .timm_student import TimmStudentBackbone

__all__ = ['TimmStudentBackbone']
