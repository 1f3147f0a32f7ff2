"""The interface every teacher family implements for ScaleKD."""
from typing import List, NamedTuple, Optional, Tuple

import torch
from torch import nn

__all__ = ['TeacherAdapter', 'TeacherOutputs', 'build_teacher_adapter']


class TeacherOutputs(NamedTuple):
    """What one forward of the teacher gives the distiller.

    Attributes:
        split_tokens (Tensor): the spatial tokens (N, H*W, C) at the split
            point, row-major: what a projector's output replaces.
        split_size (tuple): the (H, W) token grid at the split point.
        final_feature (Tensor): the teacher's last feature map (N, C, H, W)
            (``T_last`` in the method): for hierarchical backbones the last
            stage's normalised output, for plain ViTs the normalised patch
            tokens as a map.
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
    """Reads a frozen mmpretrain classifier at a split point.

    Teacher parameter perception needs two things from a teacher, and they
    depend on its architecture: the tokens at a split point inside the
    network, and "run the rest of the network from tokens at the split
    point". A family implements both here, in one small file, registered in
    ``mmscalekd.registry.TEACHER_ADAPTERS`` with the backbone classes it
    serves in ``backbone_types``. Nothing else in the package changes.

    Contract (checked by each adapter's test): for any input, with
    ``out = forward(x)``, ``forward_rest(out.split_tokens, out.split_size,
    out.split_extra_tokens)`` equals ``out.final_feature`` exactly, and
    ``out.logits`` equals the classifier's own logits.

    Args:
        teacher (nn.Module): an mmpretrain ``ImageClassifier``.
        split_index (int): where to split, in the family's own unit (a stage
            index for hierarchical backbones, a block index for plain ViTs),
            0-based like mmpretrain's ``out_indices``.
    """

    #: backbone classes this adapter serves, for the automatic choice.
    backbone_types: Tuple[type, ...] = ()

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

    def _check_stage_split(self, family: str) -> None:
        """Validate a stage-index split of a hierarchical backbone.

        The split must leave at least one stage to run, and the backbone
        must output its last stage (the teacher's final feature).
        """
        backbone = self.backbone
        last = len(backbone.stages) - 1
        if not 0 <= self.split_index < last:
            raise ValueError(
                f'Teacher split point `model.perception_stage.teacher_split='
                f'{self.split_index}` is out of range for a {family} teacher '
                f'with {last + 1} stages; it must be a 0-based stage index in '
                f'[0, {last - 1}] (stage 3 of 4 is 2).')
        if last not in backbone.out_indices:
            raise ValueError(
                f'The {family} teacher must output its last stage: set '
                f'`backbone.out_indices` to include {last} in the teacher '
                'config.')

    @property
    def backbone(self) -> nn.Module:
        return self.teacher.backbone

    def forward(self, inputs: torch.Tensor) -> TeacherOutputs:
        raise NotImplementedError

    def forward_rest(
            self,
            tokens: torch.Tensor,
            split_size: Tuple[int, int],
            extra_tokens: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Spatial tokens (N, H*W, C) at the split point (plus the extra
        tokens, if the family has them) -> final feature (N, C', H', W')."""
        raise NotImplementedError

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
            f'{supported}. To add one, implement '
            'mmscalekd.models.teachers.TeacherAdapter (forward and '
            'forward_rest) in its own file and register it with '
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
