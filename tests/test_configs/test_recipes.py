"""The shipped configs against the authors' released recipes.

`tests/data/authors_recipes.json` holds, per ScaleKD config of ours whose pair
the authors released (deep-optimization/ScaleKD, `configs/distillers/`), the
facts of their recipe with the file each comes from. Configs are parsed only;
no model is built. docs/recipes.md is the readable form of the same table.
"""
import functools
import json
import re
from pathlib import Path

import mmpretrain
import pytest
from mmengine.config import Config

from tests.conftest import shared_base_variables

# Parses every shipped config and its mmpretrain bases: minutes on a CPU.
pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = ROOT / 'configs' / 'scalekd'
AUTHORS = json.loads(
    (ROOT / 'tests' / 'data' / 'authors_recipes.json').read_text())


class _Absent:

    def __repr__(self):
        return '<absent>'


ABSENT = _Absent()

# What a distillation run adds to its student's config, and nothing else:
# the distiller wrapped around the student and the knobs only it reads.
DISTILLATION_MODEL_KEYS = {
    'type', 'teacher', 'perception_stage', 'final_stage', 'logit_kd',
    'input_size', 'student_tokens', 'data_preprocessor'
}
DISTILLATION_TOP_KEYS = {'find_unused_parameters', 'model_wrapper_cfg',
                         *shared_base_variables()}


@functools.lru_cache(maxsize=None)
def parsed(name: str) -> dict:
    return Config.fromfile(str(CONFIGS / name)).to_dict()


def resolve(cfg: dict, key: str):
    """Value at a dotted path; `name[type=X]` picks the list item of type X."""
    if key == 'total_batch':
        gpus = int(re.search(r'_(\d+)xb\d+', cfg['__file__']).group(1))
        return gpus * cfg['train_dataloader']['batch_size']
    value = cfg
    for part in key.split('.'):
        match = re.fullmatch(r'(\w+)\[type=(\w+)\]', part)
        name = match.group(1) if match else part
        if not isinstance(value, dict) or name not in value:
            return ABSENT
        value = value[name]
        if match:
            items = [v for v in value if v.get('type') == match.group(2)]
            if len(items) != 1:
                return ABSENT
            value = items[0]
    return value


def scalekd_configs():
    return sorted(p.name for p in CONFIGS.glob('scalekd_*.py'))


def baselines_of(name: str):
    """`scalekd_<teacher>_<rest>` -> (`student_<rest>`, `logit-kd_<...>`)."""
    rest = name[len('scalekd_'):].split('_', 1)[1]
    return f'student_{rest}', 'logit-kd_' + name[len('scalekd_'):]


def recipe_part(cfg: dict) -> dict:
    """The config less what only distillation needs; the student's model."""
    recipe = {
        k: v
        for k, v in cfg.items() if k not in DISTILLATION_TOP_KEYS
        and k not in ('__file__', 'filename')
    }
    model = recipe.pop('model')
    if model.get('type') == 'ScaleKDDistiller':
        extra = set(model) - DISTILLATION_MODEL_KEYS - {'student'}
        assert not extra, f'model keys {extra} are neither student nor KD'
        model = model['student']
    recipe['model'] = model
    return recipe


def differences(a, b, path=''):
    """Every key path where two parsed configs differ."""
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for key in sorted(set(a) | set(b), key=str):
            out += differences(
                a.get(key, ABSENT), b.get(key, ABSENT), f'{path}.{key}')
        return out
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)) \
            and len(a) == len(b):
        return [
            d for i, (x, y) in enumerate(zip(a, b))
            for d in differences(x, y, f'{path}[{i}]')
        ]
    return [] if a == b else [f'{path}: {a!r} != {b!r}']


def test_every_released_pair_has_facts():
    shipped = set(scalekd_configs())
    assert shipped == set(AUTHORS['pairs']), (
        'a ScaleKD config without an entry in tests/data/authors_recipes.json:'
        f' {shipped - set(AUTHORS["pairs"])}')
    for entry in AUTHORS['pairs'].values():
        assert entry['authors_config'].startswith('configs/distillers/')
        assert entry['facts'], entry['authors_config']
        assert all(fact['source'] for fact in entry['facts'])


@pytest.mark.parametrize('name', sorted(AUTHORS['pairs']))
def test_config_matches_the_authors_recipe(name):
    cfg = parsed(name)
    cfg['__file__'] = name
    wrong = []
    for fact in AUTHORS['pairs'][name]['facts']:
        ours = resolve(cfg, fact['key'])
        theirs = fact['value']
        if theirs is None:
            ok = ours is ABSENT or ours is None
        elif isinstance(theirs, float):
            ok = ours is not ABSENT and ours == pytest.approx(theirs)
        else:
            ok = ours == theirs
        if not ok:
            wrong.append(f"{fact['key']}: ours {ours!r}, theirs {theirs!r} "
                         f"({fact['source']})")
    assert not wrong, '\n'.join(wrong)


def test_the_fact_check_can_fail():
    """A changed lr, sampler or backbone is caught, not passed over."""
    name = 'scalekd_swin-l_resnet50_8xb256-rsb-a2-300e_in1k.py'
    facts = {f['key']: f['value'] for f in AUTHORS['pairs'][name]['facts']}
    mmpretrain_rsb_a2 = Config.fromfile(
        str(Path(mmpretrain.__file__).parent / '.mim' / 'configs' / 'resnet' /
            'resnet50_8xb256-rsb-a2-300e_in1k.py')).to_dict()
    mmpretrain_rsb_a2['model'] = dict(student=mmpretrain_rsb_a2['model'])
    for key, value in [
        ('model.student.backbone.type', 'ResNet'),
        ('train_dataloader.sampler.type', 'RepeatAugSampler'),
        ('param_scheduler[type=LinearLR].start_factor', 0.0001),
        ('param_scheduler[type=CosineAnnealingLR].eta_min', 1e-6),
    ]:
        assert resolve(mmpretrain_rsb_a2, key) == value
        assert facts[key] != value


@pytest.mark.parametrize('name', scalekd_configs())
def test_baselines_use_the_same_recipe(name):
    """student_* and logit-kd_* differ from ScaleKD only in distillation."""
    student, logit_kd = baselines_of(name)
    assert (CONFIGS / student).exists(), f'{name} has no {student}'
    assert (CONFIGS / logit_kd).exists(), f'{name} has no {logit_kd}'
    scalekd = recipe_part(parsed(name))
    for baseline in (student, logit_kd):
        diff = differences(recipe_part(parsed(baseline)), scalekd)
        assert not diff, f'{baseline} vs {name}:\n' + '\n'.join(diff)

    kd_model = parsed(logit_kd)['model']
    assert kd_model['perception_stage'] is None
    assert kd_model['final_stage'] is None
    assert kd_model['logit_kd'] is not None
    assert 'teacher' not in parsed(student)['model']


def test_baseline_check_sees_a_recipe_change():
    name = 'scalekd_swin-l_resnet50_8xb32_in1k.py'
    scalekd = recipe_part(parsed(name))
    changed = recipe_part(parsed('student_resnet50_8xb32_in1k.py'))
    changed['optim_wrapper'] = dict(
        changed['optim_wrapper'],
        optimizer=dict(changed['optim_wrapper']['optimizer'], lr=0.2))
    del changed['sync_bn']
    assert differences(changed, scalekd) == [
        '.optim_wrapper.optimizer.lr: 0.2 != 0.1',
        ".sync_bn: <absent> != 'torch'",
    ]


@pytest.mark.parametrize('name', [
    'scalekd_beit-l_resnet50_8xb256-rsb-a2-300e_in1k.py',
    'scalekd_beit-l_vit-base-p14_16xb64_in1k.py',
    'scalekd_beit-l_mixer-b14_64xb64_in1k.py',
])
def test_eva_teacher_sees_its_own_normalisation(name):
    """EVA-L was trained with CLIP's mean/std, the students' recipes use
    ImageNet's: the configs give the teacher its own."""
    from mmscalekd.models.teachers import teacher_normalization
    cfg = Config.fromfile(str(ROOT / 'configs' / 'scalekd' / name))
    trained = teacher_normalization(
        'mmpretrain::eva/eva-l-p14_8xb16_in1k-196px.py')
    assert cfg.model.teacher.mean == pytest.approx(trained['mean'])
    assert cfg.model.teacher.std == pytest.approx(trained['std'])
    student = cfg.model.get('data_preprocessor') or cfg.data_preprocessor
    assert student['mean'] != pytest.approx(trained['mean'])
