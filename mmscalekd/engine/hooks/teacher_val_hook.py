"""The frozen teacher's accuracy, logged beside the student's."""
import copy

import torch
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmengine.runner.amp import autocast

from mmpretrain.registry import HOOKS

__all__ = ['TeacherValHook']

_WHEN = ('first', 'always', 'never')


@HOOKS.register_module()
class TeacherValHook(Hook):
    """Validation also evaluates the frozen teacher, on the same batches.

    Its metrics join the student's as ``teacher/<metric>`` (e.g.
    ``teacher/accuracy/top1``), logged and seen by the checkpoint hook, as
    MMRazor's distillation validation does. By default only the first
    validation of a run does it: a wrong or badly converted teacher
    checkpoint then shows up as a low teacher accuracy in the first log, at
    the cost of one extra teacher pass. Models without a teacher (a student
    alone) are left alone.

    Args:
        evaluate_teacher (str): ``'first'`` (default), ``'always'`` or
            ``'never'``.
    """

    # Before RuntimeInfoHook (VERY_HIGH) hands the metrics to the log.
    priority = 'HIGHEST'

    def __init__(self, evaluate_teacher: str = 'first') -> None:
        if evaluate_teacher not in _WHEN:
            raise ValueError(
                f'`TeacherValHook.evaluate_teacher={evaluate_teacher!r}` '
                f'(in custom_hooks): use one of {_WHEN}.')
        self.evaluate_teacher = evaluate_teacher
        self._runs = 0
        self._evaluator = None

    @staticmethod
    def _distiller(runner):
        model = runner.model
        return model.module if is_model_wrapper(model) else model

    def before_val_epoch(self, runner) -> None:
        teacher = getattr(self._distiller(runner), 'teacher', None)
        with_teacher = teacher is not None and (
            self.evaluate_teacher == 'always' or
            (self.evaluate_teacher == 'first' and self._runs == 0))
        self._runs += 1
        self._evaluator = None
        if with_teacher:
            evaluator = runner.val_loop.evaluator
            # A second evaluator of the same metrics, for the teacher alone.
            self._evaluator = copy.deepcopy(evaluator)
            self._evaluator.dataset_meta = evaluator.dataset_meta
            for metric in self._evaluator.metrics:
                metric.results.clear()

    @torch.no_grad()
    def after_val_iter(self, runner, batch_idx: int, data_batch=None,
                       outputs=None) -> None:
        if self._evaluator is None:
            return
        distiller = self._distiller(runner)
        with autocast(enabled=getattr(runner.val_loop, 'fp16', False)):
            data = distiller.data_preprocessor(data_batch, False)
            # Copies: the student's predictions are in the originals.
            predictions = distiller.teacher.predict(
                data['inputs'], copy.deepcopy(data['data_samples']))
        self._evaluator.process(data_samples=predictions,
                                data_batch=data_batch)

    def after_val_epoch(self, runner, metrics=None) -> None:
        if self._evaluator is None or metrics is None:
            return
        teacher = self._evaluator.evaluate(len(runner.val_loop.dataloader
                                               .dataset))
        metrics.update({f'teacher/{k}': v for k, v in teacher.items()})
        self._evaluator = None
