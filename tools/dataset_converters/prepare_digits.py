# Write scikit-learn's bundled handwritten digits (1,797 real 8x8 images,
# nothing downloaded) as an mmpretrain CustomDataset; see
# mmscalekd/datasets/digits.py for the layout and a dataset config.
import argparse


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Convert sklearn.datasets.load_digits() to PNG files '
        'with mmpretrain CustomDataset annotation files')
    parser.add_argument(
        '--out', default='data/digits', help='dataset root to (re)write')
    parser.add_argument(
        '--val-fraction',
        type=float,
        default=0.3,
        help='share of each class in the validation split')
    parser.add_argument(
        '--test-fraction',
        type=float,
        default=0,
        help='share of each class in a held-out test split '
        '(meta/test.txt); 0, the default, writes none')
    parser.add_argument('--seed', type=int, default=0, help='split seed')
    parser.add_argument('--verbose', action='store_true',
                        help='print the traceback of an error')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    # Imported now, not before parsing: `--help` answers at once.
    from mmscalekd.datasets.digits import prepare_digits
    from mmscalekd.utils.command_line import report_errors
    report_errors(verbose=args.verbose)
    counts = prepare_digits(args.out, args.val_fraction, args.seed,
                            args.test_fraction)
    test = f', {counts["test"]} test' if 'test' in counts else ''
    print(f'Wrote {counts["total"]} images to {args.out}: '
          f'{counts["train"]} train, {counts["val"]} val{test}.')


if __name__ == '__main__':
    main()
