"""ScaleKD distiller: wiring of student, frozen teacher, projectors, losses."""
import copy
from typing import Dict, List, Optional, Tuple

import torch
from mmengine.logging import print_log
from mmengine.model import BaseModel
from torch import nn

from mmpretrain.registry import MODELS

from mmscalekd.models.teachers import TeacherOutputs, build_teacher_adapter
from mmscalekd.models.utils import (ModuleOutputsRecorder,
                                    StudentFeatureReader, map_to_tokens,
                                    tokens_to_map)
from .teacher_builder import build_frozen_teacher

__all__ = ['ScaleKDDistiller']

_STAGE_KEYS = {
    'perception_stage': {
        'student_tap', 'teacher_split', 'num_heads', 'self_query',
        'spatial_weight', 'frequency_weight', 'softmax_scale', 'norm_cfg',
        'student_channels', 'student_size', 'teacher_channels', 'query_size',
        'conv_impl'
    },
    'final_stage': {
        'student_tap', 'num_heads', 'self_query', 'spatial_weight',
        'frequency_weight', 'softmax_scale', 'norm_cfg', 'student_channels',
        'student_size', 'teacher_channels', 'query_size', 'conv_impl'
    },
}
_TEACHER_KEYS = {'config', 'checkpoint', 'adapter'}
_VIEWS = ('spatial', 'frequency')


def _student_data_preprocessor(student: dict,
                               data_preprocessor: Optional[dict]):
    """The data preprocessor of the distiller, with the student's recipe.

    Inputs are preprocessed once, by the distiller, for both networks. An
    mmpretrain classifier turns ``train_cfg=dict(augments=[Mixup, CutMix])``
    into batch augments of its own preprocessor; here the student's recipe
    must become the distiller's, or its Mixup/CutMix would be dropped.
    """
    if data_preprocessor is None:
        data_preprocessor = student.get('data_preprocessor') or dict()
    if not isinstance(data_preprocessor, dict):
        return data_preprocessor  # an nn.Module built by the caller
    data_preprocessor = copy.deepcopy(dict(data_preprocessor))
    data_preprocessor.setdefault('type', 'ClsDataPreprocessor')
    train_cfg = student.get('train_cfg') or {}
    if 'augments' in train_cfg:
        data_preprocessor['batch_augments'] = copy.deepcopy(dict(train_cfg))
    return MODELS.build(data_preprocessor)


def _check_keys(cfg: dict, allowed: set, name: str) -> None:
    unknown = sorted(set(cfg) - allowed)
    if unknown:
        raise KeyError(f'Unknown key(s) {unknown} in `model.{name}`; allowed '
                       f'keys are {sorted(allowed)}.')


@MODELS.register_module()
class ScaleKDDistiller(BaseModel):
    """Distil a frozen ViT teacher into a student with ScaleKD.

    Two student features are distilled (method sections 1-3):

    - ``perception_stage``: a student feature (e.g. ResNet stage 3) is
      projected onto the teacher's tokens at the split point by a spatial and
      a frequency :class:`CrossAttentionProjector`; the teacher's own
      remaining layers (teacher parameter perception) turn each projection
      into ``P_sp`` / ``P_fr``, which mimic the teacher's last feature.
    - ``final_stage``: the last student feature is projected onto the
      teacher's last token grid, with learned queries (``self_query=True``)
      or with ``P_sp`` / ``P_fr`` as queries (``self_query=False``), and
      mimics the teacher's last feature.

    Losses: ``(1 - alpha) * loss_cls + loss_kd`` plus both views of both
    stages. Channel counts and spatial sizes are read off the networks by one
    forward at ``input_size``; values given in a stage dict must agree.

    Args:
        student (dict): mmpretrain classifier config of the student.
        teacher (dict): ``config`` (a config path such as
            ``'mmpretrain::swin_transformer/swin-large_16xb64_in1k.py'`` or a
            model dict), ``checkpoint`` (path/URL of the teacher weights,
            loaded strictly; None means a random teacher, with a warning) and
            optionally ``adapter`` (a registered teacher adapter name; chosen
            from the teacher backbone by default).
        perception_stage (dict): ``student_tap`` (module name in the student,
            e.g. ``'backbone.layer3'``), ``teacher_split`` (0-based split
            index of the teacher), ``num_heads``, ``self_query`` (default
            True), ``spatial_weight``, ``frequency_weight``,
            ``softmax_scale`` (default 5.0).
        final_stage (dict): the same keys except ``teacher_split``;
            ``self_query=False`` takes the queries from the perception stage.
            Either stage may set the projectors' ``norm_cfg`` (BatchNorm by
            default, as in the method) and ``conv_impl`` (see
            :class:`CrossAttentionProjector`).
            Leaving out both stages gives plain logit distillation with the
            same teacher handling (the baseline ScaleKD is compared with).
        logit_kd (dict, optional): ``LogitKDLoss`` config; None disables
            logit distillation (the student loss then keeps weight 1).
        input_size (int | tuple): image size of the training inputs, used to
            read feature shapes off the networks. Defaults to 224.
        input_channels (int): channels of the input images. Defaults to 3.
        keep_teacher_eval (bool): keep the teacher in eval mode when the
            runner calls ``train()`` (default). False reproduces the
            reference code, whose teacher trains with drop-path on.
        student_tokens (dict, optional): ``grid`` (H, W) and
            ``extra_tokens`` of students whose taps give tokens (ViT,
            MLP-Mixer, Swin); both are read off the student when left out
            (see :class:`StudentFeatureReader`).
        data_preprocessor (dict, optional): defaults to mmpretrain's
            ``ClsDataPreprocessor``.
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
                 init_cfg: Optional[dict] = None) -> None:
        data_preprocessor = _student_data_preprocessor(student,
                                                       data_preprocessor)
        super().__init__(
            data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        if (perception_stage is None) != (final_stage is None):
            raise ValueError(
                'Give both `model.perception_stage` and `model.final_stage` '
                '(ScaleKD) or neither (logit distillation only).')
        if perception_stage is None and not logit_kd:
            raise ValueError(
                'Nothing to distil: without `model.perception_stage` and '
                '`model.final_stage`, set `model.logit_kd`.')
        # Without feature stages this is plain logit distillation, the
        # baseline ScaleKD is measured against, with the same teacher code.
        self.distill_features = perception_stage is not None
        perception_stage = dict(perception_stage or {})
        final_stage = dict(final_stage or {})
        teacher = dict(teacher)
        _check_keys(teacher, _TEACHER_KEYS, 'teacher')
        _check_keys(perception_stage, _STAGE_KEYS['perception_stage'],
                    'perception_stage')
        _check_keys(final_stage, _STAGE_KEYS['final_stage'], 'final_stage')
        for key in ('config', 'checkpoint'):
            if key not in teacher:
                raise KeyError(f'`model.teacher.{key}` is required.')

        self.student = MODELS.build(student)
        # Checked before the (slow) teacher build.
        if not hasattr(self.student, 'head') or not hasattr(
                self.student.head, '_get_loss'):
            raise TypeError('`model.student` must be an mmpretrain '
                            'classifier with a classification head.')
        # Token taps (ViT, Mixer, Swin students) become maps in one place.
        self.student_features = StudentFeatureReader.from_student(
            self.student, student_tokens)
        # Held, not registered as a submodule: the frozen teacher is then in
        # no state dict, no DDP parameter list or broadcast, no EMA copy,
        # no SyncBN conversion and no optimizer. `_apply` moves it with the
        # distiller and `train` keeps it in eval mode.
        object.__setattr__(
            self, 'teacher',
            build_frozen_teacher(teacher['config'], teacher['checkpoint']))
        self.keep_teacher_eval = keep_teacher_eval
        # (names, non-finite flags, values) of the last loss terms, read by
        # FiniteCheckHook right before the optimizer step.
        self.loss_terms = None
        self.teacher_adapter = None
        if self.distill_features:
            if 'teacher_split' not in perception_stage:
                raise KeyError(
                    '`model.perception_stage.teacher_split` is required '
                    '(e.g. 2 for stage 3 of a Swin teacher).')
            # A plain object, not a module: it holds no parameters.
            self.teacher_adapter = build_teacher_adapter(
                self.teacher, perception_stage['teacher_split'],
                teacher.get('adapter'))
        self.logit_kd = MODELS.build(logit_kd) if logit_kd else None

        self.stage_names = ('perception',
                            'final') if self.distill_features else ()
        stage_cfgs = {
            name: cfg
            for name, cfg in zip(('perception', 'final'),
                                 (perception_stage, final_stage))
            if name in self.stage_names
        }
        for name, cfg in stage_cfgs.items():
            if 'student_tap' not in cfg:
                raise KeyError(f'`model.{name}_stage.student_tap` is '
                               'required (e.g. "backbone.layer3").')
        # Student features are read only inside loss() (and the shape
        # probe below): calling the student anywhere else keeps nothing.
        self.student_taps = ModuleOutputsRecorder(
            {name: cfg['student_tap'] for name, cfg in stage_cfgs.items()})
        self.student_taps.check(self.student, 'model.{key}_stage.student_tap')

        self.input_channels = input_channels
        self.input_size = (input_size, input_size) if isinstance(
            input_size, int) else tuple(input_size)
        shapes = self._read_shapes(self.input_size)
        self.final_self_query = final_stage.get('self_query', True)
        self.feature_losses = nn.ModuleDict()
        for name, cfg in stage_cfgs.items():
            try:
                self.feature_losses[name] = MODELS.build(
                    dict(
                        type='DualViewFeatureLoss',
                        spatial_weight=cfg.get('spatial_weight', 0.08),
                        frequency_weight=cfg.get('frequency_weight', 0.06)))
            except ValueError as error:
                raise ValueError(f'`model.{name}_stage`: {error}') from None
        self._check_stages_compute_something()
        self.projectors = nn.ModuleDict()
        for name, cfg in stage_cfgs.items():
            self._build_projectors(name, cfg, shapes)
        # What the weights' names and shapes do not show; recorded in
        # training checkpoints and compared when one is loaded.
        self.architecture = {
            f'{name}_stage.{key}': cfg.get(key, default)
            for name, cfg in stage_cfgs.items()
            for key, default in (('student_tap', None), ('teacher_split',
                                                         None),
                                 ('num_heads', None), ('self_query', True))
            if not (name == 'final' and key == 'teacher_split')
        }
        self._register_load_state_dict_pre_hook(self._drop_teacher_entries)

    # ------------------------------------------------------------ building
    def _check_stages_compute_something(self) -> None:
        """A stage whose losses are both off must still feed another one."""
        if not self.distill_features:
            return
        if not self._views('final'):
            raise ValueError(
                '`model.final_stage.spatial_weight` and `frequency_weight` '
                'are both 0, so the final stage computes nothing. Give one '
                'a weight > 0, or leave out both stages for logit '
                'distillation only.')
        if not self._views('perception'):
            raise ValueError(
                '`model.perception_stage.spatial_weight` and '
                '`frequency_weight` are both 0 and '
                '`model.final_stage.self_query=True` (learned queries), so '
                'the perception stage computes nothing. Give one weight > 0, '
                'or set `final_stage.self_query=False` to use the stage only '
                'as the source of the final queries.')

    def architecture_differences(self, recorded) -> List[str]:
        """How a checkpoint's recorded :attr:`architecture` differs."""
        if not isinstance(recorded, dict):
            return [f'its recorded architecture is {recorded!r}']
        return [
            f'`model.{key}` is {recorded.get(key)!r} in the checkpoint and '
            f'{self.architecture.get(key)!r} in the config'
            for key in sorted(set(recorded) | set(self.architecture))
            if recorded.get(key) != self.architecture.get(key)
        ]

    @torch.no_grad()
    def _read_shapes(self, input_size: Tuple[int, int]) -> Dict[str, tuple]:
        """Channel counts and spatial sizes from one forward of both nets."""
        was_training = self.student.training
        self.student.eval()
        dummy = torch.zeros(1, self.input_channels, *input_size)
        try:
            with self.student_taps.record(self.student) as taps:
                student_classes = self.student.head(
                    self.student.extract_feat(dummy)).shape[-1]
        finally:
            self.student.train(was_training)
        shapes = {}
        for stage in self.stage_names:
            feature = self.student_features(taps[stage], input_size, stage)
            shapes[f'{stage}_student'] = tuple(feature.shape[1:])
        if self.distill_features:
            outputs = self.teacher_adapter(dummy)
            shapes['split'] = (outputs.split_tokens.shape[-1],
                               *outputs.split_size)
            shapes['final'] = tuple(outputs.final_feature.shape[1:])
            teacher_classes = outputs.logits.shape[-1]
        else:
            teacher_classes = self.teacher(dummy, mode='tensor').shape[-1]
        if self.logit_kd and student_classes != teacher_classes:
            raise ValueError(
                f'Logit distillation needs the same classes: the student '
                f'predicts {student_classes} and the teacher '
                f'{teacher_classes}. Match `num_classes` or set '
                '`model.logit_kd=None`.')
        return shapes

    def _views(self, name: str) -> List[str]:
        """Views with a non-zero weight, plus those feeding final queries."""
        views = [
            view for view in _VIEWS
            if getattr(self.feature_losses[name], f'{view}_weight') > 0
        ]
        if name == 'perception' and not self.final_self_query:
            views += [v for v in self._views('final') if v not in views]
        return views

    def _build_projectors(self, name: str, cfg: dict, shapes: dict) -> None:
        student_channels, *student_size = shapes[f'{name}_student']
        target = shapes['split' if name == 'perception' else 'final']
        teacher_channels, *query_size = target
        inferred = dict(
            student_channels=student_channels,
            student_size=tuple(student_size),
            teacher_channels=teacher_channels,
            query_size=tuple(query_size))
        for key, value in inferred.items():
            if key not in cfg:
                continue
            given = cfg[key]
            if key.endswith('size'):
                given = (given, given) if isinstance(given, int) \
                    else tuple(given)
            if given != value:
                raise ValueError(
                    f'`model.{name}_stage.{key}={cfg[key]}` disagrees with '
                    f'the networks, which give {value}; set it to {value} or '
                    'remove it (it is inferred).')
        if 'num_heads' not in cfg:
            raise KeyError(f'`model.{name}_stage.num_heads` is required.')
        self_query = cfg.get('self_query', True)
        if name == 'perception' and not self_query:
            raise ValueError(
                '`model.perception_stage.self_query` must be True: only the '
                'final stage can take its queries from teacher parameter '
                'perception.')
        for view in self._views(name):
            try:
                projector = MODELS.build(
                    dict(
                        type='CrossAttentionProjector',
                        student_channels=student_channels,
                        teacher_channels=teacher_channels,
                        student_size=tuple(student_size),
                        query_size=tuple(query_size),
                        num_heads=cfg['num_heads'],
                        self_query=self_query,
                        softmax_scale=cfg.get('softmax_scale', 5.0),
                        norm_cfg=cfg.get('norm_cfg'),
                        conv_impl=cfg.get('conv_impl', 'auto')))
            except ValueError as error:
                raise ValueError(f'`model.{name}_stage`: {error}') from None
            self.projectors[f'{name}_{view}'] = projector

    # ------------------------------------------------------------ teacher
    def train(self, mode: bool = True) -> 'ScaleKDDistiller':
        """Set train mode on everything but the frozen teacher.

        The teacher is a fixed function: in train mode it would apply
        drop-path and dropout to the targets (and update BatchNorm statistics
        of CNN teachers), so the student would chase noise.
        """
        super().train(mode)
        self.teacher.train(mode and not self.keep_teacher_eval)
        return self

    def _apply(self, fn, *args, **kwargs):
        # .to(), .cuda(), .half() ... reach the held teacher too.
        super()._apply(fn, *args, **kwargs)
        self.teacher._apply(fn, *args, **kwargs)
        return self

    def __deepcopy__(self, memo: dict) -> 'ScaleKDDistiller':
        """A copy (e.g. mmengine's EMA model) shares the frozen teacher.

        The teacher never changes, so a second one would only cost memory
        (hundreds of MB for a large ViT).
        """
        memo[id(self.teacher)] = self.teacher
        duplicate = self.__class__.__new__(self.__class__)
        memo[id(self)] = duplicate
        for key, value in self.__dict__.items():
            object.__setattr__(duplicate, key, copy.deepcopy(value, memo))
        return duplicate

    def _drop_teacher_entries(self, state_dict, prefix, *args) -> None:
        """A state dict with the teacher's weights loads without them.

        The teacher always comes from ``model.teacher.checkpoint``, so a
        training checkpoint never overrides it.
        """
        stale = [k for k in state_dict if k.startswith(prefix + 'teacher.')]
        if stale:
            print_log(
                f'Ignoring {len(stale)} teacher entries in the file: '
                'the teacher comes from `model.teacher.checkpoint`.',
                logger='current', level=30)
        for key in stale:
            del state_dict[key]

    # ------------------------------------------------------------ forward
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
        with self.student_taps.record(self.student) as outputs:
            feats = self.student.extract_feat(inputs)
        taps = {
            stage: self.student_features(outputs[stage], inputs.shape[-2:],
                                         stage)
            for stage in self.stage_names
        }
        return self.student.head(feats), taps

    def loss(self, inputs: torch.Tensor,
             data_samples: list) -> Dict[str, torch.Tensor]:
        if inputs.dim() != 4 or inputs.shape[1] != self.input_channels:
            raise ValueError(
                f'The images reach the model as {tuple(inputs.shape)} but '
                f'the networks take {self.input_channels} channels '
                '(`model.input_channels`): load images as RGB '
                "(LoadImageFromFile with color_type='color') or build both "
                'networks for the images you have.')
        if tuple(inputs.shape[-2:]) != self.input_size:
            raise ValueError(
                f'The training images are {tuple(inputs.shape[-2:])} '
                f'(height, width) but `model.input_size={self.input_size}`, '
                'the size the projectors were built for. Set '
                f'`model.input_size={tuple(inputs.shape[-2:])}` or make the '
                'training pipeline crop to the input size.')
        with torch.no_grad():
            if self.distill_features:
                teacher: TeacherOutputs = self.teacher_adapter(inputs)
                teacher_logits = teacher.logits
            else:
                teacher_logits = self.teacher(inputs, mode='tensor')
        logits, taps = self._student_forward(inputs)

        losses = dict()
        student_losses = self.student.head._get_loss(logits, data_samples)
        cls_weight = 1.0 - self.logit_kd.alpha if self.logit_kd else 1.0
        for key, value in student_losses.items():
            # The head returns `loss` and, without batch augments, accuracies
            # (logged, not summed: only keys containing "loss" are summed).
            if key == 'loss':
                losses['loss_cls'] = cls_weight * value
            else:
                losses[key] = value
        if self.logit_kd:
            losses['loss_kd'] = self.logit_kd(logits, teacher_logits)
        if self.distill_features:
            losses.update(self._scalekd_losses(teacher, taps))
        return losses

    def parse_losses(self, losses: Dict[str, torch.Tensor]):
        """mmengine's sum of the loss terms, recording which are finite.

        No device synchronisation here: :class:`FiniteCheckHook` reads the
        record right before the optimizer step (across all processes), so a
        non-finite term stops every rank in the same iteration instead of
        one rank raising while the others wait in the gradient all-reduce.
        """
        loss, log_vars = super().parse_losses(losses)
        names = [k for k in losses if 'loss' in k]
        # mmengine's per-term values (means), without another reduction.
        values = torch.stack([log_vars[k].detach().float() for k in names])
        flags = ~torch.isfinite(values)
        if self.loss_terms is not None:  # accumulating gradients
            flags = flags | self.loss_terms[1]
        self.loss_terms = (names, flags, values)
        return loss, log_vars

    def _scalekd_losses(self, teacher: TeacherOutputs,
                        taps: Dict[str, torch.Tensor]
                        ) -> Dict[str, torch.Tensor]:
        """Both views of the perception and the final stage."""
        losses = dict()
        target = teacher.final_feature
        perceived = self._perceive(taps['perception'], teacher)
        losses.update(
            self._feature_losses('perception', perceived, target))

        final = {}
        for view in self._views('final'):
            queries = self._final_queries(perceived, view)
            tokens = self.projectors[f'final_{view}'](taps['final'], queries)
            final[view] = tokens_to_map(tokens, target.shape[2:])
        losses.update(self._feature_losses('final', final, target))
        return losses

    def _perceive(self, feature: torch.Tensor,
                  teacher: TeacherOutputs) -> Dict[str, torch.Tensor]:
        """Teacher parameter perception, ``P_sp`` / ``P_fr`` per view.

        Project the student feature onto the split-point tokens, then run the
        frozen rest of the teacher (gradients flow through it into the
        projectors and the student, never into its weights).
        """
        return {
            view: self.teacher_adapter.forward_rest(
                self.projectors[f'perception_{view}'](feature),
                teacher.split_size, teacher.split_extra_tokens)
            for view in self._views('perception')
        }

    def _final_queries(self, perceived: Dict[str, torch.Tensor],
                       view: str) -> Optional[torch.Tensor]:
        """Queries of the final projector of ``view`` (None: learned)."""
        if self.final_self_query:
            return None
        return map_to_tokens(perceived[view])

    @torch.no_grad()
    def projector_inputs(
        self, inputs: torch.Tensor
    ) -> Dict[str, Tuple[torch.Tensor, Optional[torch.Tensor]]]:
        """What each projector receives for a batch, for inspection.

        Runs the same path as :meth:`loss` (without gradients and without
        the losses), e.g. to look at a projector's attention with
        ``self.projectors[name].attention_weights(*result[name])``.

        Args:
            inputs (Tensor): a preprocessed batch (N, C, H, W), as
                ``data_preprocessor`` gives it.

        Returns:
            dict: projector name (a key of ``self.projectors``, e.g.
            ``'final_spatial'``) -> ``(student_feature, queries)``: the
            student feature (N, Cs, Hs, Ws) at the stage's tap and the
            queries (N, Hq*Wq, Ct) given to the projector, None for learned
            ones.
        """
        if not self.distill_features:
            return {}
        teacher = self.teacher_adapter(inputs)
        _, taps = self._student_forward(inputs)
        perceived = self._perceive(taps['perception'], teacher)
        projector_inputs = {
            f'perception_{view}': (taps['perception'], None)
            for view in self._views('perception')
        }
        projector_inputs.update({
            f'final_{view}': (taps['final'],
                              self._final_queries(perceived, view))
            for view in self._views('final')
        })
        return projector_inputs

    def _feature_losses(self, name: str, projected: Dict[str, torch.Tensor],
                        target: torch.Tensor) -> Dict[str, torch.Tensor]:
        loss = self.feature_losses[name]
        spatial = projected.get('spatial')
        frequency = projected.get('frequency')
        values = loss(spatial if spatial is not None else frequency, target,
                      frequency)
        return {
            key.replace('loss', f'loss_{name}', 1): value
            for key, value in values.items()
        }

