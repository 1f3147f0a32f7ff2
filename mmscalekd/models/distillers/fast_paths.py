"""The GPU fast paths of the distiller: compile and channels-last.

Kept apart from the wiring in :mod:`.scalekd_distiller`: nothing here
changes the function computed, only how fast it runs.
"""
import torch
from mmengine.logging import print_log

__all__ = ['FastPathsMixin']


class FastPathsMixin:
    """``model.compile`` and ``model.channels_last`` of the distiller.

    Expects ``self.student``, ``self.teacher`` (:class:`FrozenTeacher`),
    ``self.projectors``, ``self._student_logits``, ``self.channels_last``
    and ``self.compile_options``.
    """

    def _setup_fast_paths(self, compile, channels_last: bool) -> None:
        if compile is not None and not isinstance(compile, dict):
            raise TypeError(
                f'`model.compile={compile!r}` must be None (eager) or a dict '
                'of torch.compile arguments, e.g. dict() or '
                "dict(mode='max-autotune').")
        self.channels_last = channels_last
        self._channels_last_logged = False
        self.compile_options = None if compile is None else dict(
            dict(dynamic=False), **compile)
        if self.compile_options is not None:
            self._compile_hot_path(self.compile_options)

    def _compile_hot_path(self, options: dict) -> None:
        """Compile what :meth:`loss` runs (see ``compile`` above).

        Functions and module calls are compiled, not the modules replaced:
        names, state dicts and the recorder's hooks stay as they are. The
        hooks that read the student's taps are registered eagerly around
        the compiled student, which dynamo traces through without a graph
        break or a recompile.
        """
        self._student_logits = torch.compile(self._student_logits,
                                             **options)
        # The teacher's hot functions, each with its input preparation and
        # dtype casts.
        for name in ('run_outputs', 'run_logits', 'run_rest'):
            setattr(self.teacher, name,
                    torch.compile(getattr(self.teacher, name), **options))
        for projector in self.projectors.values():
            projector.compile(**options)

    def __getstate__(self) -> dict:
        # The compiled student is bound to this instance; a copy (e.g. the
        # EMA model's) compiles its own in __setstate__. The teacher is
        # shared by copies, its compiled functions with it.
        state = super().__getstate__()
        state.pop('_student_logits', None)
        return state

    def __setstate__(self, state: dict) -> None:
        super().__setstate__(state)
        if self.compile_options is not None:
            self._student_logits = torch.compile(self._student_logits,
                                                 **self.compile_options)
            for projector in self.projectors.values():
                projector.compile(**self.compile_options)

    def _apply(self, fn, *args, **kwargs):
        # After .to(device) / .cuda(): the memory format follows the device.
        super()._apply(fn, *args, **kwargs)
        if self.__dict__.get('channels_last') and self._on_cuda():
            for module in (self.student, *self.projectors.values()):
                module.to(memory_format=torch.channels_last)
        return self

    def _on_cuda(self) -> bool:
        return any(p.is_cuda for p in self.student.parameters())

    def _memory_format(self, inputs: torch.Tensor) -> torch.Tensor:
        """The images in channels-last format where ``channels_last``
        applies (CUDA), else as they are."""
        if not self.channels_last:
            return inputs
        if inputs.is_cuda:
            return inputs.contiguous(memory_format=torch.channels_last)
        if not self._channels_last_logged:
            self._channels_last_logged = True
            print_log(
                '`model.channels_last=True` applies on CUDA only: the model '
                'runs on CPU, where channels-last measured slower, so it '
                'stays off.', logger='current', level=20)
        return inputs
