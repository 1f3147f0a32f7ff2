"""Write the ScaleKD config of your own teacher / student pair, and its two
baselines (the student alone, logit distillation), after checking the pair
on CPU.

Every setting is chosen by the rules the released configs follow
(docs/method.md, section 5.1) and printed with its reason; a flag overrides
each. Written into ``--out-dir``: ``student_<name>.py`` (the recipe and the
runtime), ``scalekd_<name>.py`` and ``logit-kd_<name>.py`` (both inherit
the student config; the latter only where teacher and student predict the
same classes).

Usage::

    python tools/misc/scalekd_config.py \\
        --teacher mmpretrain::swin_transformer/swin-large_16xb64_in1k.py \\
        --teacher-checkpoint swin-large.pth \\
        --student mmpretrain::resnet/resnet18_8xb32_in1k.py
    mim run mmscalekd scalekd_config --teacher timm/vit_small_patch16_224 \\
        --student timm/resnet18 --recipe RECIPE --data DATA_CONFIG
"""
import argparse
import os
import os.path as osp
import tempfile
from dataclasses import replace

# torch, mmengine and mmscalekd are imported where they are used, so that
# `--help` answers at once.


def _pair(kind):
    """``'A,B'`` -> a (perception, final) pair of ``kind``."""

    def parse(text):
        values = text.split(',')
        if len(values) != 2:
            raise argparse.ArgumentTypeError(
                f'{text!r}: give two values, perception,final')
        return tuple(kind(v) for v in values)

    return parse


def _yes_no(text: str) -> bool:
    if text not in ('yes', 'no'):
        raise argparse.ArgumentTypeError(f'{text!r}: give yes or no')
    return text == 'yes'


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Write a ScaleKD config and its baselines for a teacher '
        'and a student.')
    sources = ('an mmpretrain config (mmpretrain::...), a config file or '
               'timm/<model name>')
    parser.add_argument('--teacher', required=True, help=sources)
    parser.add_argument('--teacher-checkpoint', help='the teacher weights '
                        '(default: none, a random teacher, for trials)')
    parser.add_argument('--student', required=True, help=sources)
    parser.add_argument('--student-checkpoint',
                        help='weights the student starts from')
    parser.add_argument('--recipe', help='the training recipe: an mmpretrain '
                        'config or a config file (default: the student\'s '
                        'own config)')
    parser.add_argument('--data', help='a config file whose dataloaders and '
                        'evaluators replace the recipe\'s')
    parser.add_argument('--data-root', help='an image folder (class '
                        'sub-folders)')
    parser.add_argument('--num-classes', type=int)
    parser.add_argument('--input-size', type=int, default=224)
    parser.add_argument('--batch-size', type=int,
                        help='images per GPU in training')
    parser.add_argument('--feature-only', action='store_true',
                        help='no logit distillation in the ScaleKD config')
    parser.add_argument('--finetune-teacher', choices=('head', 'full'),
                        help='with --data-root: also write '
                        'teacher-finetune_<name>.py, which fine-tunes the '
                        'teacher (its head, or all of it) on the images; the '
                        'distillation configs take the fine-tuned teacher')
    parser.add_argument('--finetune-epochs', type=int, default=10,
                        help='epochs of the teacher fine-tune')
    parser.add_argument('--out-dir', default=osp.join('configs', 'own'))
    parser.add_argument('--name', help='file stem (default: '
                        '<teacher>_<student>)')
    group = parser.add_argument_group('settings (default: chosen by rule)')
    group.add_argument('--student-taps', type=_pair(str),
                       metavar='PERCEPTION,FINAL')
    group.add_argument('--teacher-split', type=int)
    group.add_argument('--num-heads', type=_pair(int),
                       metavar='PERCEPTION,FINAL')
    group.add_argument('--self-query', type=_pair(_yes_no),
                       metavar='yes|no,yes|no')
    group.add_argument('--softmax-scale', type=float)
    group.add_argument('--spatial-weights', type=_pair(float),
                       metavar='PERCEPTION,FINAL')
    group.add_argument('--frequency-weights', type=_pair(float),
                       metavar='PERCEPTION,FINAL')
    group.add_argument('--tau', type=float)
    group.add_argument('--alpha', type=float)
    parser.add_argument('--check-batch-size', type=int, default=2,
                        help='batch of the CPU check')
    parser.add_argument('--no-check', action='store_true',
                        help='write without the CPU check')
    parser.add_argument('--verbose', action='store_true',
                        help='print tracebacks')
    return parser.parse_args(argv)


_OVERRIDES = ('student_taps', 'teacher_split', 'num_heads', 'self_query',
              'softmax_scale', 'spatial_weights', 'frequency_weights', 'tau',
              'alpha')


def _default_name(args) -> str:
    from mmscalekd.config_builder import resolve_source
    return (f"{resolve_source(args.teacher, '--teacher').name}_"
            f"{resolve_source(args.student, '--student').name}")


def _data_and_teacher(args):
    """The data part of the configs, and the teacher the distillation
    configs take: the given one, or with ``--finetune-teacher`` the
    fine-tune config (written into --out-dir first, since the distillation
    configs read it; removed again if they cannot be written) and the
    checkpoint its training writes last."""
    from mmscalekd.config_builder import (BuilderError, data_settings,
                                          folder_settings)
    if args.data_root is None:
        if args.finetune_teacher is not None:
            raise BuilderError(
                '`--finetune-teacher` fine-tunes the teacher on an image '
                'folder: give the folder with `--data-root`.')
        return (data_settings(args.data, args.batch_size), args.teacher,
                args.teacher_checkpoint, None)
    if args.data is not None:
        raise BuilderError('`--data` and `--data-root` both give the data: '
                           'keep one of them.')
    from mmscalekd.config_builder.own_data import (image_folder_data,
                                                   teacher_finetune_config)
    folder = image_folder_data(args.data_root, args.input_size,
                               args.batch_size or 32)
    if args.finetune_teacher is None:
        return (folder_settings(folder), args.teacher,
                args.teacher_checkpoint, None)
    if args.teacher_checkpoint is None:
        raise BuilderError(
            '`--finetune-teacher` starts from the teacher\'s weights: give '
            'them with `--teacher-checkpoint`.')
    from mmengine.config import Config
    from mmscalekd.config_builder import resolve_source, teacher_model
    from mmscalekd.config_builder import load_source_config
    source = resolve_source(args.teacher, '--teacher')
    if source.kind == 'timm':
        teacher = teacher_model(source, args.input_size)
    else:
        teacher_cfg = load_source_config(source)
        # a recipe: fine-tuned with it; a model alone: with mmpretrain's
        # default runtime and AdamW
        teacher = source.reference if 'optim_wrapper' in teacher_cfg \
            else teacher_cfg.model.to_dict()
    finetune = teacher_finetune_config(
        teacher, args.teacher_checkpoint, folder, args.finetune_teacher,
        args.finetune_epochs)
    name = args.name or _default_name(args)
    os.makedirs(args.out_dir, exist_ok=True)
    path = osp.join(osp.abspath(args.out_dir), f'teacher-finetune_{name}.py')
    Config(finetune).dump(path)
    # mmengine's default work dir of that config, from where it is run
    checkpoint = osp.join('work_dirs', f'teacher-finetune_{name}',
                          f'epoch_{args.finetune_epochs}.pth')
    return folder_settings(folder), path, checkpoint, path


def main(argv=None):
    args = parse_args(argv)
    import mmscalekd  # noqa: F401  (registers the models)
    from mmscalekd.utils.command_line import report_errors
    report_errors(verbose=args.verbose, tool='scalekd_config')
    data, teacher, teacher_checkpoint, finetune = _data_and_teacher(args)
    try:
        paths = _plan_check_write(args, data, teacher, teacher_checkpoint,
                                  finetune)
    except BaseException:
        # no fine-tune config without the distillation configs it serves
        if finetune is not None and osp.exists(finetune):
            os.remove(finetune)
        raise
    for kind, path in paths.items():
        print(f'{kind}: {path}')


def _plan_check_write(args, data, teacher, teacher_checkpoint, finetune):
    from mmscalekd.config_builder import plan_pair, write_pair
    from mmscalekd.config_builder.check import check_config
    plan = plan_pair(
        teacher, args.student, teacher_checkpoint, args.recipe, data,
        args.num_classes, args.input_size, args.feature_only, args.name
        or _default_name(args),
        {key: getattr(args, key) for key in _OVERRIDES},
        args.student_checkpoint)
    print('The choices:')
    print('\n'.join(plan.lines()))
    if not args.no_check:
        # Checked as written, before anything reaches --out-dir; a teacher
        # still to be fine-tuned is checked with its fine-tune's weights
        # (random), which the fine-tune has not written yet.
        trial_plan = plan
        if finetune is not None:
            trial_plan = replace(plan, model=dict(
                plan.model, teacher=dict(plan.model['teacher'],
                                         checkpoint=None)))
        with tempfile.TemporaryDirectory() as trial:
            print('\n'.join(check_config(
                write_pair(trial_plan, trial)['scalekd'],
                args.check_batch_size)))
    paths = write_pair(plan, args.out_dir)
    if finetune is not None:
        paths['teacher_finetune'] = finetune
    return paths


if __name__ == '__main__':
    main()
