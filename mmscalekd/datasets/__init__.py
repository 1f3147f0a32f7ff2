from .synthetic import SyntheticClassificationDataset

__all__ = ['SyntheticClassificationDataset']
