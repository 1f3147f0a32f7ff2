"""The user's own image folder as config values, and the config that
fine-tunes a teacher on it.

An image folder (one sub-folder per class in each split)::

    data_root/train/<class>/*.jpg    required
    data_root/val/<class>/*.jpg      required, the same class folders
    data_root/test/<class>/*.jpg     optional held-out split; val if absent

:func:`image_folder_data` turns it into the data values of a config
(mmpretrain ``CustomDataset`` loaders and ``Accuracy`` evaluators).
:func:`teacher_finetune_config` writes a complete mmpretrain config that
fine-tunes a teacher trained on other classes (an ImageNet teacher) on
those images, for distillation with logit KD on the user's classes.
"""
import copy
import os
import os.path as osp
from typing import List, Optional, Union

import torch
from mmengine.config import Config, ConfigDict
from mmengine.logging import print_log

from mmscalekd.models.utils.config_values import (check_choice,
                                                  check_integer, check_size)
from mmscalekd.utils.checkpoint import (CheckpointError, describe_mismatch,
                                        load_state_dict_file)

__all__ = ['IMAGE_EXTENSIONS', 'image_folder_data', 'teacher_finetune_config']

#: The file endings mmpretrain's ``CustomDataset`` reads (any case).
IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.ppm', '.bmp', '.pgm', '.tif')

_LAYOUT = 'DATA_ROOT/{split}/<class name>/<image>.jpg'

# Parameters a fine-tune starts from the teacher's file: all but the head,
# which is new (the user's classes).
_KEPT_PARTS = ('backbone.', 'neck.')


def _class_folders(split_dir: str) -> List[str]:
    return sorted(
        name for name in os.listdir(split_dir)
        if not name.startswith('.') and osp.isdir(osp.join(split_dir, name)))


def _holds_an_image(folder: str) -> bool:
    # CustomDataset reads images in sub-folders of a class folder too.
    for _, _, files in os.walk(folder, followlinks=True):
        if any(name.lower().endswith(IMAGE_EXTENSIONS) for name in files):
            return True
    return False


def _split_classes(data_root: str, split: str) -> List[str]:
    """The class folders of ``data_root/split``, each checked to hold an
    image."""
    split_dir = osp.join(data_root, split)
    classes = _class_folders(split_dir)
    for name in classes:
        if not _holds_an_image(osp.join(split_dir, name)):
            raise ValueError(
                f'The class folder {osp.join(split_dir, name)!r} holds no '
                f'image (file endings read: {", ".join(IMAGE_EXTENSIONS)}). '
                'Put its images there or remove the folder from every '
                'split.')
    return classes


def _check_same_classes(data_root: str, split: str, classes: List[str],
                        train_classes: List[str]) -> None:
    if classes == train_classes:
        return
    missing = sorted(set(train_classes) - set(classes))
    extra = sorted(set(classes) - set(train_classes))
    raise ValueError(
        f'The class folders of {osp.join(data_root, split)!r} differ from '
        f'those of {osp.join(data_root, "train")!r}: '
        + '; '.join(
            part for part in (
                f'missing there {missing}' if missing else '',
                f'not in train/ {extra}' if extra else '') if part)
        + '. Every split needs the same class folders (the labels are '
        'their sorted names): add or rename the folders so they match.')


def _pipelines(input_size: int):
    # Resize the short edge to 256/224 of the crop, as mmpretrain's ImageNet
    # recipes do, so a teacher sees test images framed as in its training.
    resize = int(round(input_size * 256 / 224))
    train = [
        dict(type='LoadImageFromFile'),
        dict(type='RandomResizedCrop', scale=input_size,
             backend='pillow', interpolation='bicubic'),
        dict(type='RandomFlip', prob=0.5, direction='horizontal'),
        dict(type='PackInputs'),
    ]
    test = [
        dict(type='LoadImageFromFile'),
        dict(type='ResizeEdge', scale=resize, edge='short',
             backend='pillow', interpolation='bicubic'),
        dict(type='CenterCrop', crop_size=input_size),
        dict(type='PackInputs'),
    ]
    return train, test


def _dataloader(data_root: str, split: str, classes: List[str], pipeline,
                batch_size: int, num_workers: int, shuffle: bool) -> dict:
    return dict(
        batch_size=batch_size,
        num_workers=num_workers,
        persistent_workers=num_workers > 0,
        dataset=dict(
            type='CustomDataset',
            data_root=data_root,
            data_prefix=split,
            classes=list(classes),
            pipeline=copy.deepcopy(pipeline)),
        sampler=dict(type='DefaultSampler', shuffle=shuffle))


def image_folder_data(data_root: str, input_size: int = 224,
                      batch_size: int = 32, num_workers: int = 2) -> dict:
    """The data values of a config for an image folder.

    Args:
        data_root (str): the folder holding ``train/``, ``val/`` and
            optionally ``test/``, each with one sub-folder of images per
            class (the same names in every split; labels are their sorted
            order). Kept as given: a relative path is read from where the
            training is started.
        input_size (int): the side of the square crops the networks see.
        batch_size (int): images per GPU, in every loader.
        num_workers (int): data loading processes per loader.

    Returns:
        dict: ``num_classes``, ``classes`` (the class folder names) and
        ``train_dataloader`` (random resized crops, horizontal flips),
        ``val_dataloader`` / ``test_dataloader`` (short edge resized to
        256/224 of the crop, centre crop; ``test/`` when it exists, else
        ``val/``), ``val_evaluator`` / ``test_evaluator`` (top-1 accuracy,
        and top-5 with 5 classes or more): plain dicts, ready to be a
        config's top-level values.

    Raises:
        FileNotFoundError: ``train/`` or ``val/`` is missing.
        ValueError: class folders that differ between the splits, a class
            folder without images, fewer than 2 classes.
    """
    input_size = check_size(input_size, 'input_size', example='224')[0]
    batch_size = check_integer(batch_size, 'batch_size', minimum=1)
    num_workers = check_integer(num_workers, 'num_workers', minimum=0)
    for split in ('train', 'val'):
        split_dir = osp.join(data_root, split)
        if not osp.isdir(split_dir):
            state = ('is not a folder'
                     if osp.exists(split_dir) else 'does not exist')
            raise FileNotFoundError(
                f'The image folder `data_root={data_root!r}` has no '
                f'{split}/ folder ({split_dir!r} {state}). Lay the images '
                f'out as {_LAYOUT.format(split=split)}, with the same class '
                'folders in train/ and val/.')
    classes = _split_classes(data_root, 'train')
    if len(classes) < 2:
        raise ValueError(
            f'{osp.join(data_root, "train")!r} holds {len(classes)} class '
            f'folder(s) {classes}; a classifier needs 2 at least. Put each '
            f'class in its own folder: {_LAYOUT.format(split="train")}.')
    splits = ['val'] + (['test'] if osp.isdir(osp.join(data_root, 'test'))
                        else [])
    for split in splits:
        _check_same_classes(data_root, split,
                            _split_classes(data_root, split), classes)
    train_pipeline, test_pipeline = _pipelines(input_size)
    loaders = {
        split: _dataloader(data_root, split, classes,
                           train_pipeline if split == 'train' else
                           test_pipeline, batch_size, num_workers,
                           shuffle=split == 'train')
        for split in ['train'] + splits
    }
    evaluator = dict(type='Accuracy',
                     topk=(1, 5) if len(classes) >= 5 else (1, ))
    return dict(
        num_classes=len(classes),
        classes=classes,
        train_dataloader=loaders['train'],
        val_dataloader=loaders['val'],
        val_evaluator=copy.deepcopy(evaluator),
        test_dataloader=loaders.get('test', copy.deepcopy(loaders['val'])),
        test_evaluator=copy.deepcopy(evaluator))


def _read_teacher(teacher: Union[str, dict]) -> dict:
    """The teacher's config as a dict: its own recipe for a config source,
    mmpretrain's default runtime and an AdamW recipe for a model dict."""
    if isinstance(teacher, str):
        if '::' in teacher:
            from mmengine.hub import get_config
            cfg = get_config(teacher).to_dict()
        else:
            cfg = Config.fromfile(teacher).to_dict()
        if 'model' not in cfg:
            raise KeyError(f'The teacher config {teacher!r} has no `model`.')
        return cfg
    if not isinstance(teacher, (dict, ConfigDict)):
        raise TypeError('`teacher` must be an mmpretrain config (a path or '
                        "'mmpretrain::...') or a model dict, got "
                        f'{type(teacher).__name__}.')
    from mmengine.hub import get_config
    cfg = get_config('mmpretrain::_base_/default_runtime.py').to_dict()
    cfg.update(
        model=copy.deepcopy(dict(teacher)),
        optim_wrapper=dict(
            optimizer=dict(type='AdamW', lr=1e-3, weight_decay=0.05),
            clip_grad=dict(max_norm=5.0)))
    return cfg


def _head_with_classes(model: dict, teacher, num_classes: int) -> None:
    head = model.get('head')
    if not isinstance(head, dict) or 'num_classes' not in head:
        raise KeyError(
            f'The teacher {teacher!r} has no `model.head.num_classes` to set '
            f'to the {num_classes} classes of the data: give an mmpretrain '
            'classifier (ImageClassifier with a classification head).')
    head['num_classes'] = num_classes
    if 'topk' in head:
        head['topk'] = (1, 5) if num_classes >= 5 else (1, )


def _build_on_meta(model: dict) -> torch.nn.Module:
    """The network without memory for its weights: only names and shapes
    are needed."""
    import mmpretrain.models  # noqa: F401  (registers the classifiers)
    from mmpretrain.registry import MODELS
    try:
        with torch.device('meta'):
            return MODELS.build(copy.deepcopy(model))
    except (NotImplementedError, RuntimeError):
        # A constructor that computes with tensors on the meta device.
        return MODELS.build(copy.deepcopy(model))


def _check_start_weights(network: dict, checkpoint: str) -> List[str]:
    """Check that ``checkpoint`` gives every backbone and neck weight of
    ``network`` (a state dict) with its shape; returns the keys left out
    (the old head)."""
    state = load_state_dict_file(checkpoint, key='checkpoint')
    kept = {k: v for k, v in state.items() if k.startswith(_KEPT_PARTS)}
    expected = {k: v for k, v in network.items() if k.startswith(_KEPT_PARTS)}
    mismatch = describe_mismatch(expected, kept)
    problems = [
        f'{what} {mismatch[key][:5]}' for key, what in (
            ('missing', 'missing keys'), ('unexpected', 'unexpected keys'),
            ('mismatched', 'tensors of other shapes'),
            ('dtypes', 'tensors of another dtype')) if mismatch[key]
    ]
    if problems:
        raise CheckpointError(
            f'`checkpoint={checkpoint!r}` does not fit the backbone and neck '
            'of the teacher config: ' + '; '.join(problems) + '. Give the '
            'checkpoint of exactly this teacher (only its head may differ: '
            'it is replaced for the new classes).')
    return sorted(k for k in state if not k.startswith(_KEPT_PARTS))


def _start_from(model: dict, checkpoint: str, has_neck_weights: bool):
    """Backbone (and neck) initialised from ``checkpoint``; the head is not
    read from it, so it keeps its own (random) initialisation."""
    parts = ['backbone'] + (['neck'] if has_neck_weights else [])
    for part in parts:
        model[part]['init_cfg'] = dict(type='Pretrained',
                                       checkpoint=checkpoint,
                                       prefix=f'{part}.')
    init_cfg = model.get('init_cfg')
    if isinstance(init_cfg, dict) and init_cfg.get('type') == 'Pretrained':
        # A whole-classifier file would bring the old head back.
        del model['init_cfg']


def _optimizer(recipe: dict, mode: str, lr: Optional[float]) -> dict:
    optim_wrapper = copy.deepcopy(recipe['optim_wrapper'])
    optimizer = optim_wrapper['optimizer']
    if lr is None:
        # The whole network moves less than a new head must.
        lr = optimizer['lr'] if mode == 'head' else optimizer['lr'] / 10
    optimizer['lr'] = lr
    if mode == 'head':
        # lr 0 and no weight decay: the backbone and neck stay as the file
        # gave them. The recipe's other custom keys would match some of
        # their parameters first and train them, so they go.
        frozen = dict(lr_mult=0.0, decay_mult=0.0)
        optim_wrapper['paramwise_cfg'] = dict(
            custom_keys={'backbone': frozen, 'neck': frozen})
    return optim_wrapper


def teacher_finetune_config(teacher: Union[str, dict],
                            checkpoint: str,
                            data: dict,
                            mode: str = 'head',
                            epochs: int = 10,
                            lr: Optional[float] = None,
                            warmup_epochs: int = 1) -> dict:
    """A complete mmpretrain config that fine-tunes ``teacher`` on ``data``.

    For a teacher trained on other classes than the user's (an ImageNet
    teacher, 37 classes of pets): fine-tuned, it predicts the user's
    classes, so logit KD can run with it. The config trains with
    mmpretrain's ``tools/train.py`` and mmscalekd's, and its checkpoints
    load strictly as ``model.teacher.checkpoint`` of a distillation config
    whose ``model.teacher.config`` is this config.

    The network is the teacher config's model with ``head.num_classes``
    set to the data's. Its backbone (and neck, when the file has neck
    weights) start from ``checkpoint`` (``init_cfg=dict(type='Pretrained',
    prefix=...)``); the old head's weights are left out, by name (logged),
    and the new head starts from its own initialisation. The file is
    checked first: every backbone and neck weight must be there with the
    teacher's shape.

    Args:
        teacher (str | dict): an mmpretrain config
            (``'mmpretrain::swin_transformer/swin-base_16xb64_in1k.py'``
            or a path), whose model, optimizer and runtime are used, or a
            classifier's model dict (then mmpretrain's default runtime and
            AdamW, lr 1e-3, weight decay 0.05).
        checkpoint (str): the teacher's weights, a path or URL (a URL is
            read when training starts, unchecked).
        data (dict): :func:`image_folder_data`'s values; its loaders and
            evaluators become the config's.
        mode (str): ``'head'``: only the head trains (the backbone and neck
            get lr 0 and no weight decay); ``'full'``: every weight trains.
        epochs (int): training epochs.
        lr (float, optional): the optimizer's lr; None: the recipe's for
            ``'head'``, a tenth of it for ``'full'``.
        warmup_epochs (int): linear warm-up before the cosine decay
            (0 for none).

    Returns:
        dict: the config, ready to be dumped (``Config(cfg).dump(path)``).
    """
    check_choice(mode, 'mode', ('head', 'full'),
                 note="'head' trains only the new head, 'full' every weight")
    epochs = check_integer(epochs, 'epochs', minimum=1)
    warmup_epochs = check_integer(warmup_epochs, 'warmup_epochs', minimum=0)
    cfg = _read_teacher(teacher)
    model = cfg['model']
    num_classes = data['num_classes']
    _head_with_classes(model, teacher, num_classes)
    for preprocessor in (cfg.get('data_preprocessor'),
                         model.get('data_preprocessor')):
        if isinstance(preprocessor, dict):
            preprocessor['num_classes'] = num_classes
    network = _build_on_meta(model).state_dict()
    if '://' not in checkpoint:
        left_out = _check_start_weights(network, checkpoint)
        print_log(
            f'The teacher fine-tune starts from the backbone and neck of '
            f'{checkpoint!r}; its other {len(left_out)} entries (the old '
            f'classifier: {left_out[:4]}) are left out, and the new head '
            f'for {num_classes} classes starts untrained.',
            logger='current')
    _start_from(model, checkpoint,
                any(k.startswith('neck.') for k in network))
    cfg['optim_wrapper'] = _optimizer(cfg, mode, lr)
    warmup = min(warmup_epochs, epochs - 1)
    cfg['param_scheduler'] = ([
        dict(type='LinearLR', start_factor=0.1, by_epoch=True, begin=0,
             end=warmup, convert_to_iter_based=True)
    ] if warmup else []) + [
        dict(type='CosineAnnealingLR', by_epoch=True, begin=warmup,
             end=epochs, eta_min=0.0, convert_to_iter_based=True)
    ]
    cfg['train_cfg'] = dict(by_epoch=True, max_epochs=epochs, val_interval=1)
    cfg['val_cfg'], cfg['test_cfg'] = dict(), dict()
    for key in ('train_dataloader', 'val_dataloader', 'val_evaluator',
                'test_dataloader', 'test_evaluator'):
        cfg[key] = copy.deepcopy(data[key])
    # The lr above is meant for this config's batch size.
    cfg['auto_scale_lr'] = dict(
        base_batch_size=data['train_dataloader']['batch_size'])
    cfg.setdefault('default_hooks', {})['checkpoint'] = dict(
        type='CheckpointHook', interval=1, max_keep_ckpts=1, save_last=True)
    cfg['load_from'], cfg['resume'] = None, False
    return cfg
