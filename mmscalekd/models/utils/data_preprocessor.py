"""The distiller's data preprocessor, derived from the student's config."""
import copy
from typing import Optional, Union

from torch import nn

from mmpretrain.registry import MODELS

__all__ = ['student_data_preprocessor']


def student_data_preprocessor(
        student: dict,
        data_preprocessor: Optional[Union[dict, nn.Module]] = None
) -> Union[dict, nn.Module]:
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
