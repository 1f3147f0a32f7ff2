"""Import timm weights from a local file into a timm teacher's checkpoint.

A timm teacher is an mmpretrain ``TimmClassifier`` (``model.teacher.config``
such as ``dict(type='TimmClassifier', model_name='vit_large_patch16_224')``).
Its module holds the timm model as ``.model``, but its state dict hooks save
and load timm's own parameter names, without that prefix. This reads the
weights timm publishes (``model.safetensors`` or ``pytorch_model.bin``,
downloaded beforehand: nothing is fetched here), checks that they fit the
teacher exactly (the same strict load the distiller does) and writes an
mmpretrain checkpoint for ``model.teacher.checkpoint``.

Usage::

    python tools/model_converters/timm_teacher_weights.py CONFIG SRC DST

CONFIG is a distillation config (its ``model.teacher.config`` is used) or a
config whose ``model`` is the teacher itself.
"""
import argparse
import os
import os.path as osp

# torch, mmengine and mmscalekd are imported where they are used, so that
# `--help` answers at once.
__all__ = ['import_timm_teacher_weights']


def _teacher_config(config: str):
    from mmengine.config import Config
    cfg = Config.fromfile(config)
    model = cfg.model
    if model.get('type') == 'ScaleKDDistiller':
        return model.teacher.config
    return model.to_dict()


def import_timm_teacher_weights(config: str, src: str, dst: str) -> str:
    """Write ``dst``, the checkpoint of the timm teacher of ``config``.

    Raises:
        CheckpointError: ``src`` is unreadable or its keys / shapes do not
            match the teacher exactly (nothing is written then).
    """
    import torch
    from mmpretrain.registry import MODELS

    from mmscalekd.models.teachers import (load_teacher_model_config,
                                           load_teacher_weights)
    teacher_cfg = load_teacher_model_config(_teacher_config(config))
    if teacher_cfg.get('type') != 'TimmClassifier':
        raise ValueError(
            f'The teacher of {config!r} is a {teacher_cfg.get("type")}, not '
            'a TimmClassifier; timm weights only fit a timm teacher.')
    if src.startswith(('http://', 'https://')):
        raise ValueError('SRC must be a local file; download it first.')
    if not src.endswith(('.safetensors', '.bin', '.pth', '.pt')):
        raise ValueError(f'SRC {src!r} should be a local .safetensors or '
                         '.bin file of timm weights.')
    # The strict check of training itself: unreadable files, missing,
    # unexpected or mis-shaped keys and NaN weights are a CheckpointError
    # naming SRC, and nothing is written. timm's names are the
    # TimmClassifier's checkpoint names (see above).
    teacher = MODELS.build(teacher_cfg)
    load_teacher_weights(teacher, src, key='SRC')
    os.makedirs(osp.dirname(osp.abspath(dst)), exist_ok=True)
    tmp = dst + '.tmp'
    torch.save(dict(meta=dict(converted_from=osp.abspath(src)),
                    state_dict=teacher.state_dict()), tmp)
    os.replace(tmp, dst)
    return dst


def parse_args():
    parser = argparse.ArgumentParser(
        description='Import timm weights (a local .safetensors / .bin file) '
        'into a checkpoint of the timm teacher of a config, strictly.')
    parser.add_argument('config', help='distillation or teacher config')
    parser.add_argument('src', help='local timm weights file')
    parser.add_argument('dst', help='output checkpoint (.pth)')
    parser.add_argument('--verbose', action='store_true',
                        help='print the traceback of an error')
    return parser.parse_args()


def main():
    args = parse_args()
    import mmscalekd  # noqa: F401  (registers the package)
    from mmscalekd.utils.command_line import report_errors
    report_errors(verbose=args.verbose)
    path = import_timm_teacher_weights(args.config, args.src, args.dst)
    print(f'teacher checkpoint: {path}')


if __name__ == '__main__':
    main()
