"""Build, load and freeze the teacher classifier."""
import copy
from typing import Optional, Union

from mmengine.config import Config, ConfigDict
from mmengine.logging import print_log
from torch import nn

from mmpretrain.registry import MODELS

from mmscalekd.utils.checkpoint import (CheckpointError, describe_mismatch,
                                        load_state_dict_file)

__all__ = [
    'build_frozen_teacher', 'load_teacher_model_config', 'load_teacher_weights'
]

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


def _layout_hint(missing: list, unexpected: list) -> str:
    """What the key names say about where the file comes from."""
    if missing and unexpected and all(
            k.startswith(('backbone.', 'neck.', 'head.')) for k in missing) \
            and not any(k.startswith(('backbone.', 'head.'))
                        for k in unexpected):
        return (' The file uses another layout (an original or timm '
                'release, not an mmpretrain classifier): convert it with '
                "mmpretrain's tools/model_converters/<family>_to_mmpretrain.py"
                ', or use a timm teacher (TimmClassifier) with '
                'tools/model_converters/timm_teacher_weights.py.')
    return (' Use the checkpoint of exactly this teacher architecture (an '
            'mmpretrain classifier checkpoint).')


def load_teacher_weights(teacher: nn.Module, checkpoint: str,
                         key: str = 'model.teacher.checkpoint') -> None:
    """Load ``checkpoint`` into ``teacher`` strictly, or raise naming ``key``.

    A checkpoint whose keys or shapes do not match the teacher exactly is an
    error: a teacher that is partly random would silently ruin a run of
    many GPU-days.
    """
    state_dict = load_state_dict_file(checkpoint, key=key)
    mismatch = describe_mismatch(teacher.state_dict(), state_dict)
    problems = []
    if mismatch['missing']:
        problems.append(f'{len(mismatch["missing"])} missing keys '
                        f'(e.g. {mismatch["missing"][:5]})')
    if mismatch['unexpected']:
        problems.append(f'{len(mismatch["unexpected"])} unexpected keys '
                        f'(e.g. {mismatch["unexpected"][:5]})')
    if mismatch['mismatched']:
        problems.append('tensors of other shapes: ' +
                        '; '.join(mismatch['mismatched'][:5]))
    if problems:
        raise CheckpointError(
            f'`{key}={checkpoint!r}` does not match the teacher built from '
            '`model.teacher.config`: ' + '; '.join(problems) + '.' +
            _layout_hint(mismatch['missing'], mismatch['unexpected']))
    teacher.load_state_dict(state_dict, strict=True)


def build_frozen_teacher(config: Union[str, dict],
                         checkpoint: Optional[str]) -> nn.Module:
    """Build the teacher, load its weights strictly, freeze it, eval mode."""
    teacher = MODELS.build(load_teacher_model_config(config))
    if checkpoint is None:
        print_log(_RANDOM_TEACHER_WARNING, logger='current', level=30)
        teacher.init_weights()
    else:
        # Every key comes from the file (strict), so no init is needed; it
        # would also fetch a `Pretrained` init_cfg from the network.
        load_teacher_weights(teacher, checkpoint)
    # Mark as initialised so the runner's init_weights() keeps these weights.
    teacher._is_init = True
    teacher.requires_grad_(False)
    teacher.eval()
    return teacher
