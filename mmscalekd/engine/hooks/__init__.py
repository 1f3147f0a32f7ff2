from .data_check_hook import DataCheckHook, DataError, ReportingDataset
from .finite_check_hook import FiniteCheckHook

__all__ = ['DataCheckHook', 'DataError', 'FiniteCheckHook', 'ReportingDataset']
