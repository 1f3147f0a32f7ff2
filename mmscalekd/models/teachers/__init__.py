from .base import TeacherAdapter, TeacherOutputs, build_teacher_adapter
from .convnext import ConvNeXtTeacherAdapter
from .frozen_teacher import FrozenTeacher
from .loader import (TeacherConfig, load_frozen_teacher,
                     load_teacher_model_config, load_teacher_weights,
                     read_teacher_config, teacher_normalization)
from .plain_vit import PlainViTTeacherAdapter
from .staged import StagedTeacherAdapter
from .swin import SwinTeacherAdapter
from .swin_v2 import SwinV2TeacherAdapter
from .timm import (TimmSwinTeacherAdapter,
                   TimmVisionTransformerTeacherAdapter)
from .vision_transformer import (BEiTTeacherAdapter, DeiT3TeacherAdapter,
                                 DistilledVisionTransformerTeacherAdapter,
                                 VisionTransformerTeacherAdapter)

__all__ = [
    'FrozenTeacher', 'TeacherConfig', 'load_frozen_teacher',
    'load_teacher_model_config', 'load_teacher_weights',
    'read_teacher_config', 'teacher_normalization',
    'TeacherAdapter', 'TeacherOutputs', 'build_teacher_adapter',
    'PlainViTTeacherAdapter', 'StagedTeacherAdapter',
    'SwinTeacherAdapter', 'SwinV2TeacherAdapter',
    'VisionTransformerTeacherAdapter',
    'DistilledVisionTransformerTeacherAdapter', 'DeiT3TeacherAdapter',
    'BEiTTeacherAdapter', 'ConvNeXtTeacherAdapter',
    'TimmVisionTransformerTeacherAdapter', 'TimmSwinTeacherAdapter'
]
