from .statistics import (PairedComparison, PredictionFileError, Predictions,
                         SeedComparison, accuracy, align_predictions,
                         compare_across_seeds, compare_paired,
                         load_predictions, mcnemar_pvalue, paired_difference,
                         paired_verdict, predictions_from_results,
                         seeds_verdict)

__all__ = [
    'PairedComparison', 'PredictionFileError', 'Predictions', 'SeedComparison',
    'accuracy', 'align_predictions', 'compare_across_seeds', 'compare_paired',
    'load_predictions', 'mcnemar_pvalue', 'paired_difference',
    'paired_verdict', 'predictions_from_results', 'seeds_verdict'
]
