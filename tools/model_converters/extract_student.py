"""Take the student out of a ScaleKD (or logit-KD) training checkpoint.

Writes, into OUT_DIR:

- ``student.pth``: an mmpretrain checkpoint of the student classifier alone
  (``state_dict`` without the ``student.`` prefix, ``meta.dataset_meta``
  when the run recorded it), and ``student_config.py``: the distillation
  config with ``model`` replaced by the student and without what only
  mmscalekd reads (``custom_imports``, its hooks, the teacher and
  student dicts, the blocks the ScaleKD configs share), so the pair loads
  where only mmpretrain is installed. A
  ``TimmStudentBackbone`` student is written as mmpretrain's
  ``TimmClassifier`` (the same network, timm's parameter names; needs timm).
  Together::

      model = mmpretrain.get_model('OUT_DIR/student_config.py',
                                   pretrained='OUT_DIR/student.pth')
      ImageClassificationInferencer('OUT_DIR/student_config.py',
                                    pretrained='OUT_DIR/student.pth')

- ``backbone.pth``: the backbone alone (keys ``backbone.*``), for a
  downstream mmdet / mmseg model, and ``backbone_config.py``: that
  backbone's own config, ``backbone = dict(type='mmpretrain.ResNetV1d',
  depth=50, ..., init_cfg=dict(type='Pretrained',
  checkpoint='OUT_DIR/backbone.pth', prefix='backbone.'))``. Its type and
  arguments are the student's, so every key of the file fits the backbone
  it builds; a backbone of another type (``ResNet`` for a ``ResNetV1d``
  student) would load the file only in part, with a warning, and keep the
  rest random.
- ``<timm model name>.safetensors`` for students built on
  ``TimmStudentBackbone``: the timm model with the student's head as its
  classifier, which ``timm.create_model(name, pretrained=True,
  pretrained_cfg_overlay=dict(file=..., num_classes=K), num_classes=K)``
  loads strictly.

Projectors and the frozen teacher are left behind (the teacher is never in
training checkpoints). A checkpoint whose student weights hold NaN or Inf
(saved from a diverged run) is refused, and nothing is written.

Usage::

    python tools/model_converters/extract_student.py CONFIG CHECKPOINT OUT_DIR
"""
import argparse

# mmscalekd (its library: mmscalekd/engine/student_export.py) is imported in
# main(), so that `--help` answers at once.


def parse_args():
    parser = argparse.ArgumentParser(
        description='Extract the student of a ScaleKD checkpoint as an '
        'mmpretrain checkpoint, a backbone checkpoint with its config and '
        '(timm students) a timm safetensors file.')
    parser.add_argument('config', help='the distillation config')
    parser.add_argument('checkpoint', help='the distillation checkpoint')
    parser.add_argument('out_dir', help='folder for the student files')
    parser.add_argument('--verbose', action='store_true',
                        help='print the traceback of an error')
    return parser.parse_args()


def main():
    args = parse_args()
    from mmscalekd.engine.student_export import extract_student
    from mmscalekd.utils.command_line import report_errors
    report_errors(verbose=args.verbose)
    for kind, path in extract_student(args.config, args.checkpoint,
                                      args.out_dir).items():
        print(f'{kind}: {path}')


if __name__ == '__main__':
    main()
