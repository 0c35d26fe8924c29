"""Tests of SuperYOLO's inference engines (eager and ONNX Runtime)."""

import importlib
import sys
import warnings
from pathlib import Path

import pytest
import torch

from torchgeo_ext.models.superyolo import SuperYOLO, export_onnx, superyolo_mf
from torchgeo_ext.models.superyolo_engine import (
    ConvAct,
    SuperYOLOEagerEngine,
    SuperYOLOOnnxEngine,
    inference_engine,
)


def trained_like(model: SuperYOLO) -> SuperYOLO:
    """Non-trivial batch norms, so that folding them matters."""
    torch.manual_seed(0)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            assert module.running_mean is not None
            assert module.running_var is not None
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
    return model.eval()


def test_eager_engine_matches_the_model() -> None:
    model = trained_like(superyolo_mf(num_classes=3, width=0.25))
    engine = SuperYOLOEagerEngine(model)
    assert model.sr is not None  # the model is not modified: the engine has a copy
    assert engine.model.sr is None
    assert sum(isinstance(m, ConvAct) for m in engine.modules()) > 20
    engine.train()  # stays in eval mode
    assert not engine.training
    for shape in [(2, 4, 32, 48), (1, 4, 64, 16)]:
        x = torch.rand(shape)
        with torch.no_grad():
            expected = model(x)
        torch.testing.assert_close(engine(x), expected, rtol=1e-4, atol=1e-4)
    with torch.enable_grad():  # inference only, whatever the grad mode
        got = engine(torch.rand(1, 4, 32, 32))
    assert not got.requires_grad


def test_onnxruntime_superyolo_matches_torch_at_any_tile_size() -> None:
    pytest.importorskip('onnxruntime')
    model = trained_like(superyolo_mf(num_classes=3))
    module = inference_engine(model, 'onnxruntime', threads=1)
    assert isinstance(module, SuperYOLOOnnxEngine)
    module.train()  # stays in eval mode
    assert not module.training
    for shape in [(1, 4, 64, 64), (2, 4, 32, 96)]:  # batch, height and width dynamic
        x = torch.rand(shape)
        with torch.no_grad():
            expected = model(x)
        got = module(x)
        assert got.shape == expected.shape
        torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-3)
    with pytest.raises(ValueError, match='engine must be one of'):
        inference_engine(model, 'tensorrt')


def test_export_writes_a_file_or_a_buffer(tmp_path: Path) -> None:
    pytest.importorskip('onnx')
    import io

    model = superyolo_mf(2, width=0.25)
    buffer = io.BytesIO()
    export_onnx(model, buffer, image_size=32)
    export_onnx(model, tmp_path / 'm.onnx', image_size=32)
    assert buffer.getvalue() == (tmp_path / 'm.onnx').read_bytes()


def test_old_engine_module_is_deprecated() -> None:
    sys.modules.pop('torchgeo_ext.models.engine', None)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        old = importlib.import_module('torchgeo_ext.models.engine')
    assert any(issubclass(w.category, DeprecationWarning) for w in caught)
    model = superyolo_mf(num_classes=3, width=0.25).eval()
    x = torch.rand(1, 4, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(
            old.optimise_eager(model)(x), model(x), rtol=1e-4, atol=1e-4
        )
    with pytest.raises(TypeError, match='SuperYOLO'):
        old.optimise_eager(torch.nn.Conv2d(1, 1, 1))
