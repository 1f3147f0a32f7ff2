from .config_values import (build_at, check_choice, check_flag,
                            check_integer, check_module_name, check_number,
                            check_numbers, check_size)
from .data_preprocessor import student_data_preprocessor
from .recorder import ModuleOutputsRecorder
from .student_features import StudentFeatureReader
from .tokens import map_to_tokens, tokens_to_map

__all__ = [
    'build_at', 'check_choice', 'check_flag', 'check_integer',
    'check_module_name', 'check_number', 'check_numbers', 'check_size',
    'ModuleOutputsRecorder', 'student_data_preprocessor',
    'StudentFeatureReader', 'tokens_to_map', 'map_to_tokens'
]
