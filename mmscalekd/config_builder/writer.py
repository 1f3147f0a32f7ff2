"""Write the ScaleKD config of a pair and its two baselines, shaped like
configs/scalekd/: the student config inherits the recipe and the runtime,
the distillation configs inherit the student config."""
import os
import os.path as osp
from typing import Dict, List, Optional

from mmengine.config import Config

import mmscalekd

__all__ = [
    'runtime_config', 'data_settings', 'folder_settings', 'shipped_file',
    'write_configs'
]

_STUDENT = '__student_model__'


def shipped_file(*parts: str) -> str:
    """``configs/<parts>`` of this checkout or, installed, of the package's
    .mim copy (in a checkout that copy dates from the last install, so the
    checkout's own comes first)."""
    package = osp.dirname(osp.abspath(mmscalekd.__file__))
    for root in (osp.dirname(package), osp.join(package, '.mim')):
        path = osp.join(root, 'configs', *parts)
        if osp.isfile(path):
            return path
    raise FileNotFoundError(
        f'configs/{"/".join(parts)} is neither in the installed package '
        '(.mim) nor beside it; reinstall mmscalekd.')


def runtime_config() -> str:
    """configs/_base_/scalekd_runtime.py (:func:`shipped_file`)."""
    return shipped_file('_base_', 'scalekd_runtime.py')


def data_settings(data: Optional[str] = None,
                  batch_size: Optional[int] = None) -> dict:
    """The data part of the student config (top-level keys): the
    dataloaders and evaluators of the config file ``data`` (``--data``),
    replacing the recipe's, and the batch size per GPU (``--batch-size``).
    An image-folder data dict of the same keys plugs in here."""
    settings = {}
    if data is not None:
        if not osp.isfile(data):
            from .sources import BuilderError
            raise BuilderError(f'`--data {data}` is no file; give a config '
                               'file with `train_dataloader` and friends.')
        cfg = Config.fromfile(data).to_dict()
        keys = ('train_dataloader', 'val_dataloader', 'val_evaluator',
                'test_dataloader', 'test_evaluator')
        if 'train_dataloader' not in cfg:
            from .sources import BuilderError
            raise BuilderError(
                f'`--data {data}` has no `train_dataloader`; the file must '
                'give the dataloaders and evaluators to train with.')
        for key in keys:
            if key in cfg:
                value = cfg[key]
                settings[key] = (dict(value, _delete_=True)
                                 if isinstance(value, dict) else value)
    if batch_size is not None:
        settings['train_dataloader'] = dict(
            settings.get('train_dataloader', {}), batch_size=batch_size)
    return settings


def folder_settings(folder: dict) -> dict:
    """The data part of the student config for an image folder
    (:func:`own_data.image_folder_data`'s values, ``--data-root``): its
    loaders and evaluators replace the recipe's (none of the recipe's
    dataset keys survive), its ``num_classes`` sets the student's."""
    return {
        key: dict(value, _delete_=True) if isinstance(value, dict) else value
        for key, value in folder.items()
    }


def _has_runtime(recipe: Config) -> bool:
    hooks = recipe.get('custom_hooks') or []
    return any(isinstance(h, dict) and h.get('type') == 'WorkDirHook'
               for h in hooks)


def _python(values: dict) -> str:
    return Config(values).pretty_text


def _header(lines: List[str]) -> str:
    return ''.join(f'# {line}'.rstrip() + '\n' for line in lines)


def write_configs(out_dir: str, name: str, recipe_reference: str,
                  recipe: Config, student_override: dict, data: dict,
                  teacher: dict, stages: Optional[tuple], logit_kd,
                  baseline_logit_kd, input_size: int,
                  summary: List[str]) -> Dict[str, str]:
    """Write ``student_<name>.py``, ``scalekd_<name>.py`` and (with
    ``baseline_logit_kd``) ``logit-kd_<name>.py`` into ``out_dir``;
    returns their paths by kind. ``_base_`` paths are relative to
    ``out_dir`` (the runtime) or absolute (the recipe file), so the configs
    load from anywhere."""
    os.makedirs(out_dir, exist_ok=True)
    # `_delete_` replaces a recipe's value; where the recipe has none,
    # mmengine would keep the key and hand it on (to the DataLoader).
    data = {
        key: {k: v for k, v in value.items() if k != '_delete_'}
        if isinstance(value, dict) and key not in recipe else value
        for key, value in data.items()
    }
    paths = dict(
        student=osp.join(out_dir, f'student_{name}.py'),
        scalekd=osp.join(out_dir, f'scalekd_{name}.py'),
        logit_kd=osp.join(out_dir, f'logit-kd_{name}.py'))
    bases, runtime = [recipe_reference], {}
    if recipe.get('custom_hooks') and not _has_runtime(recipe):
        # mmengine refuses a key two bases set: the runtime's values follow
        # the recipe's hooks (e.g. EMA), as in the shipped ConvNeXt config.
        shipped = Config.fromfile(runtime_config())
        runtime = dict(custom_imports=shipped.custom_imports,
                       custom_hooks=list(recipe.custom_hooks) +
                       list(shipped.custom_hooks),
                       work_dir_lock=shipped.work_dir_lock)
    elif not _has_runtime(recipe):
        bases.append(osp.relpath(runtime_config(), osp.abspath(out_dir)))
    student_text = _header(
        ['The student trained alone with the recipe of its ScaleKD config',
         '(written by tools/misc/scalekd_config.py).']) + \
        _python(dict(_base_=bases, **runtime,
                     **({'model': student_override}
                        if student_override else {}), **data))
    stage_keys = dict(perception_stage=stages[0], final_stage=stages[1]) \
        if stages else dict(perception_stage=None, final_stage=None)
    model = dict(_delete_=True, type='ScaleKDDistiller', student=_STUDENT,
                 teacher=teacher, **stage_keys, logit_kd=logit_kd,
                 input_size=input_size)
    scalekd_text = _header(
        ['ScaleKD (written by tools/misc/scalekd_config.py); the choices:']
        + summary) + _python(
            dict(_base_=[f'./{osp.basename(paths["student"])}'],
                 model=model)).replace(f"'{_STUDENT}'", '{{_base_.model}}')
    texts = dict(student=student_text, scalekd=scalekd_text)
    if baseline_logit_kd:
        texts['logit_kd'] = _header(
            ['Baseline: the same teacher and recipe with logit',
             'distillation only, without the ScaleKD feature stages.']) + \
            _python(dict(_base_=[f'./{osp.basename(paths["scalekd"])}'],
                         model=dict(perception_stage=None, final_stage=None,
                                    logit_kd=dict(baseline_logit_kd,
                                                  _delete_=True))))
    else:
        paths.pop('logit_kd')
    for kind, text in texts.items():
        with open(paths[kind], 'w') as f:
            f.write(text)
    return paths
