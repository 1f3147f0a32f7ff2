"""ScaleKD distiller: wiring of student, frozen teacher, stages, losses."""
from typing import Dict, Optional, Tuple

import torch
from mmengine.model import BaseModel
from torch import nn

from mmpretrain.registry import MODELS

from mmscalekd.compat import classification_losses, has_classification_loss
from mmscalekd.models.interfaces import LogitLoss
from mmscalekd.models.stages import build_stage
from mmscalekd.models.teachers import load_frozen_teacher
from mmscalekd.models.teachers.swin import check_window_fits
from mmscalekd.models.utils import (ModuleOutputsRecorder,
                                    StudentFeatureReader, build_at,
                                    check_flag, check_integer, check_size,
                                    student_data_preprocessor)

from .fast_paths import FastPathsMixin
from .student_start import load_student_start, split_student_start

__all__ = ['ScaleKDDistiller']

_TEACHER_KEYS = {
    'config', 'checkpoint', 'adapter', 'mean', 'std', 'input_size', 'dtype'
}


@MODELS.register_module()
class ScaleKDDistiller(FastPathsMixin, BaseModel):
    """Distil a frozen ViT teacher into a student with ScaleKD.

    The loss (method section 4) is ``(1 - alpha) * loss_cls + loss_kd`` plus
    the losses of two :class:`ScaleKDStage` s (sections 1-3). This class
    only wires the parts; shapes are read off the networks by one forward
    at ``input_size``.

    Args:
        student (dict): mmpretrain classifier config of the student. Its
            ``init_cfg=dict(type='Pretrained', checkpoint=...)`` (a student
            file, ``<checkpoint>_student.pth`` or extract_student's
            ``student.pth``, or an mmpretrain classifier checkpoint;
            ``prefix='student.'`` for a distillation checkpoint) starts the
            student from that file, loaded strictly into the student alone.
        teacher (dict): :func:`load_frozen_teacher` keys ``config``,
            ``checkpoint`` (None: a random teacher, with a warning) and
            optionally ``adapter``, ``mean`` / ``std`` and ``input_size``
            (the teacher's own normalisation and resolution) and ``dtype``
            (e.g. ``'bfloat16'``: the frozen weights in half the memory).
        perception_stage (dict): :class:`ScaleKDStage` keys, e.g.
            ``dict(student_tap='backbone.layer3', teacher_split=2,
            projector=dict(type='CrossAttentionProjector', num_heads=16),
            loss=dict(type='DualViewFeatureLoss'))``.
        final_stage (dict): the same keys without ``teacher_split``;
            ``projector.self_query=False`` takes the queries from the
            perception stage. Without both stages: logit distillation only
            (the baseline), with the same teacher handling.
        logit_kd (dict, optional): ``LogitKDLoss`` config; None disables
            logit distillation (the student loss then keeps weight 1).
        input_size (int | tuple): size of the training images. Default 224.
        input_channels (int): channels of the input images. Defaults to 3.
        keep_teacher_eval (bool): keep the teacher in eval mode (default);
            False reproduces the reference code's drop-path in the teacher.
        student_tokens (dict, optional): ``grid`` and ``extra_tokens`` of
            token taps, read off the student when left out
            (:class:`StudentFeatureReader`).
        data_preprocessor (dict, optional): defaults to the student's, with
            its batch augments.
        compile (dict, optional): keyword arguments of ``torch.compile``
            (e.g. ``dict()`` or ``dict(mode='max-autotune')``) for the hot
            path of :meth:`loss`: the teacher's forward (no gradients) and
            its rest run on projected tokens, the student's feature
            extraction and head, and every projector. None (default): all
            eager. The optimizer wrapper, hooks, losses and their
            bookkeeping stay eager. Unless the dict gives ``dynamic``, it
            is ``dynamic=False``: each batch size gets its own static graph,
            so the last, smaller batch of an epoch compiles once more (the
            same size every epoch) and never again.
        channels_last (bool): the student and the projectors, and the
            images in :meth:`loss`, in channels-last memory format on CUDA.
            It measured slower on CPU, so there it stays off (logged once).
    """

    def __init__(self,
                 student: dict,
                 teacher: dict,
                 perception_stage: Optional[dict] = None,
                 final_stage: Optional[dict] = None,
                 logit_kd: Optional[dict] = dict(
                     type='LogitKDLoss', tau=1.0, alpha=0.5),
                 input_size=224,
                 input_channels: int = 3,
                 keep_teacher_eval: bool = True,
                 student_tokens: Optional[dict] = None,
                 data_preprocessor: Optional[dict] = None,
                 compile: Optional[dict] = None,
                 channels_last: bool = False,
                 init_cfg: Optional[dict] = None) -> None:
        student, student_start = split_student_start(student)
        super().__init__(
            data_preprocessor=student_data_preprocessor(
                student, data_preprocessor),
            init_cfg=init_cfg)
        #: The ``Pretrained`` entry of ``model.student.init_cfg``, loaded
        #: strictly by :meth:`init_weights`.
        self.student_start = student_start
        stages = {'perception': perception_stage, 'final': final_stage}
        stages = {k: dict(v) for k, v in stages.items() if v is not None}
        _check_config(stages, teacher, logit_kd)
        input_size = check_size(input_size, 'model.input_size')
        input_channels = check_integer(input_channels,
                                       'model.input_channels', minimum=1)
        _check_teacher_channels(teacher, input_channels)
        check_flag(keep_teacher_eval, 'model.keep_teacher_eval')
        check_flag(channels_last, 'model.channels_last')
        # Built before the networks, so its errors come before the (slow)
        # teacher build; it holds no weights.
        logit_kd = build_at(logit_kd, 'model.logit_kd', LogitLoss,
                            'LogitKDLoss') if logit_kd else None
        self.student = MODELS.build(student)
        # Checked before the (slow) teacher build.
        if not has_classification_loss(getattr(self.student, 'head', None)):
            raise TypeError('`model.student` must be an mmpretrain '
                            'classifier with a classification head.')
        self.student_features = StudentFeatureReader.from_student(
            self.student, student_tokens)
        self.student_taps = ModuleOutputsRecorder(
            {name: cfg.get('student_tap') for name, cfg in stages.items()})
        self.student_taps.check(self.student, 'model.{key}_stage.student_tap')
        self.teacher = load_frozen_teacher(
            **teacher,
            split=stages['perception']['teacher_split'] if stages else None,
            eval_mode=keep_teacher_eval,
            data_normalization=_normalization(self.data_preprocessor))
        check_window_fits(
            self.teacher.network, self.teacher.input_size or input_size,
            'model.teacher.input_size' if self.teacher.input_size else
            'model.input_size')
        self.logit_kd = logit_kd
        # (names, non-finite flags, values) of the last loss terms, read by
        # FiniteCheckHook right before the optimizer step.
        self.loss_terms = None
        self.input_channels = input_channels
        self.input_size = input_size
        self.perception_stage = self.final_stage = None
        if stages:
            self._build_stages(stages['perception'], stages['final'])
        #: What the weights' names and shapes do not show; recorded in
        #: training checkpoints and compared when one is loaded.
        self.architecture = {
            f'{name}_stage.{key}': value
            for name, stage in self.stages.items()
            for key, value in stage.architecture.items()
        }
        self._setup_fast_paths(compile, channels_last)

    def _build_stages(self, perception: dict, final: dict) -> None:
        features, teacher = self._probe()
        split = (teacher.split_tokens.shape[-1], *teacher.split_size)
        final_stage = build_stage(
            'final', final, student_shape=tuple(features['final'].shape[1:]),
            target_shape=tuple(teacher.final_feature.shape[1:]))
        queries = final_stage.views if final_stage.takes_queries else ()
        self.perception_stage = build_stage(
            'perception', perception, query_views=queries,
            student_shape=tuple(features['perception'].shape[1:]),
            target_shape=split)
        self.final_stage = final_stage

    def init_weights(self) -> None:
        super().init_weights()
        if self.student_start is not None:
            # After the student's own init, so that the file has the last
            # word; mmengine's PretrainedInit would only warn on a mismatch.
            load_student_start(self.student, self.student_start)

    @property
    def stages(self) -> Dict[str, nn.Module]:
        """Stage name -> :class:`ScaleKDStage`, empty for logit KD only."""
        return {name: getattr(self, f'{name}_stage')
                for name in ('perception', 'final')
                if getattr(self, f'{name}_stage') is not None}

    @property
    def projectors(self) -> Dict[str, nn.Module]:
        """``'<stage>_<view>'`` (e.g. ``'final_spatial'``) -> projector."""
        return {f'{name}_{view}': projector
                for name, stage in self.stages.items()
                for view, projector in stage.projectors.items()}

    @torch.no_grad()
    def _probe(self):
        """Student tap features and teacher outputs of one zero image."""
        dummy = torch.zeros(1, self.input_channels, *self.input_size)
        was_training = self.student.training
        self.student.eval()
        try:
            logits, features = self._student_forward(dummy)
        finally:
            self.student.train(was_training)
        teacher = self.teacher(dummy) if self.teacher.adapter else None
        classes = (teacher.logits if teacher else
                   self.teacher.logits(dummy)).shape[-1]
        if self.logit_kd and logits.shape[-1] != classes:
            raise ValueError(
                f'Logit distillation needs the same classes: the student '
                f'predicts {logits.shape[-1]} and the teacher {classes}. '
                'Match `num_classes` or set `model.logit_kd=None`.')
        return features, teacher

    def forward(self,
                inputs: torch.Tensor,
                data_samples: Optional[list] = None,
                mode: str = 'tensor'):
        if mode == 'loss':
            return self.loss(inputs, data_samples)
        # Inference is the student alone, so mmpretrain's evaluators and
        # inferencers see an ordinary classifier.
        return self.student(inputs, data_samples, mode=mode)

    def _student_forward(self, inputs: torch.Tensor):
        """Student logits and its tap features as maps (N, C, H, W)."""
        with self.student_taps.record(self.student) as outputs:
            logits = self._student_logits(inputs)
        features = {
            name: self.student_features(output, inputs.shape[-2:], name)
            for name, output in outputs.items()
        }
        return logits, features

    def _student_logits(self, inputs: torch.Tensor) -> torch.Tensor:
        """Images (N, C, H, W) -> student logits (N, K); compiled with
        ``compile``."""
        return self.student.head(self.student.extract_feat(inputs))

    def loss(self, inputs: torch.Tensor,
             data_samples: list) -> Dict[str, torch.Tensor]:
        _check_inputs(inputs, self.input_channels, self.input_size)
        inputs = self._memory_format(inputs)
        teacher, teacher_logits, logits, features = self._forward_networks(
            inputs)
        losses = dict()
        cls_weight = 1.0 - self.logit_kd.alpha if self.logit_kd else 1.0
        for key, value in classification_losses(self.student.head, logits,
                                                data_samples).items():
            # `loss` and, without batch augments, accuracies (logged only).
            losses['loss_cls' if key == 'loss' else key] = (
                cls_weight * value if key == 'loss' else value)
        if self.logit_kd:
            losses['loss_kd'] = self.logit_kd(logits, teacher_logits)
        losses.update(self._forward_stages(features, teacher))
        return losses

    def _forward_networks(self, inputs: torch.Tensor):
        """The teacher's outputs (None without stages) and logits, the
        student's logits and tap features, for a batch (N, C, H, W)."""
        teacher = self.teacher(inputs) if self.stages else None
        teacher_logits = teacher.logits if teacher else self.teacher.logits(
            inputs)
        logits, features = self._student_forward(inputs)
        return teacher, teacher_logits, logits, features

    def _forward_stages(self, features: Dict[str, torch.Tensor],
                        teacher, received: Optional[dict] = None
                        ) -> Dict[str, torch.Tensor]:
        """The stages' losses: ``P_sp`` / ``P_fr`` through the teacher's
        rest, then the last student feature, queried by them (method
        section 3). ``received``, when given, gets what each projector
        receives (see :meth:`projector_inputs`)."""
        losses, queries = dict(), None
        for name, stage in self.stages.items():
            if received is not None:
                received.update({
                    f'{name}_{view}': value for view, value in
                    stage.projector_inputs(features[name], queries).items()
                })
            stage_losses, queries = stage(features[name], self.teacher,
                                          teacher, queries)
            losses.update(stage_losses)
        return losses

    def parse_losses(self, losses: Dict[str, torch.Tensor]):
        """mmengine's sum of the loss terms, recording which are finite.

        No device synchronisation here: :class:`FiniteCheckHook` reads the
        record right before the optimizer step (across all processes), so a
        non-finite term stops every rank in the same iteration.
        """
        loss, log_vars = super().parse_losses(losses)
        names = [k for k in losses if 'loss' in k]
        values = torch.stack([log_vars[k].detach().float() for k in names])
        flags = ~torch.isfinite(values)
        if self.loss_terms is not None:  # accumulating gradients
            flags = flags | self.loss_terms[1]
        self.loss_terms = (names, flags, values)
        return loss, log_vars

    @torch.no_grad()
    def projector_inputs(
        self, inputs: torch.Tensor
    ) -> Dict[str, Tuple[torch.Tensor, Optional[torch.Tensor]]]:
        """What each projector receives for a preprocessed batch (N, C, H,
        W), for inspection: projector name (a key of :attr:`projectors`) ->
        ``(student feature (N, Cs, Hs, Ws), queries (N, Hq*Wq, Ct) or None
        for learned ones)``, recorded on the path of :meth:`loss`."""
        received = {}
        teacher, _, _, features = self._forward_networks(inputs)
        self._forward_stages(features, teacher, received)
        return received


def _check_config(stages: dict, teacher: dict, logit_kd) -> None:
    """What must hold before anything is built (the teacher is slow)."""
    if len(stages) == 1:
        raise ValueError(
            'Give both `model.perception_stage` and `model.final_stage` '
            '(ScaleKD) or neither (logit distillation only).')
    if not stages and not logit_kd:
        raise ValueError(
            'Nothing to distil: without `model.perception_stage` and '
            '`model.final_stage`, set `model.logit_kd`.')
    if 'teacher_split' in stages.get('final', {}):
        raise KeyError('`model.final_stage.teacher_split`: only the '
                       'perception stage splits the teacher.')
    if stages and 'teacher_split' not in stages['perception']:
        raise KeyError(
            '`model.perception_stage.teacher_split` is required '
            '(e.g. 2 for stage 3 of a Swin teacher).')
    if stages:
        check_integer(
            stages['perception']['teacher_split'],
            'model.perception_stage.teacher_split',
            note='the 0-based stage or block after which the teacher is '
            'split, e.g. 2 for stage 3 of a Swin teacher')
    unknown = sorted(set(teacher) - _TEACHER_KEYS)
    if unknown:
        raise KeyError(f'Unknown key(s) {unknown} in `model.teacher`; '
                       f'allowed keys are {sorted(_TEACHER_KEYS)}.')
    for key in ('config', 'checkpoint'):
        if key not in teacher:
            raise KeyError(f'`model.teacher.{key}` is required.')


def _check_teacher_channels(teacher: dict, channels: int) -> None:
    """The teacher's own mean / std give one value per image channel (or
    one for all, as mmpretrain's data preprocessor allows)."""
    for key in ('mean', 'std'):
        values = teacher.get(key)
        if isinstance(values, (list, tuple)) and len(values) not in (
                1, channels):
            raise ValueError(
                f'`model.teacher.{key}={values!r}` gives {len(values)} '
                f'values for images of {channels} channels '
                '(`model.input_channels`); give one value per channel.')


def _normalization(data_preprocessor) -> Optional[tuple]:
    """``(mean, std)`` the data preprocessor normalises with, or None."""
    # mmpretrain's preprocessors have the buffers only when they normalise.
    mean = getattr(data_preprocessor, 'mean', None)
    std = getattr(data_preprocessor, 'std', None)
    if isinstance(mean, torch.Tensor) and isinstance(std, torch.Tensor):
        return mean, std
    return None


def _check_inputs(inputs: torch.Tensor, channels: int,
                  size: Tuple[int, int]) -> None:
    """Images (N, C, H, W) must be what the projectors were built for."""
    if inputs.dim() != 4 or inputs.shape[1] != channels:
        raise ValueError(
            f'The images reach the model as {tuple(inputs.shape)} but the '
            f'networks take {channels} channels (`model.input_channels`): '
            "load images as RGB (LoadImageFromFile with color_type='color') "
            'or build both networks for the images you have.')
    if tuple(inputs.shape[-2:]) != size:
        raise ValueError(
            f'The training images are {tuple(inputs.shape[-2:])} (height, '
            f'width) but `model.input_size={size!r}`, the size the '
            f'projectors were built for. Set `model.input_size='
            f'{tuple(inputs.shape[-2:])}` or make the training pipeline '
            'crop to the input size.')
