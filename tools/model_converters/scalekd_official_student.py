"""Turn a student released by the ScaleKD authors into mmpretrain files.

The authors (public repository deep-optimization/ScaleKD, a fork of mmcls
1.0rc) link ten distilled students from their README's model zoo. This
writes, into OUT_DIR:

- ``<name>.pth``: an mmpretrain checkpoint of the student alone (the
  student's ``state_dict``, ``meta`` with the file's dataset meta, epoch,
  ``official_family`` and ``ema_weights``);
- ``<name>_config.py``: an mmpretrain config that builds that student and
  tests it on ImageNet-1k val (mmpretrain's runtime defaults, the
  authors' test pipeline: short edge 256, bicubic, centre crop 224); load
  with ``mmpretrain.get_model('<name>_config.py', pretrained='<name>.pth')``
  or evaluate with ``tools/test.py <name>_config.py <name>.pth``;
- ``<name>.safetensors`` for the timm student (MobileNet-V1): timm's own
  names, for ``timm.create_model('mobilenetv1_100', act_layer='relu',
  num_classes=K, pretrained=True, pretrained_cfg_overlay=dict(file=...))``.

``<name>`` is the family unless ``--name`` says otherwise. Nothing is written
for a file that is not one of theirs, whose weights do not fit the family
exactly (the missing and extra keys are listed), or that holds NaN / Inf.

Usage::

    python tools/model_converters/scalekd_official_student.py CHECKPOINT \\
        OUT_DIR [--family FAMILY] [--name NAME] [--cfg-options KEY=VALUE]

Families (``--family``; without it the family is told from the keys and
the shapes, and a file that fits none or several is refused):
``resnet50-d``, ``mobilenet-v1``, ``convnext-tiny``, ``mixer-s16``,
``mixer-b16``, ``mixer-b14``, ``vit-small``, ``vit-base``, ``vit-base-p14``,
``swin-tiny``.

What this relies on about the authors' files, and where it comes from
(paths in deep-optimization/ScaleKD unless another repository is named):

- Their distiller (``mmcls/models/classifiers/distiller.py``,
  ``ClassificationDistiller``) is a module with the attributes
  ``teacher`` (the whole teacher, frozen but still a submodule, so its
  weights are saved), ``student``, ``distill_losses`` (a module dict keyed
  by the loss names of the config, e.g. ``loss_fmd_s3``, holding the
  projectors) and an unused ``linear`` (384 -> 384). mmengine's checkpoint
  hook saves its state dict, so the student's weights are the keys under
  ``student.``; the rest of the file is mmengine's usual ``meta``,
  ``optimizer``, ``param_schedulers`` and ``message_hub``. The README's
  ``pth_transfer.py`` (the copy in yzd-v/cls_KD, which the README thanks)
  keeps the ``student.`` keys without the prefix and drops ``optimizer``:
  both forms are read.
- Students trained with mmengine's ``EMAHook`` (ConvNeXt-T:
  ``configs/convnext/convnext-tiny_32xb128_in1k.py``; the DeiT configs of
  the same fork as published in lusilili/UFD-KD) hold the averaged
  weights under ``state_dict`` (the hook swaps them in before saving) and
  the trained ones under ``ema_state_dict``; ``state_dict`` is used, and
  ``meta.ema_weights`` says whether the file had an ``ema_state_dict``.
- The student configs of
  ``configs/distillers/advanced_training_strategy/*.py`` (``student_cfg``
  and ``_base_``) give each family's module: ResNet-50 is mmcls's
  ``ResNetV1d`` (``configs/_base_/models/resnet50d_strong_aug.py``, whose
  head is a ``MultiLabelLinearClsHead``: the same ``head.fc``; it is written
  as a ``LinearClsHead``, the same logits with softmax scores); ConvNeXt-T
  has a norm after every stage (``out_indices=[-4, -3, -2, -1]``,
  ``gap_before_final_norm=False``, then pooling:
  UFD-KD ``configs/_base_/models/convnext/convnext-tiny.py``); the Mixers
  are mmcls's ``MlpMixer`` (``configs/_base_/models/mlp_mixer_base_patch16.py``
  and UFD-KD's ``..._small_patch16.py`` / ``..._base_patch14.py``), whose
  last output is the final norm, pooled.
- Their Swin (``mmcls/models/backbones/swin_transformer.py``) builds a
  norm only for stage 3 (``norm3``; other stages get none): mmpretrain's
  ``SwinTransformer`` with ``out_indices=(3,)`` has exactly those keys.
- Their ViTs (``with_cls_token=False``, ``output_cls_token=False``:
  UFD-KD ``configs/deit/deit-small_pt-4xb256_in1k.py``,
  ``deit-base_pt-4xb256_in1k.py``, ``deit-base_pt-4xb256_p14_in1k.py``; the
  module in UFD-KD ``mmcls/models/backbones/vision_transformer.py``) always
  hold a ``cls_token`` and a position embedding with its entry; the token
  is dropped after the embedding is added, before the first block, so
  both go and mmpretrain's ``VisionTransformer(with_cls_token=False)``
  takes the patches' entries. ViT-B/14 uses ``avg_token=True`` (the
  patches' mean through a second norm ``ln2``, no neck): mmpretrain's
  ``out_type='avg_featmap'``, chosen whenever the file has ``ln2``; the
  others pool the final-norm patch map.
- MobileNet-V1 is the cls_KD module (yzd-v/cls_KD
  ``mmcls/models/backbones/mobilenet_v1.py``): a stem and 13
  depthwise-separable blocks with ReLU, saved as ``backbone.model.*`` and
  ``backbone.s4.*``; the copy of the fork in UFD-KD splits the same blocks
  as ``backbone.s1.*``-``backbone.s4.*`` (four outputs, which ScaleKD's
  distiller indexes). ScaleKD's own copy is not public in the store this was
  read from, so both are read. Both map one to one onto timm's
  ``mobilenetv1_100`` built with ``act_layer='relu'`` (the config uses
  mmpretrain's ``TimmClassifier``).

The released files themselves (Google Drive) were not available here: the
tests lay out files as the code above saves them.
"""
import argparse

# torch, mmengine and mmscalekd (the library:
# mmscalekd/engine/official_students.py) are imported in main(), so that
# `--help` answers at once.

# The families of mmscalekd.engine.official_students.FAMILIES, named here so
# that `--help` needs no model code (a test keeps the two lists equal).
FAMILY_NAMES = ('resnet50-d', 'mobilenet-v1', 'convnext-tiny', 'mixer-s16',
                'mixer-b16', 'mixer-b14', 'vit-small', 'vit-base',
                'vit-base-p14', 'swin-tiny')


def parse_args():
    parser = argparse.ArgumentParser(
        description='Convert a student checkpoint released by the ScaleKD '
        'authors into an mmpretrain checkpoint and config (and, for '
        'MobileNet-V1, a timm safetensors file).')
    parser.add_argument('checkpoint', help="the authors' checkpoint file")
    parser.add_argument('out_dir', help='folder for the written files')
    parser.add_argument(
        '--family',
        help=', '.join(FAMILY_NAMES) +
        ' (default: told from the weights)')
    parser.add_argument(
        '--name', help='name of the written files (default: the family)')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action='extend',
        metavar='KEY=VALUE',
        help='override settings of the written config, e.g. '
        'test_dataloader.dataset.data_root=/data/imagenet')
    parser.add_argument('--verbose', action='store_true',
                        help='print the traceback of an error')
    return parser.parse_args()


def main():
    args = parse_args()
    from mmscalekd.engine.official_students import convert_official_student
    from mmscalekd.utils.command_line import dict_options, report_errors
    report_errors(verbose=args.verbose)
    dict_options(args, 'cfg_options')
    written = convert_official_student(
        args.checkpoint, args.out_dir, family=args.family, name=args.name,
        cfg_options=args.cfg_options)
    for kind, path in written.items():
        print(f'{kind}: {path}')


if __name__ == '__main__':
    main()
