"""Tests of the ONNX Runtime inference engine."""

import torch

from torchgeo_ext.models.engine import OnnxRuntimeModule
from torchgeo_ext.models.superyolo import superyolo_mf


def test_onnxruntime_superyolo_matches_torch_at_any_tile_size() -> None:
    torch.manual_seed(0)
    model = superyolo_mf(num_classes=3).eval().fuse()
    module = OnnxRuntimeModule(model, torch.zeros(1, 4, 64, 64), threads=1)
    module.train()  # stays in eval mode
    assert not module.training
    for shape in [(1, 4, 64, 64), (2, 4, 32, 96)]:  # batch, height and width dynamic
        x = torch.rand(shape)
        with torch.no_grad():
            expected = model(x)
        got = module(x)
        assert got.shape == expected.shape
        torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-3)
