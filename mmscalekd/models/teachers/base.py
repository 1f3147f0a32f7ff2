"""The interface every teacher family implements for ScaleKD."""
from typing import Any, List, NamedTuple, Optional, Sequence, Tuple

import torch
from torch import nn

__all__ = ['TeacherAdapter', 'TeacherOutputs', 'build_teacher_adapter']

#: A family's running value between two split units: a tensor (a ConvNeXt
#: map, timm Swin's channels-last map) or tokens with their grid.
TeacherState = Any
#: Tokens (N, [E +] H*W, C) with their patch grid (H, W): the state of the
#: families that run on tokens.
TokensAndGrid = Tuple[torch.Tensor, Tuple[int, int]]


class TeacherOutputs(NamedTuple):
    """What one forward of the teacher gives the distiller.

    Attributes:
        split_tokens (Tensor): the spatial tokens (N, H*W, C) at the split
            point, row-major: what a projector's output replaces.
        split_size (tuple): the (H, W) token grid at the split point.
        final_feature (Tensor): the teacher's last feature map (N, C, H, W)
            (``T_last`` in the method), normalised or raw as the family's
            released model gives it per position: see the final-norm policy
            of :class:`TeacherAdapter`.
        logits (Tensor): class scores (N, K).
        split_extra_tokens (Tensor, optional): non-spatial tokens (N, E, C)
            at the split point (class / distillation tokens of plain ViTs).
            The rest of the teacher needs them too; the distiller passes the
            teacher's own ones along with the projected spatial tokens.
    """
    split_tokens: torch.Tensor
    split_size: Tuple[int, int]
    final_feature: torch.Tensor
    logits: torch.Tensor
    split_extra_tokens: Optional[torch.Tensor] = None


class TeacherAdapter:
    """Reads a frozen teacher classifier at a split point.

    Teacher parameter perception needs two things from a teacher, and they
    depend on its architecture: the tokens at a split point inside the
    network, and "run the rest of the network from tokens at the split
    point". A family implements both in one small file, registered in
    ``mmscalekd.registry.TEACHER_ADAPTERS`` with the backbone classes it
    serves in ``backbone_types``. Nothing else in the package changes.

    Two bases cover the served families through small hooks:
    :class:`PlainViTTeacherAdapter` (split after a block) and
    :class:`StagedTeacherAdapter` (split after a stage). Both share the walk
    written here once: ``forward`` runs units ``0..split_index``, cuts the
    state into tokens, runs the rest units and reads the final feature and
    the logits; ``forward_rest`` joins tokens back into a state and runs the
    same rest units. A family outside both may override ``forward`` and
    ``forward_rest`` directly.

    Final-norm policy, the same for every family: ``T_last`` is the last
    block's / stage's map as the family's released model normalises it per
    position. It is normalised when the backbone applies its final norm to
    every token or position (mmpretrain Swin / Swin V2 ``norm{last}``, ViT /
    DeiT / DeiT III with ``final_norm=True`` (``ln1``), timm ViT and timm
    Swin ``norm``, ConvNeXt with ``gap_before_final_norm=False``), and raw
    when the released model normalises only the pooled vector (BEiT / EVA
    with ``final_norm=False`` and ``ln2`` after pooling, timm ViT with
    ``fc_norm``, ConvNeXt with its default ``gap_before_final_norm=True``).
    The logits are always the classifier's own.

    Contract (checked for every family by one parametrized test): for any
    input, with ``out = forward(x)``, ``forward_rest(out.split_tokens,
    out.split_size, out.split_extra_tokens)`` equals ``out.final_feature``
    exactly, and ``out.logits`` equals the classifier's own logits.

    Args:
        teacher (nn.Module): a classifier (mmpretrain ``ImageClassifier``
            or ``TimmClassifier``).
        split_index (int): where to split, in the family's own unit (a stage
            index for hierarchical backbones, a block index for plain ViTs),
            0-based like mmpretrain's ``out_indices``.
    """

    #: backbone classes this adapter serves, for the automatic choice.
    backbone_types: Tuple[type, ...] = ()
    #: the family's unit of ``split_index``, for error messages.
    split_unit: str = 'stage'
    #: the paper's split in that unit, for error messages.
    split_example: str = ''

    @classmethod
    def matches(cls, teacher: nn.Module) -> bool:
        """Whether this adapter serves ``teacher`` (automatic choice).

        The default reads ``teacher.backbone`` of an mmpretrain
        ``ImageClassifier``; a family whose classifier holds its network
        elsewhere (timm models in a ``TimmClassifier``) overrides it. The
        match is on the exact class: a subclass may change the forward.
        """
        backbone = getattr(teacher, 'backbone', None)
        return backbone is not None and type(backbone) in cls.backbone_types

    @classmethod
    def family_names(cls) -> List[str]:
        """Names of the served families, for error messages."""
        return [t.__name__ for t in cls.backbone_types]

    def __init__(self, teacher: nn.Module, split_index: int) -> None:
        self.teacher = teacher
        self.split_index = split_index
        self._check_split()

    @property
    def backbone(self) -> nn.Module:
        return self.teacher.backbone

    @property
    def family(self) -> str:
        """The teacher's family as error messages name it."""
        return type(self.backbone).__name__

    @property
    def num_split_units(self) -> int:
        """How many blocks / stages the teacher has."""
        raise NotImplementedError

    def _check_split(self) -> None:
        """The one split validator: at least one unit must be left to run
        after the split, or there is no "rest of the teacher"."""
        count, unit = self.num_split_units, self.split_unit
        if not 0 <= self.split_index <= count - 2:
            raise ValueError(
                f'Teacher split point `model.perception_stage.teacher_split='
                f'{self.split_index!r}` is out of range for a {self.family} '
                f'teacher with {count} {unit}s: it is the 0-based {unit} '
                f'after which the teacher is split and must lie in '
                f'[0, {count - 2}] so that at least one {unit} is left to '
                f'run ({self.split_example}).')

    def forward(self, inputs: torch.Tensor) -> TeacherOutputs:
        """Images (N, 3, H0, W0) -> :class:`TeacherOutputs`."""
        outs = []
        state = self._run(self._embed(inputs), range(self.split_index + 1),
                          outs)
        tokens, split_size, extra_tokens = self._split(state)
        # Go on from the state itself, not from the tokens: this is the
        # backbone's own forward, so the final feature and logits are its.
        state = self._run(state, self._rest_units, outs)
        return TeacherOutputs(tokens, split_size, self._final_feature(state),
                              self._logits(state, outs), extra_tokens)

    def forward_rest(
            self,
            tokens: torch.Tensor,
            split_size: Tuple[int, int],
            extra_tokens: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Spatial tokens (N, H*W, C) at the split point (plus the extra
        tokens, if the family has them) -> final feature (N, C', H', W')."""
        state = self._join(tokens, tuple(split_size), extra_tokens)
        return self._final_feature(self._run(state, self._rest_units, None))

    @property
    def _rest_units(self) -> range:
        return range(self.split_index + 1, self.num_split_units)

    # Hooks of the walk, implemented by the two bases and the families.

    def _embed(self, inputs: torch.Tensor) -> TeacherState:
        """Images (N, 3, H0, W0) -> the state before unit 0 (the stem)."""
        raise NotImplementedError

    def _run(self, state: TeacherState, units: range,
             outs: Optional[List[torch.Tensor]]) -> TeacherState:
        """Run ``units`` as the backbone does; when ``outs`` is given,
        append the backbone outputs of those units (``_collect``)."""
        raise NotImplementedError

    def _split(self, state: TeacherState) -> Tuple[
            torch.Tensor, Tuple[int, int], Optional[torch.Tensor]]:
        """State at the split -> (tokens (N, H*W, C), (H, W), extra tokens
        (N, E, C) or None)."""
        raise NotImplementedError

    def _join(self, tokens: torch.Tensor, split_size: Tuple[int, int],
              extra_tokens: Optional[torch.Tensor]) -> TeacherState:
        """The inverse of ``_split``: tokens at the split -> state."""
        raise NotImplementedError

    def _final_feature(self, state: TeacherState) -> torch.Tensor:
        """State after the last unit -> ``T_last`` (N, C, H, W), by the
        final-norm policy above."""
        raise NotImplementedError

    @property
    def _output_indices(self) -> Sequence[int]:
        """Units whose outputs the classifier's neck and head read: the
        mmpretrain backbone's ``out_indices``."""
        return self.backbone.out_indices

    def _unit_output(self, index: int, state: TeacherState) -> torch.Tensor:
        """The backbone's own output of unit ``index`` (an mmpretrain
        backbone's tuple element), from the state after that unit."""
        raise NotImplementedError

    def _collect(self, outs: Optional[List[torch.Tensor]], index: int,
                 state: TeacherState) -> None:
        # Only ``forward`` needs the outputs (for the logits); the rest run
        # on student tokens skips them.
        if outs is not None and index in self._output_indices:
            outs.append(self._unit_output(index, state))

    def _logits(self, state: TeacherState,
                outs: List[torch.Tensor]) -> torch.Tensor:
        """Class scores (N, K) as the classifier makes them: by default its
        neck and head on the collected backbone outputs."""
        return self.logits_from_outputs(tuple(outs))

    def logits_from_outputs(self, backbone_outputs: tuple) -> torch.Tensor:
        """Run the classifier's neck and head on backbone outputs."""
        feats = backbone_outputs
        if self.teacher.with_neck:
            feats = self.teacher.neck(feats)
        return self.teacher.head(feats)

    def __call__(self, inputs: torch.Tensor) -> TeacherOutputs:
        return self.forward(inputs)


def build_teacher_adapter(teacher: nn.Module, split_index: int,
                          adapter_type: str = None) -> TeacherAdapter:
    """Pick the adapter that matches ``teacher`` (or ``adapter_type``).

    The automatic choice asks each registered adapter's ``matches``: for
    mmpretrain classifiers the class of ``teacher.backbone``, for a
    ``TimmClassifier`` the class of its timm model.
    """
    from mmscalekd.registry import TEACHER_ADAPTERS
    TEACHER_ADAPTERS.import_from_location()
    if adapter_type is not None:
        adapter_cls = TEACHER_ADAPTERS.get(adapter_type)
        if adapter_cls is None:
            raise KeyError(
                f'`model.teacher.adapter={adapter_type!r}` is not a '
                f'registered teacher adapter; choose one of '
                f'{sorted(TEACHER_ADAPTERS.module_dict)}.')
        return adapter_cls(teacher, split_index)
    candidates = [
        cls for cls in TEACHER_ADAPTERS.module_dict.values()
        if cls.matches(teacher)
    ]
    if not candidates:
        supported = sorted(name
                           for cls in TEACHER_ADAPTERS.module_dict.values()
                           for name in cls.family_names())
        raise TypeError(
            f'No teacher adapter for the teacher {_describe(teacher)}. '
            f'Supported teacher families: '
            f'{supported}. To add one, subclass '
            'mmscalekd.models.teachers.PlainViTTeacherAdapter or '
            'StagedTeacherAdapter (or implement TeacherAdapter\'s forward '
            'and forward_rest) in its own file and register it with '
            '@TEACHER_ADAPTERS.register_module().')
    return candidates[0](teacher, split_index)


def _describe(teacher: nn.Module) -> str:
    """Name the network inside a classifier, for error messages."""
    if getattr(teacher, 'backbone', None) is not None:
        return f'backbone {type(teacher.backbone).__name__}'
    if getattr(teacher, 'model', None) is not None:  # TimmClassifier
        return (f'{type(teacher).__name__} model '
                f'{type(teacher.model).__name__}')
    return f'model {type(teacher).__name__}'
