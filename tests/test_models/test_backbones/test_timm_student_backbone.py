"""TimmStudentBackbone: a headless timm model inside an mmpretrain
classifier, with timm's own parameter names."""
import pytest
import timm
import torch

from mmpretrain.registry import MODELS

import mmscalekd  # noqa: F401


def test_forward_is_the_timm_models_pooled_feature():
    torch.manual_seed(0)
    backbone = MODELS.build(
        dict(type='TimmStudentBackbone', model_name='mobilenetv1_100'))
    backbone.eval()
    x = torch.randn(2, 3, 64, 64)
    (feature, ) = backbone(x)
    assert feature.shape == (2, 1024)
    assert backbone.num_features == 1024
    assert backbone.classifier_name == 'classifier'
    assert backbone.num_extra_tokens == 0
    # The same numbers as timm's own forward up to its (left out) classifier.
    reference = timm.create_model('mobilenetv1_100', num_classes=0)
    reference.load_state_dict(backbone.model.state_dict())
    reference.eval()
    torch.testing.assert_close(feature, reference(x))


def test_vit_prefix_tokens_are_exposed():
    backbone = MODELS.build(
        dict(
            type='TimmStudentBackbone',
            model_name='vit_tiny_patch16_224',
            model_kwargs=dict(img_size=32, depth=1, class_token=True,
                              reg_tokens=2)))
    assert backbone.num_extra_tokens == 3
    assert backbone.classifier_name == 'head'
    assert backbone(torch.randn(1, 3, 32, 32))[0].shape == (1, 192)


@pytest.mark.parametrize('key', ['pretrained', 'num_classes'])
def test_download_and_classifier_kwargs_are_refused(key):
    with pytest.raises(ValueError, match=rf'model_kwargs\.{key}'):
        MODELS.build(
            dict(type='TimmStudentBackbone', model_name='mobilenetv1_100',
                 model_kwargs={key: 1}))
