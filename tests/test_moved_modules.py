"""The old import paths of moved modules still work, with a DeprecationWarning."""

import importlib
import sys

import pytest


@pytest.mark.parametrize(
    ('old', 'new', 'name'),
    [
        ('torchgeo_ext.options', 'torchgeo_ext.commands._options', 'positive_int'),
        ('torchgeo_ext.demo_scene', 'torchgeo_ext.demos.scene', 'make_demo_scene'),
        (
            'torchgeo_ext.demo_detection',
            'torchgeo_ext.demos.detection',
            'synthetic_vehicle_scene',
        ),
        (
            'torchgeo_ext.datasets.fyh_builder',
            'torchgeo_ext.converters.fyh',
            'build_fyh',
        ),
    ],
)
def test_old_path_warns_and_reexports(old: str, new: str, name: str) -> None:
    sys.modules.pop(old, None)
    with pytest.warns(DeprecationWarning, match=new.replace('.', r'\.')):
        module = importlib.import_module(old)
    assert getattr(module, name) is getattr(importlib.import_module(new), name)
