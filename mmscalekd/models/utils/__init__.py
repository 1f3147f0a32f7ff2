from .student_features import StudentFeatureReader, tokens_to_map

__all__ = ['StudentFeatureReader', 'tokens_to_map']
