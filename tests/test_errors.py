"""One test per row of docs/errors.md: bad input fails early and clearly."""
import os.path as osp
import re

import pytest
import torch

from mmpretrain.registry import MODELS

from mmscalekd.utils import CheckpointError
from tests.conftest import (REPO_ROOT, build_distiller, make_batch,
                            tiny_resnet_student, tiny_swin_teacher)


def _teacher_file(tmp_path, transform):
    torch.manual_seed(1)
    teacher = MODELS.build(tiny_swin_teacher())
    state = transform(teacher.state_dict())
    path = tmp_path / 'teacher.pth'
    torch.save(dict(state_dict=state), path)
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


def _nan_step():
    from mmengine.optim import build_optim_wrapper
    distiller = build_distiller()
    before = distiller.student.backbone.conv1.weight.clone()
    with torch.no_grad():
        distiller.student.head.fc.weight.fill_(float('nan'))
    optim_wrapper = build_optim_wrapper(
        distiller, dict(optimizer=dict(type='SGD', lr=0.1)))
    try:
        distiller.train_step(make_batch(), optim_wrapper)
    finally:
        # raised before the optimizer step: the other weights are untouched
        assert torch.equal(distiller.student.backbone.conv1.weight, before)


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


# id -> (callable(tmp_path) raising, exception type, message regex)
CASES = {
    'E01': (lambda t: build_distiller(
        perception_stage=dict(student_channels=1024)), ValueError,
            r'perception_stage\.student_channels=1024.*set it to 64'),
    'E02': (lambda t: build_distiller(final_stage=dict(query_size=7)),
            ValueError, r'final_stage\.query_size=7.*\(2, 2\)'),
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
    'E14': (lambda t: build_distiller(perception_stage=dict(num_heads=3)),
            ValueError, r'num_heads=3.*128'),
    'E15': (lambda t: build_distiller(final_stage=dict(spatial_weight=-0.1)),
            ValueError, r'spatial_weight=-0\.1'),
    'E16': (lambda t: build_distiller(logit_kd=dict(
        type='LogitKDLoss', alpha=1.5)), ValueError, r'alpha=1\.5.*0\.5'),
    'E17': (lambda t: build_distiller(logit_kd=dict(
        type='LogitKDLoss', tau=0)), ValueError, r'tau=0.*1\.0'),
    'E18': (lambda t: _grayscale_step(), ValueError,
            r'model\.input_channels.*RGB'),
    'E19': (lambda t: build_distiller(final_stage=dict(num_head=4)),
            KeyError, r'num_head.*allowed keys'),
    'E20': (lambda t: _without('num_heads')(), KeyError,
            r'final_stage\.num_heads'),
    'E21': (lambda t: _class_mismatch(), ValueError,
            r'num_classes.*model\.logit_kd=None'),
    'E22': (lambda t: build_distiller(perception_stage=dict(self_query=False)),
            ValueError, r'perception_stage\.self_query'),
    'E23': (lambda t: _nan_step(), FloatingPointError,
            r'Non-finite loss at iteration .*loss_cls'),
    'E24': (lambda t: build_distiller(final_stage=dict(conv_impl='cudnn')),
            ValueError, r"model\.final_stage.*conv_impl='cudnn'.*'native'"),
}


def test_table_and_tests_list_the_same_rows():
    with open(osp.join(REPO_ROOT, 'docs', 'errors.md')) as f:
        documented = set(re.findall(r'^\| (E\d\d) \|', f.read(), re.M))
    assert documented == set(CASES)
    assert len(documented) >= 15


@pytest.mark.parametrize('case', sorted(CASES))
def test_bad_input_fails_with_a_clear_message(case, tmp_path):
    action, error, message = CASES[case]
    with pytest.raises(error) as info:
        action(tmp_path)
    assert re.search(message, str(info.value), re.S), str(info.value)
    assert not (tmp_path / 'pwned').exists()
