"""A timm model as the backbone of an mmpretrain student classifier."""
from typing import Optional, Tuple

import torch

from mmengine.model import BaseModule
from mmpretrain.registry import MODELS

__all__ = ['TimmStudentBackbone']


@MODELS.register_module()
class TimmStudentBackbone(BaseModule):
    """Any timm model, headless, as an mmpretrain backbone.

    The student of a distillation must be an mmpretrain ``ImageClassifier``
    (the distiller calls its head's loss); this puts a timm network in one:
    the timm model is built without its classifier (``num_classes=0``) and
    the forward returns its own pooled pre-logits feature
    (``forward_head(forward_features(x), pre_logits=True)``, i.e. the
    model's own pooling and norms), for a ``LinearClsHead`` with
    ``neck=None``. Keeping the whole timm model under ``self.model``, with
    timm's own parameter names, is what lets
    ``tools/model_converters/extract_student.py`` write a file that
    ``timm.create_model(model_name, pretrained_cfg_overlay=dict(file=...))``
    loads strictly.

    Feature taps name timm's modules under ``backbone.model``, e.g.
    ``'backbone.model.blocks.3'`` (MobileNet-V1 stage 4, 512 ch @ 14x14) or
    ``'backbone.model.blocks.5'`` (an MLP-Mixer block, tokens (N, L, C)).

    Args:
        model_name (str): a timm model name, e.g. ``'mobilenetv1_100'``.
        model_kwargs (dict, optional): extra ``timm.create_model`` arguments
            (e.g. ``drop_path_rate``); the same must be given to timm when
            loading the extracted weights.
        init_cfg (dict, optional): mmengine init config. timm initialises
            its own weights; pretrained weights are never downloaded here.

    Shapes: images (N, 3, H, W) -> a 1-tuple with the pooled feature
    (N, ``num_features``).
    """

    def __init__(self,
                 model_name: str,
                 model_kwargs: Optional[dict] = None,
                 init_cfg: Optional[dict] = None) -> None:
        import timm
        super().__init__(init_cfg=init_cfg)
        model_kwargs = dict(model_kwargs or {})
        for key in ('pretrained', 'num_classes'):
            if key in model_kwargs:
                raise ValueError(
                    f'`model_kwargs.{key}` is set by TimmStudentBackbone '
                    '(no downloads, no timm classifier); remove it and give '
                    'the class count to the mmpretrain head.')
        self.model_name = model_name
        self.model_kwargs = model_kwargs
        self.model = timm.create_model(
            model_name, pretrained=False, num_classes=0, **model_kwargs)

    @property
    def num_features(self) -> int:
        return self.model.num_features

    @property
    def num_extra_tokens(self) -> int:
        # Class / distillation / register tokens of timm ViTs (0 otherwise),
        # read by the distiller to turn block tokens into maps.
        return int(getattr(self.model, 'num_prefix_tokens', 0) or 0)

    @property
    def classifier_name(self) -> str:
        """Where timm keeps the classifier this backbone left out."""
        return self.model.pretrained_cfg.get('classifier', 'head')

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor]:
        features = self.model.forward_features(x)
        return (self.model.forward_head(features, pre_logits=True), )
