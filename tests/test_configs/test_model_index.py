"""The model zoo that ``mim search mmscalekd`` shows.

``model-index.yml`` imports ``configs/scalekd/metafile.yml``; setup.py ships
both in ``mmscalekd/.mim``, where mim looks for ``model-index.yml``. These
tests read the repository's files with mim's own loader and table builder,
then run ``mim search`` on the installed package. They parse none of our
configs (only the few mmpretrain configs they inherit), so they take
seconds.
"""
import ast
import functools
import glob
import os.path as osp
import re
import subprocess
import sys

import mmpretrain
import pytest
import yaml
from mmengine.config import Config
from mim.commands.search import convert2df, filter_by_models
from modelindex.load_model_index import load

from tests.conftest import REPO_ROOT

INDEX = osp.join(REPO_ROOT, 'model-index.yml')
METAFILE = osp.join('configs', 'scalekd', 'metafile.yml')
SHIPPED = sorted(
    osp.relpath(path, REPO_ROOT)
    for path in glob.glob(osp.join(REPO_ROOT, 'configs', 'scalekd', '*.py')))
PAPER_METRIC = 'Paper Top 1 Accuracy'
REPRODUCED_METRIC = 'Reproduced Top 1 Accuracy'
SHARED_BASES = sorted(
    osp.relpath(path, REPO_ROOT) for path in glob.glob(
        osp.join(REPO_ROOT, 'configs', '_base_', 'scalekd', '*.py')))


def read_yaml(path):
    with open(osp.join(REPO_ROOT, path)) as f:
        return yaml.safe_load(f)


def models():
    return read_yaml(METAFILE)['Models']


def name_of(config):
    return osp.splitext(osp.basename(config))[0]


def paper_top1(model):
    for result in model.get('Results', []):
        if PAPER_METRIC in result['Metrics']:
            return result['Metrics'][PAPER_METRIC]
    return None


def base_chain(config):
    """The config and its local ``_base_`` files, in order, and the
    ``mmpretrain::`` configs the chain ends in; read from the text."""
    tree = ast.parse(open(osp.join(REPO_ROOT, config)).read())
    bases = []
    for node in tree.body:
        if (isinstance(node, ast.Assign)
                and getattr(node.targets[0], 'id', None) == '_base_'):
            bases = ast.literal_eval(node.value)
    bases = [bases] if isinstance(bases, str) else bases
    local, mmpretrain = [config], []
    for base in bases:
        if base.startswith('mmpretrain::'):
            mmpretrain.append(base)
        else:
            more_local, more_mmpretrain = base_chain(
                osp.normpath(osp.join(osp.dirname(config), base)))
            local += more_local
            mmpretrain += more_mmpretrain
    return local, mmpretrain


@functools.lru_cache(maxsize=None)
def mmpretrain_config(base):
    """An ``mmpretrain::`` config, parsed from mmpretrain's own files."""
    return Config.fromfile(osp.join(
        osp.dirname(mmpretrain.__file__), '.mim', 'configs',
        base[len('mmpretrain::'):]))


def batch_per_gpu(config):
    """``train_dataloader.batch_size`` of a config: the nearest file of its
    chain that sets it, read from the text; else the mmpretrain base's."""
    local, mmpretrain_bases = base_chain(config)
    for path in local:
        tree = ast.parse(open(osp.join(REPO_ROOT, path)).read())
        for node in tree.body:
            if (isinstance(node, ast.Assign)
                    and getattr(node.targets[0], 'id', None) ==
                    'train_dataloader' and isinstance(node.value, ast.Call)):
                for key in node.value.keywords:
                    if key.arg == 'batch_size':
                        return ast.literal_eval(key.value)
    for base in reversed(mmpretrain_bases):
        if 'train_dataloader' in mmpretrain_config(base):
            return mmpretrain_config(base).train_dataloader.batch_size
    return None


def batch_problems(model):
    """Where a metafile entry's batch disagrees with its name
    (``<gpus>xb<per GPU>``) or with what its config trains with."""
    name = name_of(model['Config'])
    gpus, per_gpu = map(int, re.search(r'_(\d+)xb(\d+)[-_]', name).groups())
    problems = []
    if model['Metadata']['Batch Size'] != gpus * per_gpu:
        problems.append(
            f'{name}: Batch Size {model["Metadata"]["Batch Size"]} in '
            f'{METAFILE}, {gpus} x {per_gpu} in the name')
    config_batch = batch_per_gpu(model['Config'])
    if config_batch != per_gpu:
        problems.append(f'{name}: {per_gpu} per GPU in the name, '
                        f'train_dataloader.batch_size={config_batch} in '
                        'the config')
    return problems


def teacher_checkpoints():
    """Checkpoint -> file, of each teacher (a ``dict(config=...,
    checkpoint=...)``) written in a shipped config or a base they share."""
    found = {}
    for config in SHIPPED + SHARED_BASES:
        tree = ast.parse(open(osp.join(REPO_ROOT, config)).read())
        for node in ast.walk(tree):
            if isinstance(node, ast.Call):
                keys = {key.arg: key.value for key in node.keywords}
                if 'config' in keys and 'checkpoint' in keys:
                    found[ast.literal_eval(keys['checkpoint'])] = config
    return found


def test_index_imports_the_metafile():
    index = read_yaml('model-index.yml')
    assert index['Import'] == [METAFILE]


def test_every_config_is_listed_once_and_every_listed_config_exists():
    listed = [model['Config'] for model in models()]
    assert len(listed) == len(set(listed)), 'a config is listed twice'
    missing = sorted(set(SHIPPED) - set(listed))
    assert not missing, (
        f'{missing} are not in {METAFILE}: add an entry for each (teacher, '
        'student, strategy, recipe, the paper\'s top-1 if it reports one)')
    for config in listed:
        assert osp.isfile(osp.join(REPO_ROOT, config)), (
            f'{METAFILE} lists {config}, which does not exist')


def test_entries_are_named_after_their_configs():
    # as in mmpretrain, so `mim search --config NAME` and `mim train
    # mmscalekd NAME.py` name the same thing
    for model in models():
        assert model['Name'] == name_of(model['Config'])


# The collection of a baseline config, by its name's first part; every other
# distillation config is ScaleKD (or one of its ablations).
COLLECTIONS = {'logit-kd': 'Logit-KD', 'fd': 'FD'}


def test_metadata_agrees_with_the_configs():
    for model in models():
        config, meta = model['Config'], model['Metadata']
        name = name_of(config)
        local, mmpretrain = base_chain(config)
        assert meta['Recipe'] == ' + '.join(mmpretrain), name
        resnet_d = any('ResNetV1d' in open(osp.join(REPO_ROOT, c)).read()
                       for c in local)
        assert resnet_d == meta['Student'].startswith('ResNet-50-D'), name
        assert batch_problems(model) == []
        if name.startswith('student_'):
            assert model['In Collection'] == 'Student' and (
                'Teacher' not in meta), name
        else:
            teacher = name.split('_')[1]  # swin-l, beit-l, ...
            assert meta['Teacher'].lower().startswith(teacher), name
            assert model['In Collection'] == COLLECTIONS.get(
                name.split('_')[0], 'ScaleKD'), name


def test_batch_check_sees_a_name_that_is_not_the_batch(tmp_path):
    """A config named 32xb128 that trains with 32 images per GPU is caught,
    whatever batch the metafile lists for it."""
    base = "_base_ = ['mmpretrain::convnext/convnext-tiny_32xb128_in1k.py']\n"
    config = tmp_path / 'student_convnext-tiny_32xb128_in1k.py'
    config.write_text(base + 'train_dataloader = dict(batch_size=32)\n')
    name = config.stem
    entry = dict(Config=str(config), Metadata={'Batch Size': 4096})
    config_differs = (f'{name}: 128 per GPU in the name, '
                      'train_dataloader.batch_size=32 in the config')
    assert batch_problems(entry) == [config_differs]
    assert batch_problems(dict(entry, Metadata={'Batch Size': 1024})) == [
        f'{name}: Batch Size 1024 in {METAFILE}, 32 x 128 in the name',
        config_differs]
    # without its override it trains with the mmpretrain base's 128
    config.write_text(base)
    assert batch_problems(entry) == []


def test_paper_figures_are_marked_as_the_papers_and_in_the_readme():
    with open(osp.join(REPO_ROOT, 'configs', 'scalekd', 'README.md')) as f:
        rows = {
            re.match(r'\| \[([^\]]+)\]', line).group(1): line
            for line in f if re.match(r'\| \[', line)}
    with_figure = 0
    for model in models():
        # a figure measured here would be `Top 1 Accuracy`, beside weights
        assert 'Weights' not in model
        for result in model.get('Results', []):
            # and a reproduced mean (tools/analysis/collect_results.py)
            assert result['Metrics'] and set(result['Metrics']) <= {
                PAPER_METRIC, REPRODUCED_METRIC}
        top1 = paper_top1(model)
        if top1 is None or model['Name'].startswith('student_'):
            continue
        with_figure += 1
        assert f'| {top1:.2f}' in rows[model['Name']], (
            f'configs/scalekd/README.md does not give the paper\'s {top1:.2f} '
            f'that {METAFILE} lists for {model["Name"]}')
    # the eleven pairs of the method page, section 6
    assert with_figure == 11


def test_mim_reads_the_index_of_the_repository():
    index = load(INDEX)
    # modelindex resolves README paths against the metafile's folder while
    # OpenMMLab's metafiles (mmpretrain's too) give them from the index
    # root, so those are checked here instead.
    errors = [e for e in index.check(silent=True) if 'README' not in e]
    assert errors == []
    for collection in read_yaml(METAFILE)['Collections']:
        assert osp.isfile(osp.join(REPO_ROOT, collection['README']))

    table = convert2df(index)  # what `mim search` prints, one row a config
    assert sorted(table['config']) == SHIPPED
    row = table.loc['scalekd_swin-l_resnet50_8xb256-rsb-a2-300e_in1k']
    assert row['imagenet-1k/paper_top_1_accuracy'] == 82.03
    assert row['teacher'].startswith('swin-l')
    assert row['student'].startswith('resnet-50')
    assert row['recipe'] == (
        'mmpretrain::resnet/resnet50_8xb256-rsb-a2-300e_in1k.py')
    scalekd = filter_by_models(table, ['scalekd'])  # --model scalekd
    assert sorted(scalekd['config']) == [
        c for c in SHIPPED if osp.basename(c).startswith('scalekd')]


def test_mim_search_lists_every_config(tmp_path):
    """`mim search mmscalekd` on the installed package (`make test` installs
    it first). Run from an empty directory, so that mim finds the installed
    package, not the checkout's egg-info."""
    result = subprocess.run(
        [sys.executable, '-m', 'mim', 'search', 'mmscalekd',
         '--display-width', '200'],
        cwd=tmp_path, capture_output=True, text=True)
    output = result.stdout + result.stderr
    if 'mmscalekd is not installed' in output:
        pytest.skip('needs mmscalekd installed (`make install`)')
    assert result.returncode == 0, (
        f'{output}\n(an installed mmscalekd without .mim/model-index.yml is '
        'older than the index: run `make install`)')
    listed = re.findall(r'config id: (\S+)', result.stdout)
    assert sorted(listed) == sorted(map(name_of, SHIPPED)), (
        'the installed index differs from the repository\'s: run '
        '`make install`')
    for field in ('imagenet-1k/paper_top_1_accuracy', 'teacher', 'student',
                  'recipe', 'strategy'):
        assert field in result.stdout


def test_imagenet_doc_names_every_teacher_checkpoint_and_its_hash():
    with open(osp.join(REPO_ROOT, 'docs', 'imagenet.md')) as f:
        doc = f.read()
    checkpoints = teacher_checkpoints()
    assert checkpoints, 'no config sets model.teacher.checkpoint'
    for url, config in checkpoints.items():
        assert url in doc, f'docs/imagenet.md does not give {url} ({config})'
        digits = re.search(r'-([0-9a-f]{8})\.pth$', url).group(1)
        assert f'`{digits}`' in doc, config
