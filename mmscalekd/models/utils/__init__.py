from .data_preprocessor import student_data_preprocessor
from .recorder import ModuleOutputsRecorder
from .student_features import StudentFeatureReader
from .tokens import map_to_tokens, tokens_to_map

__all__ = [
    'ModuleOutputsRecorder', 'student_data_preprocessor',
    'StudentFeatureReader', 'tokens_to_map', 'map_to_tokens'
]
