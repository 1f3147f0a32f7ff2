"""Validation of the student, and of the frozen teacher beside it."""
import copy

import torch
from mmengine.model import is_model_wrapper
from mmengine.runner import ValLoop
from mmengine.runner.amp import autocast

from mmpretrain.registry import LOOPS

__all__ = ['ScaleKDValLoop']

_WHEN = ('first', 'always', 'never')


@LOOPS.register_module()
class ScaleKDValLoop(ValLoop):
    """mmengine's validation of the student, plus the teacher's accuracy.

    The teacher is evaluated on the same batches with a second copy of the
    evaluator and logged as ``teacher/<metric>`` (e.g.
    ``teacher/accuracy/top1``), as MMRazor's distillation validation loop
    does. By default only the first validation of a run does it: a wrong
    or badly converted teacher checkpoint then shows up as a low teacher
    accuracy in the first log, at the cost of one extra teacher pass.
    ScaleKDRunner uses this loop for ``val_cfg`` without a ``type``.

    Args:
        runner, dataloader, evaluator, fp16: as for mmengine's ``ValLoop``.
        evaluate_teacher (str): ``'first'`` (default), ``'always'`` or
            ``'never'`` (``val_cfg.evaluate_teacher``).
    """

    def __init__(self,
                 runner,
                 dataloader,
                 evaluator,
                 fp16: bool = False,
                 evaluate_teacher: str = 'first') -> None:
        if evaluate_teacher not in _WHEN:
            raise ValueError(
                f'`val_cfg.evaluate_teacher={evaluate_teacher!r}`: use one '
                f'of {_WHEN}.')
        teacher_evaluator = copy.deepcopy(evaluator)
        super().__init__(runner, dataloader, evaluator, fp16)
        if isinstance(teacher_evaluator, (dict, list)):
            teacher_evaluator = runner.build_evaluator(teacher_evaluator)
        teacher_evaluator.dataset_meta = self.evaluator.dataset_meta
        self.teacher_evaluator = teacher_evaluator
        self.evaluate_teacher = evaluate_teacher
        self._runs = 0

    @property
    def _distiller(self):
        model = self.runner.model
        return model.module if is_model_wrapper(model) else model

    def _with_teacher(self) -> bool:
        if getattr(self._distiller, 'teacher', None) is None:
            return False  # a student-alone config
        return self.evaluate_teacher == 'always' or (
            self.evaluate_teacher == 'first' and self._runs == 0)

    def run(self) -> dict:
        """The student's validation; the teacher's metrics join its log.

        The distiller's ``val_step`` gives predictions, never losses, so
        there are no validation losses to log.
        """
        with_teacher = self._with_teacher()
        self._runs += 1
        self.runner.call_hook('before_val')
        self.runner.call_hook('before_val_epoch')
        self.runner.model.eval()
        for idx, data_batch in enumerate(self.dataloader):
            self.run_iter(idx, data_batch)
            if with_teacher:
                self._teacher_iter(data_batch)
        size = len(self.dataloader.dataset)
        metrics = self.evaluator.evaluate(size)
        if with_teacher:
            teacher = self.teacher_evaluator.evaluate(size)
            metrics.update({f'teacher/{k}': v for k, v in teacher.items()})
        self.runner.call_hook('after_val_epoch', metrics=metrics)
        self.runner.call_hook('after_val')
        return metrics

    @torch.no_grad()
    def _teacher_iter(self, data_batch: dict) -> None:
        distiller = self._distiller
        with autocast(enabled=self.fp16):
            data = distiller.data_preprocessor(data_batch, False)
            # Copies: the student's predictions are in the originals.
            outputs = distiller.teacher.predict(
                data['inputs'], copy.deepcopy(data['data_samples']))
        self.teacher_evaluator.process(data_samples=outputs,
                                       data_batch=data_batch)
