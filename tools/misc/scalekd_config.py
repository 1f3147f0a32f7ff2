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
import os.path as osp
import tempfile

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
    parser.add_argument('--finetune-teacher', choices=('head', 'full'))
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


def main(argv=None):
    args = parse_args(argv)
    import mmscalekd  # noqa: F401  (registers the models)
    from mmscalekd.config_builder import (BuilderError, data_settings,
                                          plan_pair, write_pair)
    from mmscalekd.config_builder.check import check_config
    from mmscalekd.utils.command_line import report_errors
    report_errors(verbose=args.verbose, tool='scalekd_config')
    for flag in ('data_root', 'finetune_teacher', 'student_checkpoint'):
        if getattr(args, flag) is not None:
            raise BuilderError(
                f'`--{flag.replace("_", "-")}` is not supported by this '
                'tool yet; leave it out (give the data with `--data`).')
    plan = plan_pair(
        args.teacher, args.student, args.teacher_checkpoint, args.recipe,
        data_settings(args.data, args.batch_size), args.num_classes,
        args.input_size, args.feature_only, args.name,
        {key: getattr(args, key) for key in _OVERRIDES})
    print('The choices:')
    print('\n'.join(plan.lines()))
    if not args.no_check:
        # Checked as written, before anything reaches --out-dir.
        with tempfile.TemporaryDirectory() as trial:
            print('\n'.join(check_config(
                write_pair(plan, trial)['scalekd'], args.check_batch_size)))
    for kind, path in write_pair(plan, args.out_dir).items():
        print(f'{kind}: {path}')


if __name__ == '__main__':
    main()
