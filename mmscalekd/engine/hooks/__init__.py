from .data_check_hook import (DataCheckHook, DataError, ReportingDataset,
                              dataset_build_problem)
from .finite_check_hook import FiniteCheckHook

__all__ = [
    'DataCheckHook', 'DataError', 'FiniteCheckHook', 'ReportingDataset',
    'dataset_build_problem'
]
