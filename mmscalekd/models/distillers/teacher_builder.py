"""Build, load and freeze the teacher classifier."""
import copy
from typing import Optional, Union

from mmengine.config import Config, ConfigDict
from mmengine.logging import print_log
from torch import nn

from mmpretrain.registry import MODELS

from mmscalekd.utils.checkpoint import CheckpointError, load_state_dict_file

__all__ = ['build_frozen_teacher', 'load_teacher_model_config']

_RANDOM_TEACHER_WARNING = (
    '\n' + '!' * 78 + '\n'
    '!! `model.teacher.checkpoint` is None: the TEACHER IS RANDOMLY\n'
    '!! INITIALISED. Distilling from it teaches nothing; this is only for\n'
    '!! tests and smoke runs. Set `model.teacher.checkpoint` to the teacher\n'
    '!! weights for a real run.\n' + '!' * 78)


def load_teacher_model_config(config: Union[str, dict]) -> dict:
    """The teacher's ``model`` dict from a config path or an inline dict.

    ``config`` may be ``'mmpretrain::swin_transformer/swin-large_16xb64_in1k.py'``
    (any package-scoped config), a config file path, or a model dict.
    """
    if isinstance(config, (dict, ConfigDict)):
        return copy.deepcopy(dict(config))
    if not isinstance(config, str):
        raise TypeError('`model.teacher.config` must be a config path or a '
                        f'model dict, got {type(config).__name__}.')
    if '::' in config:
        from mmengine.hub import get_config
        cfg = get_config(config)
    else:
        cfg = Config.fromfile(config)
    if 'model' not in cfg:
        raise KeyError(f'`model.teacher.config={config!r}` has no `model`.')
    return cfg.model.to_dict() if hasattr(cfg.model, 'to_dict') \
        else dict(cfg.model)


def build_frozen_teacher(config: Union[str, dict],
                         checkpoint: Optional[str]) -> nn.Module:
    """Build the teacher, load its weights strictly, freeze it, eval mode.

    A checkpoint whose keys do not match the teacher exactly is an error: a
    teacher that is partly random would silently ruin a run of many GPU-days.
    """
    teacher = MODELS.build(load_teacher_model_config(config))
    if checkpoint is None:
        print_log(_RANDOM_TEACHER_WARNING, logger='current', level=30)
        teacher.init_weights()
    else:
        # Every key comes from the file (strict), so no init is needed; it
        # would also fetch a `Pretrained` init_cfg from the network.
        state_dict = load_state_dict_file(checkpoint,
                                          key='model.teacher.checkpoint')
        try:
            result = teacher.load_state_dict(state_dict, strict=False)
        except RuntimeError as error:  # size mismatches
            raise CheckpointError(
                f'`model.teacher.checkpoint={checkpoint!r}` does not fit the '
                f'teacher built from `model.teacher.config`: {error}') from None
        problems = []
        if result.missing_keys:
            problems.append(f'{len(result.missing_keys)} missing keys '
                            f'(e.g. {result.missing_keys[:5]})')
        if result.unexpected_keys:
            problems.append(f'{len(result.unexpected_keys)} unexpected keys '
                            f'(e.g. {result.unexpected_keys[:5]})')
        if problems:
            raise CheckpointError(
                f'`model.teacher.checkpoint={checkpoint!r}` does not match '
                'the teacher built from `model.teacher.config`: ' +
                '; '.join(problems) + '. Use the checkpoint of exactly this '
                'teacher architecture (an mmpretrain classifier checkpoint).')
    # Mark as initialised so the runner's init_weights() keeps these weights.
    teacher._is_init = True
    teacher.requires_grad_(False)
    teacher.eval()
    return teacher
