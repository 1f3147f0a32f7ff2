# The digits with a held-out test split (written by
# `tools/dataset_converters/prepare_digits.py --test-fraction 0.2`): the
# digits pair's loaders, but testing on meta/test.txt, which neither training
# nor the choice of a setting sees. A `--data` file of the pair builder.
_base_ = ['./digits_recipe.py']
test_dataloader = dict(dataset=dict(ann_file='meta/test.txt'))
