from .recorder import ModuleOutputsRecorder
from .student_features import StudentFeatureReader
from .tokens import map_to_tokens, tokens_to_map

__all__ = [
    'ModuleOutputsRecorder', 'StudentFeatureReader', 'tokens_to_map',
    'map_to_tokens'
]
