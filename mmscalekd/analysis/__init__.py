"""Analysis as a library: the statistics of student comparisons, what a
training step costs, and the one table formatter. ``tools/analysis/*.py``
and ``tools/quickstart.py`` are command lines over these modules.

Re-exported here: what compares students' predictions, and the table
formatter. What measures training steps (``train_step``, ``step_cost``,
``step_comparison``, ``cost``, ``timing``, ``conv_timing``) builds models
and is imported from its submodule.
"""
from .statistics import (PairedComparison, PredictionFileError, Predictions,
                         SeedComparison, accuracy, align_predictions,
                         compare_across_seeds, compare_paired,
                         load_predictions, mcnemar_pvalue, paired_difference,
                         paired_verdict, predictions_from_results,
                         seeds_verdict)
from .student_comparison import compare_students, render_comparison
from .tables import format_table

__all__ = [
    'PairedComparison', 'PredictionFileError', 'Predictions', 'SeedComparison',
    'accuracy', 'align_predictions', 'compare_across_seeds', 'compare_paired',
    'load_predictions', 'mcnemar_pvalue', 'paired_difference',
    'paired_verdict', 'predictions_from_results', 'seeds_verdict',
    'compare_students', 'render_comparison', 'format_table'
]
