from .checkpoint import (MMENGINE_CHECKPOINT_GLOBALS, CheckpointError,
                         load_state_dict_file)

__all__ = [
    'CheckpointError', 'MMENGINE_CHECKPOINT_GLOBALS', 'load_state_dict_file'
]
