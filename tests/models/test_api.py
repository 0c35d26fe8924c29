"""Tests of the model registry in torchgeo_ext.models.api."""

import inspect
import sys

import pytest
import torch
from torch import nn

from torchgeo_ext.models import api
from torchgeo_ext.models.api import get_model, get_model_builder, list_models


def test_list_models_sorted_and_complete() -> None:
    names = list_models()
    assert names == sorted(names)
    assert len(names) == len(set(names))
    # The builders the tasks of this library name in their configs.
    for name in (
        'superyolo_mf',
        'superyolo_rgb',
        'superyolo_ir',
        'superyolo_early',
        'yolov8n_obb',
        'lma_yolov8n_obb',
        'two_stream_yolov8n_obb',
        'e2emfd_yolov8n_obb',
        'dianet_w48',
        'dianet_w18',
        'dianet_w8',
        'hyat_base',
        'hyat_tiny',
    ):
        assert name in names


@pytest.mark.parametrize('name', list_models())
def test_every_entry_resolves_to_a_builder(name: str) -> None:
    builder = get_model_builder(name)
    assert callable(builder)
    module, function = api._BUILDERS[name].split(':')
    assert builder.__name__ == function
    assert builder.__module__ == f'torchgeo_ext.models.{module}'
    # Builders take keyword arguments (configs pass them by name).
    assert all(
        p.kind is not inspect.Parameter.POSITIONAL_ONLY
        for p in inspect.signature(builder).parameters.values()
    )


def test_get_model_builds_with_keywords() -> None:
    model = get_model('dianet_w8', in_channels=3, num_classes=2).eval()
    assert isinstance(model, nn.Module)
    with torch.no_grad():
        assert model(torch.rand(1, 3, 20, 20)).shape == (1, 2, 20, 20)
    obb = get_model('yolov8n_obb', num_classes=3, in_channels=4, width=0.0625)
    with torch.no_grad():
        out = obb.eval()(torch.rand(1, 4, 32, 32))
    assert out.scores.shape[-1] == 3


def test_unknown_model_lists_the_names() -> None:
    with pytest.raises(ValueError, match=r"unknown model 'superyolo_thermal'") as error:
        get_model('superyolo_thermal')
    assert 'superyolo_mf' in str(error.value)
    with pytest.raises(ValueError, match='unknown model'):
        get_model_builder('')


def test_lookup_imports_only_its_module() -> None:
    # Names are 'module:function' strings: listing imports no model module.
    for name in list(sys.modules):
        if name.startswith('torchgeo_ext.models.hyat'):
            del sys.modules[name]
    list_models()
    assert 'torchgeo_ext.models.hyat' not in sys.modules
    get_model_builder('hyat_tiny')
    assert 'torchgeo_ext.models.hyat' in sys.modules
