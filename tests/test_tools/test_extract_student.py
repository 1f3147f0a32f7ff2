"""Round trip: distil a few iterations -> extract the student -> load it with
mmpretrain (and timm) -> the same predictions as the distiller."""
import os.path as osp
import sys
import warnings

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.registry import RUNNERS
from mmengine.runner import load_checkpoint
from safetensors.torch import load_file

from mmpretrain import ImageClassificationInferencer, get_model
from mmpretrain.registry import MODELS

from mmscalekd.utils import CheckpointError
from tests.conftest import (IMAGE_SIZE, NUM_CLASSES, REPO_ROOT, SMOKE_CONFIG,
                            make_batch, run_command)

# Trains checkpoints and extracts students from them: seconds to tens of
# seconds each.
pytestmark = pytest.mark.slow

TOOL = 'tools/model_converters/extract_student.py'

# Loads the extracted student in a Python where `import mmscalekd` fails
# (as where only mmpretrain is installed): forward logits and the
# inferencer's scores, saved for the test to compare.
WITHOUT_MMSCALEKD = """
import sys
sys.modules['mmscalekd'] = None  # `import mmscalekd` raises ImportError
import numpy as np, torch
from mmpretrain import ImageClassificationInferencer, get_model
out, inputs, image = sys.argv[1:4]
model = get_model(out + '/student_config.py',
                  pretrained=out + '/student.pth').eval()
with torch.no_grad():
    logits = model(torch.load(inputs), mode='tensor')
scores = ImageClassificationInferencer(
    out + '/student_config.py', pretrained=out + '/student.pth')(
        np.load(image))[0]['pred_scores']
try:
    import mmscalekd  # noqa: F401
    blocked = False
except ImportError:
    blocked = True
torch.save(dict(logits=logits, scores=torch.as_tensor(scores),
                type=type(model).__name__, blocked=blocked,
                loaded=sorted(m for m, v in sys.modules.items()
                              if m.startswith('mmscalekd') and v)),
           out + '/without_mmscalekd.pth')
"""

_VIT = dict(embed_dims=32, num_layers=2, num_heads=2, feedforward_channels=64)
STUDENTS = {
    # a CNN of mmpretrain
    'resnet': (dict(
        type='ImageClassifier',
        backbone=dict(type='ResNet', depth=18, base_channels=16),
        neck=dict(type='GlobalAveragePooling'),
        head=dict(type='LinearClsHead', num_classes=NUM_CLASSES,
                  in_channels=128)), 'backbone.layer3', 'backbone.layer4'),
    # a ViT of mmpretrain (DeiT-style, class token)
    'deit': (dict(
        type='ImageClassifier',
        backbone=dict(type='VisionTransformer', arch=_VIT,
                      img_size=IMAGE_SIZE, patch_size=16),
        neck=None,
        head=dict(type='VisionTransformerClsHead', num_classes=NUM_CLASSES,
                  in_channels=32)), 'backbone.layers.0', 'backbone.layers.1'),
    # a timm CNN
    'timm-mobilenet-v1': (dict(
        type='ImageClassifier',
        backbone=dict(type='TimmStudentBackbone',
                      model_name='mobilenetv1_100'),
        neck=None,
        head=dict(type='LinearClsHead', num_classes=NUM_CLASSES,
                  in_channels=1024)), 'backbone.model.blocks.3',
        'backbone.model.blocks.4'),
}


def _distil(tmp_path, name):
    """Two training iterations of the smoke run with this student."""
    student, tap3, tap4 = STUDENTS[name]
    cfg = Config.fromfile(SMOKE_CONFIG)
    cfg.model.student = student
    cfg.model.perception_stage.student_tap = tap3
    cfg.model.final_stage.student_tap = tap4
    cfg.train_dataloader.dataset.num_samples = 16
    cfg.train_dataloader.batch_size = 8
    cfg.val_dataloader.dataset.num_samples = 8
    cfg.test_dataloader = cfg.val_dataloader
    cfg.train_cfg = dict(by_epoch=True, max_epochs=1, val_interval=1)
    cfg.param_scheduler = []
    cfg.work_dir = str(tmp_path / 'work')
    config = str(tmp_path / 'distill.py')
    cfg.dump(config)
    runner = RUNNERS.build(Config.fromfile(config))
    runner.train()
    distiller = runner.model.eval()
    return distiller, config, osp.join(cfg.work_dir, 'epoch_1.pth')


@pytest.mark.slow
@pytest.mark.parametrize('name', list(STUDENTS))
def test_extracted_student_predicts_like_the_distiller(tmp_path, name):
    distiller, config, checkpoint = _distil(tmp_path, name)
    out = tmp_path / 'student'
    run_command([sys.executable, TOOL, config, checkpoint, str(out)])
    files = {p.name for p in out.iterdir()}
    assert {'student.pth', 'student_config.py', 'backbone.pth'} <= files

    # (a) mmpretrain loads it, strictly and without warnings.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        model = get_model(str(out / 'student_config.py'),
                          pretrained=str(out / 'student.pth'))
    assert not [w for w in caught if 'state' in str(w.message).lower()
                or 'checkpoint' in str(w.message).lower()]
    load_checkpoint(model, str(out / 'student.pth'), strict=True)
    assert not any('projector' in k or 'teacher' in k
                   for k in torch.load(out / 'student.pth')['state_dict'])

    batch = make_batch(4, seed=1)
    with torch.no_grad():
        data = distiller.data_preprocessor(batch, False)
        expected = distiller(data['inputs'], data['data_samples'],
                             mode='predict')
        data = model.data_preprocessor(batch, False)
        got = model(data['inputs'], data['data_samples'], mode='predict')
    for want, have in zip(expected, got):
        torch.testing.assert_close(have.pred_score, want.pred_score)
        assert int(have.pred_label) == int(want.pred_label)

    # ... and so does its inferencer, on a plain image array.
    image = np.random.RandomState(0).randint(
        0, 256, (IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.uint8)
    inferencer = ImageClassificationInferencer(
        str(out / 'student_config.py'), pretrained=str(out / 'student.pth'))
    result = inferencer(image)[0]
    with torch.no_grad():
        data = distiller.data_preprocessor(
            dict(inputs=[torch.from_numpy(image).permute(2, 0, 1)]), False)
        want = distiller(data['inputs'], mode='predict')[0]
    np.testing.assert_allclose(result['pred_scores'],
                               want.pred_score.numpy(), rtol=1e-5,
                               atol=1e-6)

    # ... and both load where mmscalekd cannot be imported, with the
    # distiller's student's logits.
    written = Config.fromfile(str(out / 'student_config.py'))
    assert not {'custom_imports', 'runner_type', 'teacher',
                'student'} & set(written.keys())
    np.save(tmp_path / 'image.npy', image)
    with torch.no_grad():
        inputs = distiller.data_preprocessor(batch, False)['inputs']
        want_logits = distiller.student(inputs, mode='tensor')
    torch.save(inputs, tmp_path / 'inputs.pth')
    run_command([sys.executable, '-c', WITHOUT_MMSCALEKD, str(out),
                 str(tmp_path / 'inputs.pth'), str(tmp_path / 'image.npy')])
    alone = torch.load(out / 'without_mmscalekd.pth')
    assert alone['blocked'] and alone['loaded'] == []
    assert alone['type'] == ('TimmClassifier' if name.startswith('timm-')
                             else 'ImageClassifier')
    torch.testing.assert_close(alone['logits'], want_logits)
    np.testing.assert_allclose(alone['scores'].numpy(),
                               want.pred_score.numpy(), rtol=1e-5,
                               atol=1e-6)

    # (b) the backbone alone, as mmdet / mmseg initialise a backbone: from
    # the config written beside it, whose init_cfg loads it ...
    backbone = MODELS.build(
        Config.fromfile(str(out / 'backbone_config.py')).backbone)
    backbone.init_weights()
    want_backbone = distiller.student.backbone.state_dict()
    have_backbone = backbone.state_dict()
    assert have_backbone.keys() == want_backbone.keys()
    for key, value in want_backbone.items():
        torch.testing.assert_close(have_backbone[key], value)
    # ... and strictly: every key of the file fits that backbone.
    load_checkpoint(backbone, str(out / 'backbone.pth'), strict=True,
                    revise_keys=[(r'^backbone\.', '')])

    # (c) timm students: a file timm itself loads strictly.
    if name.startswith('timm-'):
        import timm
        path = out / 'mobilenetv1_100.safetensors'
        assert path.name in files
        timm_model = timm.create_model(
            'mobilenetv1_100', pretrained=True, num_classes=NUM_CLASSES,
            pretrained_cfg_overlay=dict(file=str(path),
                                        num_classes=NUM_CLASSES)).eval()
        assert set(load_file(str(path))) == set(timm_model.state_dict())
        with torch.no_grad():
            data = distiller.data_preprocessor(batch, False)
            torch.testing.assert_close(
                timm_model(data['inputs']),
                distiller.student(data['inputs'], mode='tensor'))
    else:
        assert not any(f.endswith('.safetensors') for f in files)


# Builds the backbone of backbone_config.py in a Python where `import
# mmscalekd` fails, loads backbone.pth into it strictly and by the config's
# init_cfg, and saves both state dicts for the test to compare.
BACKBONE_WITHOUT_MMSCALEKD = """
import sys
sys.modules['mmscalekd'] = None
import torch
from mmengine.config import Config
from mmengine.runner import load_checkpoint
from mmpretrain.registry import MODELS
out = sys.argv[1]
cfg = Config.fromfile(out + '/backbone_config.py')
by_init_cfg = MODELS.build(cfg.backbone)
by_init_cfg.init_weights()
strict = MODELS.build(cfg.backbone)
load_checkpoint(strict, out + '/backbone.pth', strict=True,
                revise_keys=[(r'^backbone\\.', '')])
torch.save(dict(type=type(strict).__name__, strict=strict.state_dict(),
                init_cfg=by_init_cfg.state_dict()), out + '/built.pth')
"""

RESNET_D = dict(
    type='ImageClassifier',
    backbone=dict(type='ResNetV1d', depth=18, base_channels=16,
                  drop_path_rate=0.05),
    neck=dict(type='GlobalAveragePooling'),
    head=dict(type='LinearClsHead', num_classes=NUM_CLASSES,
              in_channels=128))


def _checkpoint_of(tmp_path, student, tap3, tap4, transform=lambda s: s):
    """A distillation config with this student and a checkpoint of its
    (untrained) distiller, as extract_student reads them."""
    cfg = Config.fromfile(SMOKE_CONFIG)
    cfg.model.student = student
    cfg.model.perception_stage.student_tap = tap3
    cfg.model.final_stage.student_tap = tap4
    config = str(tmp_path / 'distill.py')
    cfg.dump(config)
    model_cfg = cfg.model.to_dict()
    model_cfg['data_preprocessor'] = cfg.data_preprocessor.to_dict()
    torch.manual_seed(0)
    distiller = MODELS.build(model_cfg)
    path = tmp_path / 'epoch_1.pth'
    torch.save(dict(state_dict=transform(distiller.state_dict()),
                    meta=dict()), path)
    return distiller, config, str(path)


@pytest.mark.parametrize('name', ['resnet-d', 'deit'])
def test_backbone_loads_strictly_from_its_own_config(tool, tmp_path, name):
    """backbone.pth loads into the backbone its config builds, where only
    mmpretrain is installed: every key fits (a ResNet-D stem is no ResNet
    stem) and the weights are the student's."""
    student, tap3, tap4 = ((RESNET_D, 'backbone.layer3', 'backbone.layer4')
                           if name == 'resnet-d' else STUDENTS[name])
    distiller, config, checkpoint = _checkpoint_of(tmp_path, student, tap3,
                                                   tap4)
    out = tmp_path / 'student'
    written = tool.extract_student(config, checkpoint, str(out))
    assert written['backbone_config'] == str(out / 'backbone_config.py')
    backbone = Config.fromfile(written['backbone_config']).backbone
    # the type, scoped to mmpretrain, and every argument of the config
    assert backbone.pop('type') == f'mmpretrain.{student["backbone"]["type"]}'
    assert backbone.pop('init_cfg') == dict(
        type='Pretrained', checkpoint=str(out / 'backbone.pth'),
        prefix='backbone.')
    given = dict(student['backbone'])
    given.pop('type')
    assert backbone.to_dict() == given

    run_command([sys.executable, '-c', BACKBONE_WITHOUT_MMSCALEKD, str(out)])
    built = torch.load(out / 'built.pth')
    assert built['type'] == student['backbone']['type']
    want = distiller.student.backbone.state_dict()
    for state in (built['strict'], built['init_cfg']):
        assert state.keys() == want.keys()
        for key, value in want.items():
            torch.testing.assert_close(state[key], value, rtol=0, atol=0)
    if name == 'resnet-d':
        # the type of the old hint, `ResNet`, fits the file only in part
        resnet = MODELS.build(dict(RESNET_D['backbone'], type='ResNet'))
        with pytest.raises(RuntimeError, match='stem'):
            load_checkpoint(resnet, str(out / 'backbone.pth'), strict=True,
                            revise_keys=[(r'^backbone\.', '')])


def test_a_timm_backbone_config_imports_mmscalekd(tool, tmp_path):
    student, _, _ = STUDENTS['timm-mobilenet-v1']
    cfg = tool.backbone_config(student, str(tmp_path / 'backbone.pth'))
    assert cfg.backbone.type == 'mmpretrain.TimmStudentBackbone'
    assert cfg.backbone.model_name == 'mobilenetv1_100'
    assert cfg.custom_imports.imports == ['mmpretrain.models', 'mmscalekd']
    assert tool.backbone_config(RESNET_D, 'b.pth').custom_imports.imports == [
        'mmpretrain.models']


def test_non_finite_student_weights_are_refused(tool, tmp_path):
    def diverged(state):
        state['student.head.fc.bias'] = torch.full_like(
            state['student.head.fc.bias'], float('nan'))
        state['student.backbone.conv1.weight'][0, 0, 0, 0] = float('inf')
        return state

    _, config, checkpoint = _checkpoint_of(
        tmp_path, STUDENTS['resnet'][0], 'backbone.layer3', 'backbone.layer4',
        diverged)
    out = tmp_path / 'student'
    with pytest.raises(CheckpointError,
                       match=r"epoch_1\.pth.*'student\.backbone\.conv1"
                       r"\.weight', 'student\.head\.fc\.bias'"):
        tool.extract_student(config, checkpoint, str(out))
    assert not out.exists()


def test_a_checkpoint_without_a_student_is_refused(tmp_path):
    path = tmp_path / 'other.pth'
    torch.save(dict(state_dict={'backbone.conv.weight': torch.zeros(1)}),
               path)
    result = run_command(
        [sys.executable, TOOL, SMOKE_CONFIG, str(path),
         str(tmp_path / 'out')], check=False)
    assert result.returncode != 0
    assert 'no `student.*` weights' in result.stderr


# --- the student config, without a checkpoint -----------------------------

@pytest.fixture(scope='module')
def tool():
    """The tool's library."""
    from mmscalekd.engine import student_export
    return student_export


@pytest.mark.parametrize('config', [
    'configs/smoke/scalekd_smoke_synthetic.py',
    'configs/quickstart/mixer-tiny_digits_scalekd.py',
    'configs/scalekd/scalekd_swin-l_resnet50_8xb32_in1k.py',
    'configs/scalekd/logit-kd_swin-l_mixer-s16_64xb64_in1k.py',
])
def test_student_config_names_nothing_of_mmscalekd(tool, config):
    cfg = Config.fromfile(osp.join(REPO_ROOT, config))
    student = tool.student_config(cfg)
    # what only distillation / mmscalekd reads is gone ...
    for key in ('custom_imports', 'runner_type', 'teacher', 'student',
                'teacher_model', 'student_model'):
        assert key not in student, key
    text = student.pretty_text
    assert 'mmscalekd' not in text and 'ScaleKD' not in text
    # ... data and schedule stay
    assert student.train_dataloader == cfg.train_dataloader
    assert student.optim_wrapper == cfg.optim_wrapper
    # the smoke run's synthetic data is mmscalekd's (named in the header)
    assert tool.mmscalekd_types(student.to_dict()) == (
        ['SyntheticClassificationDataset'] if 'smoke' in config else [])
    assert student.model.type in ('ImageClassifier', 'TimmClassifier')
    assert not {h['type'] for h in student.get('custom_hooks', [])} & set(
        tool.RUNTIME_HOOKS)
    # the original config is untouched, and the tool's list of runtime
    # hooks is the runtime base's
    runtime = Config.fromfile(
        osp.join(REPO_ROOT, 'configs', '_base_', 'scalekd_runtime.py'))
    assert [h['type'] for h in runtime.custom_hooks] == list(
        tool.RUNTIME_HOOKS)
    assert [h['type'] for h in cfg.custom_hooks][-len(tool.RUNTIME_HOOKS):
                                                 ] == list(tool.RUNTIME_HOOKS)


def test_a_timm_student_becomes_mmpretrains_timm_classifier(tool):
    cfg = Config.fromfile(osp.join(
        REPO_ROOT, 'configs/scalekd/scalekd_swin-l_mobilenet-v1_8xb32_in1k.py'))
    cfg.model.student.backbone.model_kwargs = dict(drop_rate=0.1)
    model = tool.student_config(cfg).model
    assert model.type == 'TimmClassifier'
    assert (model.model_name, model.num_classes, model.pretrained,
            model.drop_rate) == ('mobilenetv1_100', 1000, False, 0.1)
    assert model.loss == cfg.model.student.head.loss
    # not a student of timm: None
    assert tool.timm_classifier_config(
        Config.fromfile(SMOKE_CONFIG).model.student.to_dict()) is None
