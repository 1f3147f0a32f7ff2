from .checkpoint_check_hook import CheckpointCheckHook
from .data_check_hook import (DataCheckHook, DataError, ReportingPipeline,
                              dataset_build_problem, dataset_error)
from .finite_check_hook import FiniteCheckHook
from .global_batch_hook import GlobalBatchHook
from .student_checkpoint_hook import StudentCheckpointHook
from .teacher_val_hook import TeacherValHook
from .work_dir_hook import WorkDirHook, replace_link

__all__ = [
    'CheckpointCheckHook', 'DataCheckHook', 'DataError', 'FiniteCheckHook',
    'GlobalBatchHook', 'ReportingPipeline', 'StudentCheckpointHook',
    'TeacherValHook', 'WorkDirHook', 'dataset_build_problem', 'dataset_error',
    'replace_link'
]
