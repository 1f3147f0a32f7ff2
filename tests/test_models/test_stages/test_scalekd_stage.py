"""ScaleKDStage: built from its config keys, through the interfaces only."""
import pytest
import torch
from torch import nn

from mmpretrain.registry import MODELS

from mmscalekd.models.stages import ScaleKDStage
from tests.conftest import build_distiller, make_batch


def losses_of(distiller):
    data = distiller.data_preprocessor(make_batch(), True)
    with torch.no_grad():
        return distiller.loss(data['inputs'], data['data_samples'])


@pytest.mark.parametrize('stage', ['perception_stage', 'final_stage'])
def test_type_key_names_the_stage_class(stage):
    """``type='ScaleKDStage'``, as a registry-built config writes it,
    builds the same stage as leaving it out."""
    plain = build_distiller()
    typed = build_distiller(**{stage: dict(type='ScaleKDStage')})
    assert type(typed.stages[stage[:-len('_stage')]]) is ScaleKDStage
    assert typed.state_dict().keys() == plain.state_dict().keys()
    for key, value in losses_of(plain).items():
        torch.testing.assert_close(losses_of(typed)[key], value)


@pytest.mark.parametrize('stage_type', ['CrossAttentionProjector',
                                        'NoSuchStage', nn.Linear])
def test_type_key_that_is_no_stage_is_refused(stage_type):
    with pytest.raises(KeyError, match=r'`model\.final_stage\.type=.*` is '
                       'not a stage'):
        build_distiller(final_stage=dict(type=stage_type))


@pytest.mark.parametrize('key', ['num_heads', 'self_query', 'softmax_scale',
                                 'spatial_weight', 'frequency_weight'])
def test_flat_key_is_an_unknown_key(key):
    """A projector or loss key at the stage's level is refused by name."""
    with pytest.raises(KeyError, match=rf"Unknown key\(s\) \['{key}'\] in "
                       r'`model\.final_stage`'):
        build_distiller(final_stage={key: 1})


def test_registered_subclass_is_built():
    """A stage type of its own (a registered subclass) takes the config."""

    @MODELS.register_module(force=True)
    class CountingStage(ScaleKDStage):
        calls = 0

        def forward(self, *args, **kwargs):
            CountingStage.calls += 1
            return super().forward(*args, **kwargs)

    try:
        distiller = build_distiller(final_stage=dict(type='CountingStage'))
        assert type(distiller.final_stage) is CountingStage
        assert type(distiller.perception_stage) is ScaleKDStage
        losses = losses_of(distiller)
        assert CountingStage.calls == 1
        assert 'loss_final_spatial' in losses
    finally:
        MODELS.module_dict.pop('CountingStage')
