"""One test per row of docs/errors.md: bad input fails early and clearly."""
import os
import os.path as osp
import re
import shutil
import socket
import subprocess
import sys

import pytest
import torch
from mmengine.config import Config
from mmpretrain.registry import MODELS

from mmscalekd.analysis import PredictionFileError, reproduce, sweep
from mmscalekd.analysis.reproduce_results import collect_results
from mmscalekd.engine import DataError, WorkDirLockedError
from mmscalekd.utils import CheckpointError
from tests.conftest import (REPO_ROOT, SMOKE_CONFIG, build_distiller,
                            build_runner, distiller_cfg, load_tool,
                            make_batch, run_command, smoke_config,
                            tiny_resnet_student, tiny_swin_teacher)

# Many cases build a distiller or start a run: minutes in all.
pytestmark = pytest.mark.slow

# The smoke config's parts, to change one key of them.
CAP = dict(type='CrossAttentionProjector', num_heads=4)
DFM = dict(type='DualViewFeatureLoss')
OFF = dict(DFM, spatial_weight=0, frequency_weight=0)


def _teacher_file(tmp_path, transform, wrap=lambda s: dict(state_dict=s)):
    """The tiny teacher's weights, edited (``transform``) and laid out in
    the file as ``wrap`` says."""
    torch.manual_seed(1)
    teacher = MODELS.build(tiny_swin_teacher())
    path = tmp_path / 'teacher.pth'
    torch.save(wrap(transform(teacher.state_dict())), path)
    return str(path)


def _evil_file(tmp_path):

    class MakesAFile:

        def __reduce__(self):
            return (open, (str(tmp_path / 'pwned'), 'w'))

    path = tmp_path / 'evil.pth'
    torch.save({'state_dict': {}, 'x': MakesAFile()}, path)
    return str(path)


def _grayscale_step():
    # Without mean/std the preprocessor passes 1-channel images straight on
    # (with per-channel means they are broadcast to 3 identical channels).
    distiller = build_distiller(
        data_preprocessor=dict(num_classes=4, mean=None, std=None))
    batch = make_batch()
    batch['inputs'] = [image[:1] for image in batch['inputs']]
    data = distiller.data_preprocessor(batch, training=True)
    distiller(**data, mode='loss')


def _nan_step(tmp_path):
    """A NaN loss in iteration 1 of a real run stops it before the step."""
    from mmengine.hooks import Hook

    class NaNHead(Hook):

        def before_train_iter(self, runner, batch_idx, data_batch=None):
            if runner.iter == 1:
                with torch.no_grad():
                    runner.model.student.head.fc.weight.fill_(float('nan'))

    runner = build_runner(smoke_config(tmp_path))
    runner.register_hook(NaNHead())
    before = runner.model.student.backbone.conv1.weight.clone()
    try:
        runner.train()
    finally:
        # raised before the optimizer step: the other weights are as they
        # were after iteration 0
        weight = runner.model.student.backbone.conv1.weight
        assert bool(torch.isfinite(weight).all())
        assert not torch.equal(weight, before)


def _resnet_teacher():
    student = tiny_resnet_student()
    build_distiller(teacher=dict(config=student))


def _class_mismatch():
    teacher = tiny_swin_teacher()
    teacher['head']['num_classes'] = 7
    build_distiller(teacher=dict(config=teacher))


def _without(key):

    def build():
        from tests.conftest import distiller_cfg
        cfg = distiller_cfg()
        del cfg['final_stage'][key]
        MODELS.build(cfg)

    return build


# ----------------------------------------------------- training checkpoints
def _checkpoint(tmp_path, transform=lambda s: s, meta=None):
    """A training checkpoint of the smoke distiller, edited."""
    distiller = build_distiller()
    path = tmp_path / 'epoch_1.pth'
    torch.save(dict(state_dict=transform(distiller.state_dict()),
                    meta=dict(meta or dict(
                        model_architecture=distiller.architecture))), path)
    return str(path)


def _test_with(tmp_path, checkpoint, **options):
    """tools/test.py's path: a runner that loads CHECKPOINT, then tests."""
    runner = build_runner(
        smoke_config(tmp_path / 'test', load_from=checkpoint, **options))
    runner.test()


def _other_heads(tmp_path):
    distiller = build_distiller()
    return _test_with(tmp_path, _checkpoint(tmp_path, meta=dict(
        model_architecture={**distiller.architecture,
                            'final_stage.projector.num_heads': 8})))


def _extract_other_student(tmp_path):
    from mmscalekd.engine.student_export import extract_student
    narrow = build_distiller(student={
        **tiny_resnet_student(),
        'backbone': dict(type='ResNet', depth=18, base_channels=8),
        'head': dict(type='LinearClsHead', num_classes=4, in_channels=64)})
    path = tmp_path / 'narrow.pth'
    torch.save(dict(state_dict=narrow.state_dict(), meta=dict()), path)
    extract_student(SMOKE_CONFIG, str(path), str(tmp_path / 'out'))


def _extract_diverged_student(tmp_path):
    from mmscalekd.engine.student_export import extract_student
    state = build_distiller().state_dict()
    state['student.head.fc.weight'][0, 0] = float('inf')
    path = tmp_path / 'diverged.pth'
    torch.save(dict(state_dict=state, meta=dict()), path)
    extract_student(SMOKE_CONFIG, str(path), str(tmp_path / 'out'))


def _vis_empty_image(tmp_path):
    tool = load_tool(osp.join(REPO_ROOT, 'tools', 'visualization',
                              'vis_projector_attention.py'))
    (tmp_path / 'empty.png').write_bytes(b'')
    tool.main([SMOKE_CONFIG, _checkpoint(tmp_path),
               str(tmp_path / 'empty.png'), '--out', str(tmp_path / 'x.png')])


def _vis_other_config(tmp_path):
    from mmengine.config import Config
    tool = load_tool(osp.join(REPO_ROOT, 'tools', 'visualization',
                              'vis_projector_attention.py'))
    path = _checkpoint(tmp_path, lambda s: {
        k: v for k, v in s.items()
        if not k.startswith('final_stage.projectors')})
    tool.build_model(Config.fromfile(SMOKE_CONFIG), path)


def _second_run(tmp_path):
    sleeper = subprocess.Popen([sys.executable, '-c',
                                'import time; time.sleep(10**6)'])
    try:
        import json
        os.makedirs(tmp_path / 'run')
        with open(tmp_path / 'run' / 'run.lock', 'w') as f:
            json.dump(dict(host=socket.gethostname(), pid=sleeper.pid,
                           started='today', command='train.py'), f)
        build_runner(smoke_config(tmp_path / 'run')).train()
    finally:
        sleeper.kill()
        sleeper.wait()


def _resume_with(tmp_path, first, then):
    build_runner(smoke_config(tmp_path / 'run', **first)).train()
    build_runner(smoke_config(tmp_path / 'run', max_epochs=2, resume=True,
                              **then)).train()


def _train_with(tmp_path, *argv, change=lambda cfg: None):
    """tools/train.py's path for the smoke config and ARGV, up to the
    runner."""
    from mmengine.config import Config
    tool = load_tool(osp.join(REPO_ROOT, 'tools', 'train.py'))
    args = tool.parse_args(
        [SMOKE_CONFIG, '--work-dir', str(tmp_path / 'run'), *argv])
    cfg = tool.merge_args(Config.fromfile(SMOKE_CONFIG), args)
    change(cfg)
    build_runner(cfg)


# ------------------------------------------------------------ teacher files
def _free_port():
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


def _teacher_url(tmp_path, monkeypatch, name, serve=True):
    from tests.test_engine.test_frozen_teacher import _Server
    monkeypatch.setenv('TORCH_HOME', str(tmp_path / 'torch_home'))
    monkeypatch.setenv('no_proxy', '127.0.0.1,localhost')
    if not serve:
        return f'http://127.0.0.1:{_free_port()}/{name}'
    root = tmp_path / 'www'
    root.mkdir()
    shutil.copy(_teacher_file(tmp_path, lambda s: s), root / name)
    server = _Server(root)
    globals()['_server'] = server  # closed by the test
    return f'{server.url}/{name}'


def _unreadable_teacher(tmp_path):
    """A teacher file this user may not read (root reads anything: drop the
    capability that lets it, where the system allows)."""
    folder = tmp_path / 'shared'
    folder.mkdir()
    path = folder / 'teacher.pth'
    shutil.copy(_teacher_file(tmp_path, lambda s: s), path)
    os.chmod(path, 0)
    if os.geteuid() != 0:
        build_distiller(teacher=dict(checkpoint=str(path)))
        return
    if shutil.which('setpriv') is None:
        pytest.skip('root without setpriv: every file is readable')
    code = ('from tests.conftest import build_distiller\n'
            f'build_distiller(teacher=dict(checkpoint={str(path)!r}))\n')
    result = run_command(
        ['setpriv', '--inh-caps=-dac_override,-dac_read_search',
         '--bounding-set=-dac_override,-dac_read_search', sys.executable,
         '-c', code], check=False)
    raise CheckpointError(result.stderr.strip().splitlines()[-1])


# --------------------------------------------------------------------- data
def _image_dataset(tmp_path, labels, corrupt=()):
    """A folder of PNG images with an annotation file."""
    import numpy as np
    from PIL import Image
    root = tmp_path / 'images'
    root.mkdir()
    lines = []
    for index, label in enumerate(labels):
        name = f'img_{index}.png'
        if index in corrupt:
            (root / name).write_bytes(b'not an image')
        else:
            Image.fromarray(np.full((64, 64, 3), 40 * index % 255,
                                    np.uint8)).save(root / name)
        lines.append(f'{name} {label}')
    (tmp_path / 'ann.txt').write_text('\n'.join(lines) + '\n')
    return dict(type='CustomDataset', data_root=str(root),
                ann_file=str(tmp_path / 'ann.txt'), with_label=True,
                pipeline=[dict(type='LoadImageFromFile'),
                          dict(type='PackInputs')])


def _train(cfg):
    """Train as tools/train.py does (data mistakes named by their key)."""
    from mmscalekd.engine import run
    run(build_runner(cfg), cfg, 'train')


def _train_on(tmp_path, dataset):
    _train(smoke_config(tmp_path / 'run', **{
        'train_dataloader.dataset': dict(dataset, _delete_=True),
        'train_dataloader.batch_size': 2}))


def _evaluate_nan_pixels(tmp_path):
    dataset = _image_dataset(tmp_path, [0, 1, 2, 3])
    import tests.test_engine.test_data_checks  # noqa: F401 (_NaNImage)
    dataset['pipeline'].insert(1, dict(type='_NaNImage'))
    build_runner(smoke_config(tmp_path / 'test', **{
        'test_dataloader.dataset': dict(dataset, _delete_=True),
        'test_dataloader.batch_size': 4})).test()


def _loss_scaled_divergence(tmp_path):
    from tests.test_engine.test_finite_steps import loss_scaled_run
    loss_scaled_run(tmp_path, bad_iterations=[0, 1], max_consecutive_skips=2
                    ).train()


def _infinite_gradient(tmp_path):
    from tests.test_engine.test_finite_steps import InfiniteGradients
    runner = build_runner(smoke_config(tmp_path))
    runner.register_hook(InfiniteGradients([1]))
    runner.train()


# ------------------------------------------------------------ resuming files
def _resume_edited(tmp_path, trained, edit, name='crafted.pth', **options):
    """Resume a 2-epoch run from a copy of a real one-epoch checkpoint
    (``trained``), edited by ``edit(checkpoint)``."""
    from tests.conftest import load_checkpoint
    checkpoint = load_checkpoint(osp.join(trained, 'epoch_1.pth'))
    checkpoint = edit(checkpoint) or checkpoint
    work_dir = tmp_path / 'run'
    work_dir.mkdir()
    path = work_dir / name
    torch.save(checkpoint, path)
    build_runner(smoke_config(work_dir, max_epochs=2, resume=True,
                              load_from=str(path), **options)).train()


def _first_momentum(checkpoint):
    """The momentum buffer of the first parameter in the optimizer state."""
    return checkpoint['optimizer']['state'][0]['momentum_buffer']


def _nan_momentum(checkpoint):
    _first_momentum(checkpoint).fill_(float('nan'))


def _nan_lr(checkpoint):
    checkpoint['optimizer']['param_groups'][0]['lr'] = float('nan')


def _wide_momentum(checkpoint):
    state = checkpoint['optimizer']['state'][0]
    state['momentum_buffer'] = torch.zeros(
        (2 * _first_momentum(checkpoint).shape[0],
         *_first_momentum(checkpoint).shape[1:]))


def _far_scheduler(checkpoint):
    checkpoint['param_schedulers'][0]['last_step'] = 10**9


def _meta(**values):

    def edit(checkpoint):
        checkpoint['meta'].update(values)

    return edit


def _partial_directory(tmp_path):
    (tmp_path / 'run' / 'epoch_2.pth.partial').mkdir(parents=True)
    build_runner(smoke_config(tmp_path / 'run')).train()


def _weights_file(tmp_path, name, tensor):
    """The smoke distiller's weights with ``name`` replaced by ``tensor``."""
    distiller = build_distiller()
    state = distiller.state_dict()
    state[name] = tensor
    path = tmp_path / 'weights.pth'
    torch.save(dict(state_dict=state, meta=dict(
        model_architecture=distiller.architecture)), path)
    return str(path)


def _compressed_file(tmp_path):
    """A real teacher file re-packed with deflated zip records."""
    import zipfile
    source = _teacher_file(tmp_path, lambda s: s)
    packed = tmp_path / 'packed.pth'
    with zipfile.ZipFile(source) as src, zipfile.ZipFile(
            packed, 'w', zipfile.ZIP_DEFLATED) as dst:
        for record in src.infolist():
            dst.writestr(record.filename, src.read(record))
    return str(packed)


def _string_labels(tmp_path):
    dataset = _image_dataset(tmp_path, [0, 1, 2, 3])
    lines = (tmp_path / 'ann.txt').read_text().splitlines()
    lines[2] = lines[2].rsplit(' ', 1)[0] + ' cat'
    (tmp_path / 'ann.txt').write_text('\n'.join(lines) + '\n')
    _train_on(tmp_path, dataset)


def _missing_imagenet(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # where `data/imagenet` is not
    _train(smoke_config(tmp_path / 'run', **{
        'train_dataloader.dataset': dict(
            type='ImageNet', data_root='data/imagenet', split='train',
            pipeline=[], _delete_=True)}))


# id -> (callable(tmp_path[, monkeypatch[, trained]]) raising, exception
# type, message regex); ``trained`` is the work dir of a one-epoch run.
# ------------------------------------------------- installs and the tools
def _predictions(tmp_path, edit):
    """A compare_students.py input (two images) after ``edit(results)``."""
    import mmengine

    from mmscalekd.analysis import load_predictions
    from tests.test_analysis.test_statistics import dump_results
    results = dump_results([True, False])
    edit(results)
    path = str(tmp_path / 'preds.pkl')
    mmengine.dump(results, path)
    load_predictions(path)


def _not_installed(monkeypatch, package):
    """Make ``package`` unimportable, as where it is not installed."""
    for name in [m for m in sys.modules if m.startswith(package + '.')]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, package, None)


def _fresh_import(path):
    """Run a module of the package again, as a first import would."""
    import importlib.util
    spec = importlib.util.spec_from_file_location('fresh_import', path)
    spec.loader.exec_module(importlib.util.module_from_spec(spec))


def _statistics_without(monkeypatch, package):
    _not_installed(monkeypatch, package)
    _fresh_import(osp.join(REPO_ROOT, 'mmscalekd', 'analysis',
                           'statistics.py'))


# The pair builder on the quick start's pair (a 4-block ViT teacher of 64
# channels, a 4-block Mixer student, 16 px).
DIGITS_TEACHER = osp.join(REPO_ROOT, 'configs', 'quickstart',
                          'vit-tiny_digits_teacher.py')
DIGITS_STUDENT = osp.join(REPO_ROOT, 'configs', 'quickstart',
                          'mixer-tiny_digits_alone.py')


def _plan(**kwargs):
    from mmscalekd.config_builder import plan_pair
    return plan_pair(**dict(dict(teacher=DIGITS_TEACHER,
                                 student=DIGITS_STUDENT, input_size=16),
                            **kwargs))


def _config_file(tmp_path, name, **values):
    from mmengine.config import Config
    path = str(tmp_path / name)
    Config(values).dump(path)
    return path


def _lenet_student(tmp_path):
    return _config_file(tmp_path, 'lenet.py', model=dict(
        type='ImageClassifier', backbone=dict(type='LeNet5'), neck=None,
        head=dict(type='LinearClsHead', num_classes=10, in_channels=84)))


def _data_without_loader(tmp_path):
    from mmscalekd.config_builder import data_settings
    return data_settings(_config_file(tmp_path, 'data.py',
                                      val_evaluator=dict(type='Accuracy')))


def _digits_without_sklearn(tmp_path, monkeypatch):
    from mmscalekd.datasets.digits import prepare_digits
    _not_installed(monkeypatch, 'sklearn')
    prepare_digits(str(tmp_path / 'digits'))


def _import_without_pkg_resources(monkeypatch):
    import mmscalekd
    _not_installed(monkeypatch, 'pkg_resources')
    mmscalekd.check_dependency_versions()


# ------------------------------------------------------- own image folders
def _own_images(tmp_path, edit=lambda root: None):
    """image_folder_data on a 3-class folder after ``edit(root)``."""
    from mmscalekd.config_builder.own_data import image_folder_data
    from tests.test_config_builder.test_own_data import write_image_folder
    root = tmp_path / 'images'
    write_image_folder(root, per_class=1, size=8)
    edit(root)
    return image_folder_data(str(root))


def _finetune(tmp_path, teacher=None, transform=lambda s: s, **options):
    """teacher_finetune_config for the tiny ViT of 10 classes, its file
    edited by ``transform``."""
    from mmscalekd.config_builder.own_data import teacher_finetune_config
    from tests.test_config_builder.test_own_data import vit_teacher
    network = MODELS.build(vit_teacher(10, 32, 8))
    path = tmp_path / 'teacher.pth'
    torch.save(dict(state_dict=transform(network.state_dict())), path)
    return teacher_finetune_config(teacher or vit_teacher(10, 32, 8),
                                   str(path), _own_images(tmp_path),
                                   **options)


def _swin_at(size):
    from tests.test_config_builder.test_own_data import (feature_distiller,
                                                         swin_teacher)
    MODELS.build(feature_distiller(swin_teacher(), size, split=2))
def _student_start(tmp_path, transform=lambda s: s, **options):
    """A distiller whose student starts from the smoke student's weights,
    edited by ``transform``, saved as the student file of a checkpoint."""
    state = {k[len('student.'):]: v for k, v in
             build_distiller().state_dict().items()
             if k.startswith('student.')}
    path = tmp_path / 'epoch_1_student.pth'
    torch.save(dict(state_dict=transform(state), meta=dict()), path)
    start = dict(dict(type='Pretrained', checkpoint=str(path)), **options)
    build_distiller(student=dict(tiny_resnet_student(),
                                 init_cfg=start)).init_weights()


def _distillation_checkpoint_as_start(tmp_path):
    path = tmp_path / 'epoch_1.pth'
    torch.save(dict(state_dict=build_distiller().state_dict()), path)
    build_distiller(student=dict(tiny_resnet_student(), init_cfg=dict(
        type='Pretrained', checkpoint=str(path)))).init_weights()


def _diverged(state):
    state['head.fc.weight'][0, 0] = float('nan')
    return state


def _wider_head(state):
    state['head.fc.weight'] = torch.zeros(7, 128)
    return state
QUICKSTART_SCALEKD = osp.join(REPO_ROOT, 'configs', 'quickstart',
                               'mixer-tiny_digits_scalekd.py')


def _quickstart_scalekd(**changes):
    from mmengine.config import Config
    cfg = Config.fromfile(QUICKSTART_SCALEKD)
    cfg.merge_from_dict(changes)
    return cfg


def _held_out_sweep_config(tmp_path):
    """The quick-start ScaleKD config on digits with a test split."""
    from mmscalekd.datasets.digits import prepare_digits
    root = str(tmp_path / 'digits')
    prepare_digits(root, test_fraction=0.2)
    config = tmp_path / 'held_out.py'
    config.write_text(
        f'_base_ = [{QUICKSTART_SCALEKD!r}]\n'
        f'train_dataloader = dict(dataset=dict(data_root={root!r}, '
        f"classes={root + '/meta/classes.txt'!r}))\n"
        "test_dataloader = dict(dataset=dict(ann_file='meta/test.txt'))\n")
    return str(config)



def _reproduce_plan(tmp_path, seeds=(0, ), options=()):
    """The smoke config's jobs planned in tmp_path/root (nothing trained)."""
    root = str(tmp_path / 'root')
    plan, _ = reproduce.plan_jobs([SMOKE_CONFIG], list(seeds), root,
                                  list(options))
    reproduce.write_plan(plan)
    return root, plan


def _never(argv):
    raise AssertionError(f'the job ran {argv}')


def _changed_job_config(tmp_path):
    root, plan = _reproduce_plan(tmp_path)
    with open(plan.jobs[0].config, 'a') as f:
        f.write('train_cfg = dict(max_epochs=5)\n')
    reproduce.run_job(root, 0, _never, _never)


def _sweep_tool(tmp_path, *options):
    """tools/analysis/sweep.py on a held-out config (nothing is trained
    before the checks)."""
    tool = load_tool(osp.join(REPO_ROOT, 'tools', 'analysis', 'sweep.py'))
    tool.main([_held_out_sweep_config(tmp_path), '--grid',
               'spatial_weight=0.04,0.08', '--work-dir',
               str(tmp_path / 'work'), *options])


def _sweep_subset(tmp_path, subset):
    from mmengine.config import Config

    from mmscalekd.analysis.sweep import subset_indices
    subset_indices(Config.fromfile(_held_out_sweep_config(tmp_path)), subset)


# id -> (callable(tmp_path) raising, exception type, message regex)

def _scalekd_config(tmp_path, *options):
    """tools/misc/scalekd_config.py with a tiny image folder at hand."""
    from tests.test_config_builder.test_own_data import write_image_folder
    root = write_image_folder(tmp_path / 'images')
    tool = load_tool(osp.join(REPO_ROOT, 'tools', 'misc',
                              'scalekd_config.py'))
    tool.main(['--teacher', 'mmpretrain::vision_transformer/'
               'vit-base-p16_32xb128-mae_in1k.py', '--student',
               'mmpretrain::resnet/resnet18_8xb32_in1k.py', '--out-dir',
               str(tmp_path / 'own'), '--no-check',
               *[root if o == 'ROOT' else o for o in options]])


def _official_student(tmp_path, family='vit-small', edit=lambda s: s,
                       options=None):
    """A narrow ViT-S of the ScaleKD authors laid out as their distiller
    saves it (weights edited by ``edit``), converted as ``family``."""
    from mmscalekd.engine.official_students import convert_official_student
    from tests.test_tools.test_official_students import (NARROW,
                                                         authors_file,
                                                         authors_student)
    network, _ = authors_student('vit-small', NARROW['vit-small'])
    path = authors_file(tmp_path / 'theirs.pth', edit(network.state_dict()))
    return convert_official_student(
        path, str(tmp_path / 'out'), family=family,
        cfg_options=NARROW['vit-small'] if options is None else options)


def _not_an_official_student(tmp_path):
    from mmscalekd.engine.official_students import convert_official_student
    path = tmp_path / 'deit.pth'
    # A timm DeiT's weights.
    torch.save(dict(state_dict={'blocks.0.attn.qkv.weight': torch.zeros(6,
                                                                        2)}),
               path)
    return convert_official_student(str(path), str(tmp_path / 'out'))


def _dropping(key):
    def edit(state):
        state.pop(key)
        return state
    return edit


def _nan_at(key):
    def edit(state):
        state[key][0] = float('nan')
        return state
    return edit


CASES = {
    'E01': (lambda t: build_distiller(perception_stage=dict(projector=dict(
        CAP, student_channels=1024))), KeyError,
            r"perception_stage.*\['student_channels'\] are read off the "
            r'networks; remove them'),
    'E02': (lambda t: build_distiller(final_stage=dict(query_size=7)),
            KeyError, r"final_stage.*\['query_size'\] are read off"),
    'E03': (lambda t: _resnet_teacher(), TypeError,
            r'ResNet.*SwinTransformer.*TeacherAdapter'),
    'E04': (lambda t: build_distiller(teacher=dict(adapter='NoSuch')),
            KeyError, r'model\.teacher\.adapter'),
    'E05': (lambda t: build_distiller(teacher=dict(
        checkpoint=_teacher_file(t, lambda s: {
            k: v
            for k, v in s.items() if 'stages.3' not in k
        }))), CheckpointError, r'model\.teacher\.checkpoint.*missing keys'),
    'E06': (lambda t: build_distiller(teacher=dict(
        checkpoint=_teacher_file(t, lambda s: {
            **s, 'backbone.extra': torch.ones(1)
        }))), CheckpointError, r'model\.teacher\.checkpoint.*unexpected'),
    'E07': (lambda t: build_distiller(teacher=dict(
        checkpoint=_teacher_file(t, lambda s: {
            **s, 'head.fc.weight': torch.ones(4, 3)
        }))), CheckpointError, r'model\.teacher\.checkpoint.*head\.fc'),
    'E08': (lambda t: build_distiller(teacher=dict(
        checkpoint=str(t / 'missing.pth'))), CheckpointError,
            r'model\.teacher\.checkpoint.*missing\.pth.*does not exist'),
    'E09': (lambda t: (t / 'bad.pth').write_bytes(b'PK\x03\x04garbage') and
            build_distiller(teacher=dict(checkpoint=str(t / 'bad.pth'))),
            CheckpointError, r'model\.teacher\.checkpoint.*corrupt'),
    'E10': (lambda t: build_distiller(teacher=dict(
        checkpoint=_evil_file(t))), CheckpointError, r'Refused'),
    'E11': (lambda t: build_distiller(perception_stage=dict(teacher_split=3)),
            ValueError, r'teacher_split=3.*\[0, 2\]'),
    'E12': (lambda t: build_distiller(perception_stage=dict(
        student_tap='backbone.layer9')), KeyError,
            r'student_tap=.backbone\.layer9.*backbone'),
    'E13': (lambda t: build_distiller(final_stage=dict(student_tap='neck')),
            ValueError, r'final_stage\.student_tap.*feature map'),
    'E14': (lambda t: build_distiller(perception_stage=dict(projector=dict(
        CAP, num_heads=3))), ValueError,
            r'model\.perception_stage\.projector.*num_heads=3.*128'),
    'E15': (lambda t: build_distiller(final_stage=dict(loss=dict(
        DFM, spatial_weight=-0.1))), ValueError,
            r'model\.final_stage\.loss.*spatial_weight=-0\.1'),
    'E16': (lambda t: build_distiller(logit_kd=dict(
        type='LogitKDLoss', alpha=1.5)), ValueError, r'alpha=1\.5.*0\.5'),
    'E17': (lambda t: build_distiller(logit_kd=dict(
        type='LogitKDLoss', tau=0)), ValueError, r'tau=0.*1\.0'),
    'E18': (lambda t: _grayscale_step(), ValueError,
            r'model\.input_channels.*RGB'),
    'E19': (lambda t: build_distiller(final_stage=dict(projectors=CAP)),
            KeyError, r"\['projectors'\] in `model\.final_stage`.*allowed"),
    'E20': (lambda t: _without('projector')(), KeyError,
            r'final_stage\.projector` is required'),
    'E21': (lambda t: _class_mismatch(), ValueError,
            r'num_classes.*model\.logit_kd=None'),
    'E22': (lambda t: build_distiller(perception_stage=dict(projector=dict(
        CAP, self_query=False))), ValueError,
            r'perception_stage\.projector.*self_query=False.*only the final'),
    'E23': (lambda t: _nan_step(t), FloatingPointError,
            r'Non-finite loss at iteration .*loss_cls'),
    'E24': (lambda t: build_distiller(final_stage=dict(projector=dict(
        CAP, conv_impl='cudnn'))), ValueError,
            r"model\.final_stage\.projector.*conv_impl='cudnn'.*'native'"),
    'E25': (lambda t: _test_with(t, _checkpoint(t, lambda s: {
        k: v for k, v in s.items() if '.projectors.' not in k})),
            CheckpointError,
            r"load_from='.*epoch_1\.pth'.*missing projector perception_spatial"
            r'.*logit-KD or student-alone run'),
    'E26': (lambda t: _test_with(t, _checkpoint(t, lambda s: {
        k[len('student.'):]: v for k, v in s.items()
        if k.startswith('student.')})), CheckpointError,
            r"classifier alone.*init_cfg=dict\(type='Pretrained'"),
    'E27': (lambda t: _test_with(t, _checkpoint(t), **{
        'model.student.backbone.base_channels': 8,
        'model.student.head.in_channels': 64}), CheckpointError,
            r'other shapes: student\.backbone\.layer1\.0\.conv1\.weight: '
            r'file \(16, 64, 3, 3\), model \(8, 64, 3, 3\)'),
    'E28': (lambda t: _other_heads(t), CheckpointError,
            r'model\.final_stage\.projector\.num_heads` is 8 in the '
            r'checkpoint and 4 in the config'),
    'E29': (lambda t: _extract_other_student(t), CheckpointError,
            r"CHECKPOINT '.*narrow\.pth' \(its student\.\* weights\).*"
            r'other shapes'),
    'E30': (lambda t: _vis_other_config(t), CheckpointError,
            r"CHECKPOINT '.*epoch_1\.pth'.*missing projector final_spatial"),
    'E31': (lambda t: _second_run(t), WorkDirLockedError,
            r'work dir .*run is in use by another training run: pid \d+ on '
            r'host'),
    'E32': (lambda t: _resume_with(t, {}, {
        'optim_wrapper.paramwise_cfg': dict(norm_decay_mult=0.0)}),
            CheckpointError, r'parameter group.*paramwise_cfg'),
    'E33': (lambda t: _resume_with(t, dict(param_scheduler=[dict(
        type='ReduceOnPlateauLR', monitor='loss', by_epoch=True)]), {
            'param_scheduler': [dict(type='ReduceOnPlateauLR',
                                     monitor='loss', by_epoch=True)],
            'optim_wrapper.optimizer.lr': 0.01}), CheckpointError,
            r'follow validation metrics.*load_from'),
    'E34': (lambda t, mp: build_distiller(teacher=dict(
        checkpoint=_teacher_url(t, mp, 'swin-1a2b3c4d.pth', serve=False))),
            CheckpointError,
            r'model\.teacher\.checkpoint=.http.*network error'),
    'E35': (lambda t, mp: build_distiller(teacher=dict(
        checkpoint=_teacher_url(t, mp, 'swin.pth')[:-4] + '-typo.pth')),
            CheckpointError, r'server answered 404.*Check the URL'),
    'E36': (lambda t, mp: build_distiller(teacher=dict(
        checkpoint=_teacher_url(t, mp, 'swin_20261125-0badc0de.pth'))),
            CheckpointError, r"SHA-256 does not start with '0badc0de'"),
    'E37': (lambda t: build_distiller(teacher=dict(checkpoint=str(t))),
            CheckpointError, r'model\.teacher\.checkpoint=.*is a directory'),
    'E38': (lambda t: _unreadable_teacher(t), CheckpointError,
            r'model\.teacher\.checkpoint=.*permission denied'),
    'E39': (lambda t: build_distiller(teacher=dict(
        checkpoint=_teacher_file(t, lambda s: s, lambda s: dict(
            model_a=s, model_b=s)))), CheckpointError,
            r"several sets of weights \(\['model_a', 'model_b'\]\)"),
    'E40': (lambda t: build_distiller(teacher=dict(
        checkpoint=_teacher_file(t, lambda s: {
            k.split('.', 1)[1]: v for k, v in s.items()}))), CheckpointError,
            r'missing keys.*another layout.*model_converters'),
    'E41': (lambda t: build_distiller(teacher=dict(
        checkpoint=_teacher_file(t, lambda s: {
            **s, 'head.fc.bias': torch.full_like(s['head.fc.bias'],
                                                 float('nan'))}))),
            CheckpointError, r"NaN or Inf values .*\['head\.fc\.bias'\]"),
    'E42': (lambda t: build_distiller(perception_stage=dict(loss=dict(
        DFM, spatial_weight=float('nan')))), ValueError,
            r'model\.perception_stage\.loss.*spatial_weight=nan.*finite'),
    'E43': (lambda t: build_distiller(final_stage=dict(loss=dict(
        DFM, frequency_weight=float('inf')))), ValueError,
            r'model\.final_stage\.loss.*frequency_weight=inf.*finite'),
    'E44': (lambda t: build_distiller(final_stage=dict(projector=dict(
        CAP, softmax_scale=0))), ValueError,
            r'model\.final_stage\.projector.*softmax_scale=0.*> 0'),
    'E45': (lambda t: build_distiller(
        perception_stage=dict(loss=OFF),
        final_stage=dict(projector=dict(CAP, self_query=True))), ValueError,
            r'perception_stage\.loss` switches both views off.*'
            r'final_stage\.projector\.self_query=False'),
    'E46': (lambda t: build_distiller(final_stage=dict(loss=OFF)),
            ValueError, r'final_stage\.loss` switches both views off'),
    'E47': (lambda t: build_runner(smoke_config(t, **{
        'train_dataloader.dataset.image_size': 96})).train(), ValueError,
            r'images are \(96, 96\).*model\.input_size=\(64, 64\)'),
    'E48': (lambda t: _train_on(t, _image_dataset(t, [0, 1, 7, 2])),
            DataError,
            r'train_dataloader\.dataset.*model\.student\.head\.num_classes=4'
            r'.*img_2\.png \(label 7\)'),
    'E49': (lambda t: _train_on(t, _image_dataset(t, [0, 1, 2, 3],
                                                  corrupt=[1])), DataError,
            r'Cannot load .*img_1\.png .*train_dataloader\.dataset'),
    'E50': (lambda t: _evaluate_nan_pixels(t), DataError,
            r'Non-finite predictions .*test_dataloader\.dataset.*img_0\.png'
            r'.*NaN/Inf pixels'),
    'E51': (lambda t: _loss_scaled_divergence(t), FloatingPointError,
            r'loss scaler skipped 2 steps in a row.*max_consecutive_skips=2'),
    'E52': (lambda t: _infinite_gradient(t), FloatingPointError,
            r'Non-finite gradients at iteration 1.*conv1\.weight'),
    'E53': (lambda t: build_distiller(logit_kd=dict(
        type='LogitKDLoss', tau=float('inf'))), ValueError,
            r'tau=inf.*finite'),
    'E54': (lambda t: build_runner(smoke_config(
        t, work_dir_lock=dict(stale_after=10, refresh_every=30))).train(),
            ValueError, r'work_dir_lock\.refresh_every=30.*stale_after=10'),
    'E55': (lambda t: build_distiller(final_stage=dict(num_heads=4)),
            KeyError, r"Unknown key\(s\) \['num_heads'\] in "
            r"`model\.final_stage`; allowed keys are \[.*'loss'.*'projector'"),
    'E56': (lambda t: build_distiller(
        perception_stage=dict(teacher_perception=False)), ValueError,
            r'final_stage\.projector\.self_query=False.*teacher_perception='
            r'False.*set `final_stage\.projector\.self_query=True`'),
    'E57': (lambda t: build_distiller(final_stage=dict(teacher_split=1)),
            KeyError, r'final_stage\.teacher_split.*only the perception'),
    'E58': (lambda t: build_distiller(final_stage=dict(projector=dict(
        type='ConvProjecter'))), KeyError,
            r'model\.final_stage\.projector.*ConvProjecter is not in the '
            r'mmpretrain::model registry'),
    'E59': (lambda t: build_distiller(teacher=dict(mean=[0, 0, 0])),
            KeyError, r'model\.teacher\.mean.*model\.teacher\.std'),
    'E60': (lambda t: build_runner(smoke_config(
        t, validate=True, custom_hooks=[dict(
            type='TeacherValHook', evaluate_teacher='sometimes')])
    ).train(), ValueError,
            r"TeacherValHook\.evaluate_teacher='sometimes'.*'first'"),
    'E61': (lambda t, mp, run: _resume_edited(t, run, lambda c: c[
        'state_dict']), CheckpointError,
            r"resume=.*crafted\.pth.* cannot be resumed: it has no "
            r'meta\.epoch, meta\.iter, message_hub.*load_from'),
    'E62': (lambda t, mp, run: _resume_edited(t, run, lambda c: c.pop(
        'message_hub') and None), CheckpointError,
            r'cannot be resumed: it has no message_hub.*load_from'),
    'E63': (lambda t, mp, run: _resume_edited(t, run, _meta(epoch=0),
                                              name='epoch_2.pth'),
            CheckpointError,
            r'epoch_2\.pth.*name says epoch 2 but its meta\.epoch is 0.*'
            r'Move it out of the work dir'),
    'E64': (lambda t, mp, run: _resume_edited(
        t, run, _meta(epoch=5, iter=10)), CheckpointError,
            r'at epoch 5, past the end of this schedule '
            r'\(`train_cfg\.max_epochs=2`\).*Raise `train_cfg\.max_epochs`'),
    'E65': (lambda t, mp, run: _resume_edited(t, run, _meta(iter=10**12)),
            CheckpointError,
            r'meta\.iter=1000000000000 is more iterations than this '
            r'schedule can reach \(4: train_cfg\.max_epochs=2 epochs of at '
            r'most 2 iterations'),
    'E66': (lambda t, mp, run: _resume_edited(t, run, _nan_momentum),
            CheckpointError,
            r'optimizer\.state\[0\]\.momentum_buffer holds NaN or Inf.*'
            r'diverged'),
    'E67': (lambda t, mp, run: _resume_edited(t, run, _nan_lr),
            CheckpointError,
            r"optimizer\.param_groups\[0\] holds \{'lr': nan\}.*learning "
            r'rate'),
    'E68': (lambda t, mp, run: _resume_edited(t, run, _wide_momentum),
            CheckpointError,
            r'optimizer\.state\[0\]\.momentum_buffer has shape '
            r'\(128, 3, 7, 7\) but its parameter has \(64, 3, 7, 7\).*another '
            r'model'),
    'E69': (lambda t, mp, run: _resume_edited(t, run, _far_scheduler),
            CheckpointError,
            r'param_scheduler\[0\]\.last_step=1000000000 is not a position '
            r'of this schedule \(at most 2 epochs\)'),
    'E70': (lambda t, mp, run: _resume_edited(t, run, _meta(seed=2**40)),
            CheckpointError,
            r'meta\.seed=1099511627776 is not a random seed.*'
            r'randomness\.seed'),
    'E71': (lambda t: _partial_directory(t), RuntimeError,
            r'epoch_2\.pth\.partial is a directory.*Rename or remove it'),
    'E72': (lambda t: build_runner(smoke_config(
        t, work_dir_lock=dict(refresh_every=0))).train(), ValueError,
            r'`work_dir_lock\.refresh_every=0` must be a finite number of '
            r'seconds > 0'),
    'E73': (lambda t: build_runner(smoke_config(
        t, work_dir_lock=dict(stale_after=float('nan')))).train(),
            ValueError,
            r'`work_dir_lock\.stale_after=nan` must be a finite number'),
    'E74': (lambda t: build_runner(smoke_config(t, max_epochs=0)).train(),
            ValueError, r'`train_cfg\.max_epochs=0` must be an integer >= 1'),
    'E75': (lambda t: _string_labels(t), DataError,
            r"train_dataloader\.dataset\.ann_file` \(.*ann\.txt\), line 3: "
            r"'img_2\.png cat': the label is not a class index"),
    'E76': (lambda t, mp: _missing_imagenet(t, mp), DataError,
            r"`train_dataloader\.dataset\.data_root='data/imagenet'` does "
            r'not exist.*docs/imagenet\.md'),
    'E77': (lambda t: _test_with(t, _weights_file(
        t, 'student.head.fc.bias', torch.zeros(4, dtype=torch.complex64))),
            CheckpointError,
            r'other kinds of dtype \(loading would cast them\): '
            r'student\.head\.fc\.bias: file torch\.complex64'),
    'E78': (lambda t: build_distiller(teacher=dict(
        checkpoint=_teacher_file(t, lambda s: {
            **s, 'backbone.huge': torch.zeros(1).expand(2**40)}))),
            CheckpointError,
            r"model\.teacher\.checkpoint.*unexpected keys.*backbone\.huge"),
    'E79': (lambda t: build_distiller(teacher=dict(
        checkpoint=_compressed_file(t))), CheckpointError,
            r'model\.teacher\.checkpoint=.*packed\.pth.*is compressed.*'
            r'torch\.save never writes'),
    'E80': (lambda t: _test_with(t, _weights_file(
        t, 'student.head.fc.bias', torch.full((4, ), float('inf')))),
            CheckpointError,
            r"load_from=.*weights\.pth.*NaN or Inf values in 1 tensor\(s\) "
            r"\(e\.g\. \['student\.head\.fc\.bias'\]\)"),
    'E81': (lambda t: build_distiller(final_stage=dict(projector=dict(
        CAP, num_heads='2'))), TypeError,
            r"model\.final_stage\.projector.*`num_heads='2'` must be an "
            'integer'),
    'E82': (lambda t: build_distiller(perception_stage=dict(
        teacher_split=1.5)), TypeError,
            r'model\.perception_stage\.teacher_split=1\.5` must be an '
            'integer'),
    'E83': (lambda t: build_distiller(perception_stage=dict(student_tap='')),
            ValueError,
            r"model\.perception_stage\.student_tap=''` names the whole "
            r"student.*'backbone\.layer3'"),
    'E84': (lambda t: build_distiller(final_stage=dict(loss=dict(
        DFM, spatial_weight='0.08'))), TypeError,
            r"model\.final_stage\.loss.*`spatial_weight='0\.08'` must be a "
            'number.*without quotes'),
    'E85': (lambda t: build_distiller(input_size=(64, )), ValueError,
            r'model\.input_size=\(64,\)` must be a positive integer or an '
            r'\(H, W\) pair'),
    'E86': (lambda t: build_distiller(logit_kd=dict(
        type='LogitKDLoss', alpha=None)), TypeError,
            r'model\.logit_kd.*`alpha=None` must be a number in \[0, 1\].*'
            r'0\.5'),
    'E87': (lambda t: build_distiller(final_stage=dict(projector=dict(
        CAP, softmax_scale='5.0'))), TypeError,
            r"model\.final_stage\.projector.*`softmax_scale='5\.0'` must be "
            r'a number > 0.*5\.0'),
    'E88': (lambda t: build_distiller(final_stage=dict(projector=dict(
        CAP, mlp_ratio=4.0))), TypeError,
            r'model\.final_stage\.projector.*`mlp_ratio=4\.0` must be an '
            'integer >= 1'),
    'E89': (lambda t: build_distiller(final_stage=dict(projector=dict(
        CAP, self_query='False'))), TypeError,
            r"model\.final_stage\.projector.*`self_query='False'` must be "
            'True or False'),
    'E90': (lambda t: build_distiller(teacher=dict(input_size=0)),
            ValueError, r'model\.teacher\.input_size=0` must be a positive '
            'integer'),
    'E91': (lambda t: build_distiller(input_channels=0), ValueError,
             r'model\.input_channels=0` must be an integer >= 1'),
    'E92': (lambda t: build_distiller(student_tokens=dict(grid='14')),
             TypeError, r"model\.student_tokens\.grid='14'` must be a "
             r'positive integer or an \(H, W\) pair.*\(14, 14\)'),
    'E93': (lambda t: build_distiller(student_tokens=dict(
        extra_tokens='1')), TypeError,
             r"model\.student_tokens\.extra_tokens='1'` must be an integer "
             '>= 0'),
    'E94': (lambda t: build_distiller(teacher=dict(
        mean=[123.7, 116.3, 103.5], std=[58.4, 0, 57.4])), ValueError,
             r'model\.teacher\.std=\[58\.4, 0, 57\.4\]` must be a list of '
             r'finite numbers > 0, one per image channel; 0 is not'),
    'E95': (lambda t: _extract_diverged_student(t), CheckpointError,
             r"CHECKPOINT '.*diverged\.pth' holds NaN or Inf values in 1 "
             r"student tensor\(s\) \(e\.g\. \['student\.head\.fc\.weight'\]"
             r'\).*before the divergence'),
    'E96': (lambda t: _vis_empty_image(t), ValueError,
             r"IMAGE '.*empty\.png' is an empty file \(0 bytes\)"),
    'E97': (lambda t: _predictions(t, lambda r: r[1].update(
        pred_score=torch.full((5, ), float('nan')))), PredictionFileError,
             r'Image 1 of .*preds\.pkl has a non-finite pred_score.*'
             r'diverged'),
    'E98': (lambda t: _predictions(t, lambda r: r.pop()),
             PredictionFileError,
             r'preds\.pkl holds the predictions of 1 image; .*two at least'),
    'E99': (lambda t: _predictions(t, lambda r: r[0].update(
        sample_idx=3.5)), PredictionFileError,
             r'Image 0 of .*preds\.pkl has sample_idx 3\.5, not one '
             r'integer'),
    'E100': (lambda t: _predictions(t, lambda r: r[0].update(
        sample_idx='3')), PredictionFileError,
             r"Image 0 of .*preds\.pkl has sample_idx '3', not one integer"),
    'E101': (lambda t, m: _import_without_pkg_resources(m), ImportError,
             r'needs pkg_resources.*pip install "setuptools<80"'),
    'E102': (lambda t, m: _statistics_without(m, 'scipy'), ImportError,
             r'need scipy and statsmodels \(scipy is not installed here\)'
             r'.*pip install "mmscalekd\[analysis\]"'),
    'E103': (lambda t, m: _statistics_without(m, 'statsmodels'),
             ImportError, r'\(statsmodels is not installed here\).*'
             r'"mmscalekd\[analysis\]"'),
    'E104': (lambda t, m: _digits_without_sklearn(t, m), ImportError,
             r'digits come with scikit-learn \(sklearn is not installed '
             r'here\).*"mmscalekd\[analysis\]"'),
    'E105': (lambda t: build_distiller(final_stage=dict(
        loss=dict(type='LogitKDLoss'))), TypeError,
             r"`model\.final_stage\.loss\.type='LogitKDLoss'` builds a "
             r"LogitKDLoss, which is not a FeatureLoss.*'views'.*"
             r"type='DualViewFeatureLoss'"),
    'E106': (lambda t: MODELS.build(dict(
        distiller_cfg(), logit_kd=dict(type='DualViewFeatureLoss'))),
             TypeError,
             r"`model\.logit_kd\.type='DualViewFeatureLoss'` builds a "
             r"DualViewFeatureLoss, which is not a LogitLoss.*'alpha'.*"
             r"type='LogitKDLoss'"),
    'E107': (lambda t: build_distiller(final_stage=dict(
        type='CrossAttentionProjector')), KeyError,
             r"`model\.final_stage\.type='CrossAttentionProjector'` is not "
             r"a stage: leave it out or set it to 'ScaleKDStage'"),
    'E120': (lambda t: _own_images(t, lambda r: shutil.rmtree(r / 'val')),
             FileNotFoundError,
             r"`data_root='.*images'` has no val/ folder.*does not exist.*"
             r'DATA_ROOT/val/<class name>/<image>\.jpg'),
    'E121': (lambda t: _own_images(t, lambda r: os.rename(
        r / 'val' / 'fox', r / 'val' / 'wolf')), ValueError,
             r"class folders of '.*images/val' differ from those of "
             r"'.*images/train': missing there \['fox'\]; not in train/ "
             r"\['wolf'\].*same class folders"),
    'E122': (lambda t: _own_images(t, lambda r: os.remove(
        r / 'train' / 'dog' / '0.png')), ValueError,
             r"class folder '.*train/dog' holds no image \(file endings "
             r'read: \.jpg.*remove the folder from every split'),
    'E123': (lambda t: _own_images(t, lambda r: [
        shutil.rmtree(r / split / name) for split in ('train', 'val')
        for name in ('dog', 'fox')]), ValueError,
             r"'.*images/train' holds 1 class folder\(s\) \['cat'\]; a "
             r'classifier needs 2 at least'),
    'E124': (lambda t: _finetune(t, mode='last'), ValueError,
             r"`mode='last'`: use one of \['head', 'full'\]"),
    'E125': (lambda t: _finetune(t, transform=lambda s: {
        k: v for k, v in s.items() if 'layers.3.' not in k}),
             CheckpointError,
             r"`checkpoint='.*teacher\.pth'` does not fit the backbone and "
             r"neck.*missing keys \['backbone\.layers\.3.*only its head "
             'may differ'),
    'E126': (lambda t: _finetune(t, teacher=dict(
        type='ImageClassifier', backbone=dict(type='ResNet', depth=18))),
             KeyError, r'has no `model\.head\.num_classes` to set to the 3 '
             'classes'),
    'E127': (lambda t: _swin_at(64), ValueError,
             r'`model\.input_size=\(64, 64\)` gives the Swin teacher a '
             r'\(4, 4\) token map in stage 3, smaller than its '
             r'window_size=7.*193 px.*model\.teacher\.input_size.*'
             'pad_small_map=True'),
    'E138': (lambda t: _train_with(t, '--accumulate', '0'), ValueError,
             r'`optim_wrapper\.accumulative_counts=0` \(set by '
             r'`--accumulate` or the config\) must be an integer >= 1'),
    'E139': (lambda t: _train_with(
        t, '--accumulate', '2',
        change=lambda c: c.optim_wrapper.update(
            type='DeepSpeedOptimWrapper')), ValueError,
             r"`optim_wrapper\.type='DeepSpeedOptimWrapper'` cannot "
             r'accumulate gradients: only .*OptimWrapper.*Drop the '
             r'accumulation'),
    'E140': (lambda t: _train_with(
        t, '--auto-scale-lr', change=lambda c: c.auto_scale_lr.pop(
            'base_batch_size')), ValueError,
             r'`auto_scale_lr\.base_batch_size=None`: `--auto-scale-lr`.*'
             r'set it to that number'),
    'E141': (lambda t: _student_start(t, _wider_head), CheckpointError,
             r"`model\.student\.init_cfg\.checkpoint='.*epoch_1_student"
             r"\.pth'` does not fit `model\.student`.*other shapes: "
             r"\['head\.fc\.weight: file \(7, 128\), model \(4, 128\)'\]"
             r'.*loaded strictly.*a checkpoint of this student'),
    'E142': (lambda t: _distillation_checkpoint_as_start(t),
             CheckpointError,
             r"missing: \['backbone\.conv1\.weight'.*distillation "
             r"checkpoint: add prefix='student\.'.*_student\.pth"),
    'E143': (lambda t: _student_start(t, _diverged), CheckpointError,
             r"`model\.student\.init_cfg\.checkpoint='.*'` holds NaN or "
             r"Inf values in 1 tensor\(s\) \(e\.g\. \['head\.fc\.weight'\]"
             r'.*diverged'),
    'E144': (lambda t: _student_start(t, strict=True), ValueError,
             r"`model\.student\.init_cfg=dict\(type='Pretrained', \.\.\.\)`"
             r" takes `checkpoint`.*`prefix`.*it has \['strict'\]"),
    'E145': (lambda t: build_distiller(student=dict(
        tiny_resnet_student(), init_cfg=dict(
            type='Pretrained', checkpoint=str(t / 'no.pth')))).init_weights(),
             CheckpointError,
             r"`model\.student\.init_cfg\.checkpoint='.*no\.pth'` does not "
             r'exist'),
    'E128': (lambda t: sweep.parse_grid(['spatial_wieght=0.04']), KeyError,
             r"`--grid spatial_wieght=0\.04`: unknown grid key "
             r"'spatial_wieght'; the keys are spatial_weight, "
             r'frequency_weight, softmax_scale, tau, alpha'),
    'E129': (lambda t: sweep.parse_grid(['tau=']), ValueError,
             r'`--grid tau=` gives tau no values: list them after the `=`, '
             r'comma-separated \(`--grid tau=0\.04,0\.08`\)'),
    'E130': (lambda t: sweep.parse_grid(['alpha=0.5,high']), ValueError,
             r'`--grid alpha=0\.5,high`: the values of alpha must be '
             r'numbers'),
    'E131': (lambda t: sweep.check_seeds([0]), ValueError,
             r'`--seeds 0` gives one seed; .* needs at least two '
             r'\(`--seeds 0 1`\)'),
    'E132': (lambda t: sweep.check_held_out(_quickstart_scalekd()),
             ValueError,
             r'`test_dataloader\.dataset` is the same data as '
             r'`val_dataloader\.dataset`.*'
             r'`test_dataloader\.dataset\.ann_file`.*'
             r'prepare_digits\.py --test-fraction 0\.2'),
    'E133': (lambda t: sweep.check_grid_fits(
        _quickstart_scalekd(**{'model.logit_kd': None}),
        dict(tau=[1.0, 2.0])), ValueError,
             r'The grid sets tau, keys of `model\.logit_kd`, but this '
             r'config has `model\.logit_kd=None`'),
    'E134': (lambda t: sweep.check_distillation_config(
        Config(dict(model=_quickstart_scalekd().model.student.to_dict())),
        'alone.py'), ValueError,
             r"alone\.py is not a ScaleKD distillation config: `model\.type`"
             r" must be 'ScaleKDDistiller' with a `model\.perception_stage`"),
    'E135': (lambda t: _sweep_tool(t, '--collect'), FileNotFoundError,
             r'8 of the 8 runs have no result\.json in .*work for these '
             r'arguments yet '
             r'\(alone_seed0, .*\): wait for their jobs, or rerun the '
             r'sweep without --collect'),
    'E136': (lambda t: _sweep_tool(t, '--run', 'alone_seed7'), KeyError,
             r'`--run alone_seed7` is not a run of this sweep; its runs: '
             r'alone_seed0, logit_kd_seed0'),
    'E137': (lambda t: _sweep_subset(t, 5000), ValueError,
             r'`--subset 5000` gives 5000 of the 1005 training images; '
             r'give a number in 1\.\.1005 or a fraction in \(0, 1\)'),
    'E108': (lambda t: _plan(teacher='swin-large'), ValueError,
             r"`--teacher swin-large` is no file, no `mmpretrain::` config "
             r"and no `timm/` model; give an mmpretrain config"),
    'E109': (lambda t: _plan(student='timm/resnet-18'), ValueError,
             r"`--student timm/resnet-18`: timm has no model 'resnet-18'; "
             r"use one of `timm\.list_models\(\)`"),
    'E110': (lambda t: _plan(teacher='mmpretrain::swin/swin-large.py'),
             ValueError, r"`--teacher mmpretrain::swin/swin-large\.py`: "
             r"mmpretrain has no such config .*relative to mmpretrain's "
             r"configs/"),
    'E111': (lambda t: _plan(student='timm/resnet18'), ValueError,
             r"`--student timm/resnet18` is a timm model, which brings no "
             r"training recipe; give one with `--recipe`"),
    'E112': (lambda t: _plan(student=_lenet_student(t)), ValueError,
             r"`--student`: the LeNet5 backbone has no stages or blocks to "
             r"tap .*Choose a student with stages or blocks"),
    'E113': (lambda t: _plan(overrides=dict(
        student_taps=('backbone.layers.1', 'backbone.layers.9'))),
             ValueError, r"`--student-taps`: 'backbone\.layers\.9' is no "
             r"stage or block of the MlpMixer student; choose two of "
             r"\['backbone\.layers\.0'"),
    'E114': (lambda t: _plan(overrides=dict(num_heads=(3, 8))), ValueError,
             r"`--num-heads`: 3 heads for the perception stage do not "
             r"divide the teacher width 64 there; choose one of "
             r"\[1, 2, 4, 8, 16, 32, 64\]"),
    'E115': (lambda t: _plan(num_classes=5, overrides=dict(tau=2.0)),
             ValueError, r"`--tau` sets logit distillation, which is off: "
             r"the teacher predicts 10 classes and the student 5.*leave "
             r"`--tau` out"),
    'E116': (lambda t: _plan(overrides=dict(teacher_split=3)), ValueError,
             r"`--teacher-split 3` is out of range for a VisionTransformer "
             r"teacher with 4 blocks.*\[0, 2\]"),
    'E117': (lambda t: _plan(teacher=_config_file(
        t, 'swin.py', model=tiny_swin_teacher())), ValueError,
             r"`--input-size 16`: the SwinTransformer teacher does not run "
             r"at 16 px .*choose the size it was built for"),
    'E118': (lambda t: _data_without_loader(t), ValueError,
             r"`--data .*data\.py` has no `train_dataloader`; the file must "
             r"give the dataloaders"),
    'E119': (lambda t: _plan(overrides=dict(alpha=1.5)), ValueError,
             r"`--alpha 1\.5` must lie in \(0, 1\], the weight of the "
             r"logit loss"),
    'E146': (lambda t: _scalekd_config(t, '--finetune-teacher', 'head'),
             ValueError, r'`--finetune-teacher` fine-tunes the teacher on an '
             r'image folder: give the folder with `--data-root`'),
    'E147': (lambda t: _scalekd_config(
        t, '--data-root', 'ROOT', '--data', 'data.py'), ValueError,
             r'`--data` and `--data-root` both give the data: keep one'),
    'E148': (lambda t: _scalekd_config(
        t, '--data-root', 'ROOT', '--finetune-teacher', 'full'), ValueError,
             r"`--finetune-teacher` starts from the teacher's weights: give "
             r'them with `--teacher-checkpoint`'),
    'E149': (lambda t: _not_an_official_student(t), CheckpointError,
             r"CHECKPOINT '.*deit\.pth' is not a student checkpoint of the "
             r"ScaleKD authors' code: it holds neither their distiller's "
             r"`student\.\*` weights.*\['blocks'\]"),
    'E150': (lambda t: _official_student(t, family='vit-tiny'), ValueError,
             r'`--family vit-tiny` is not a student the ScaleKD authors '
             r'released; choose one of resnet50-d, mobilenet-v1, .*leave '
             r'`--family` out'),
    'E151': (lambda t: _official_student(t, family=None), CheckpointError,
             r'the weights are of the architecture of vit-small, vit-base, '
             r'vit-base-p14, but of none of their released sizes .*\(32, 3, '
             r'16, 16\).*Pass `--family`'),
    'E152': (lambda t: _official_student(
        t, edit=_dropping('backbone.layers.3.ffn.layers.1.weight')),
             CheckpointError,
             r'renamed as `--family vit-small`\) does not hold the weights '
             r'of this model .*missing .*backbone\.layers\.3\.ffn\.layers'
             r'\.1\.weight.*pass its `--family`'),
    'E153': (lambda t: _official_student(
        t, edit=_nan_at('backbone.layers.5.attn.qkv.weight')),
             CheckpointError,
             r'\(its student weights\) holds NaN or Inf values in 1 '
             r"tensor\(s\) \(e\.g\. \['backbone\.layers\.5\.attn\.qkv"
             r"\.weight'\]\)"),
    'E154': (lambda t: reproduce.table_configs('advance'), KeyError,
             r'`--table advance` is no named set; the sets are advanced, '
             r'traditional, ablations .*or give the config files'),
    'E155': (lambda t: reproduce.plan_jobs([osp.join(
        REPO_ROOT, 'configs', 'scalekd', 'student_resnet50_8xb32_in1k.py')],
        [0], str(t)), ValueError,
             r"student_resnet50_8xb32_in1k\.py is not a ScaleKD distillation "
             r"config: `model\.type` must be 'ScaleKDDistiller'.*give the "
             r'ScaleKD config'),
    'E156': (lambda t: reproduce.check_seeds([0, 1, 1]), ValueError,
             r'`--seeds 0 1 1` repeats seed\(s\) 1.*give each once'),
    'E157': (lambda t: _reproduce_plan(t) and _reproduce_plan(
        t, options=['train_cfg.max_epochs=2']), ValueError,
             r'.*root holds jobs of another plan: .*root/'
             r'scalekd_smoke_synthetic_alone/seed0.*planned or trained with '
             r'another config.*its own `--work-root`, or remove those job '
             r'folders'),
    'E158': (lambda t: _changed_job_config(t), ValueError,
             r'The config of job 0, .*scalekd_smoke_synthetic_alone\.py, has '
             r'changed since the plan.*Plan again in a new `--work-root`'),
    'E159': (lambda t: reproduce.run_job(_reproduce_plan(t)[0], 7, _never,
                                         _never), KeyError,
             r'`--run-job 7`: .*jobs\.json plans jobs 0\.\.2; give one of '
             r'those indices \(jobs\.txt lists them\)'),
    'E160': (lambda t: collect_results(_reproduce_plan(t)[0]),
             FileNotFoundError,
             r'None of the 3 jobs of .*root has its result\.json yet: run '
             r'them .*then collect'),
}


def test_table_and_tests_list_the_same_rows():
    with open(osp.join(REPO_ROOT, 'docs', 'errors.md')) as f:
        documented = set(re.findall(r'^\| (E\d+) \|', f.read(), re.M))
    assert documented == set(CASES)
    assert len(documented) >= 40


@pytest.mark.parametrize('case', sorted(CASES))
def test_bad_input_fails_with_a_clear_message(case, tmp_path, monkeypatch,
                                              request):
    action, error, message = CASES[case]
    count = action.__code__.co_argcount
    arguments = (tmp_path, monkeypatch)[:count]
    if count == 3:
        arguments += (request.getfixturevalue('one_epoch_run'), )
    try:
        with pytest.raises(error) as info:
            action(*arguments)
    finally:
        server = globals().pop('_server', None)
        if server is not None:
            server.close()
    assert re.search(message, str(info.value), re.S), str(info.value)
    assert not (tmp_path / 'pwned').exists()
