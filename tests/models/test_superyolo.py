from pathlib import Path

import pytest
import torch

from torchgeo_ext.models.api import get_model
from torchgeo_ext.models.complexity import count_macs, count_parameters
from torchgeo_ext.models.superyolo import (
    ModalityPath,
    MultimodalFusion,
    SuperYOLO,
    export_onnx,
    postprocess,
    stem_and_first_conv,
    superyolo_early,
    superyolo_ir,
    superyolo_mf,
    superyolo_rgb,
)


def test_paper_size_multimodal() -> None:
    model = superyolo_mf(num_classes=8)
    assert model.sr is not None
    sr_params = count_parameters(model.sr)
    assert sr_params == pytest.approx(2.88e6, rel=0.01)
    model.fuse()
    assert model.sr is None
    assert count_parameters(model) == pytest.approx(4.8451e6, rel=0.01)
    macs = count_macs(model, input_shape=(1, 4, 512, 512))
    assert macs.gmacs == pytest.approx(17.98, rel=0.03)


def test_paper_size_rgb_only() -> None:
    model = superyolo_rgb(num_classes=8, super_resolution=False).fuse()
    assert count_parameters(model) == pytest.approx(4.8256e6, rel=0.01)
    macs = count_macs(model, input_shape=(1, 3, 512, 512))
    assert macs.gmacs == pytest.approx(16.61, rel=0.03)


@pytest.mark.slow
@pytest.mark.parametrize(
    ('model', 'channels', 'bands'),
    [
        (superyolo_mf(3), 4, 4),
        (superyolo_rgb(3), 4, 3),
        (superyolo_ir(3), 4, 1),
        (superyolo_early(3, in_channels=5), 5, 5),
        (get_model('superyolo_rgb', num_classes=3, rgb_bands=(2, 1, 0)), 3, 3),
    ],
)
def test_variant_shapes(model: SuperYOLO, channels: int, bands: int) -> None:
    x = torch.randn(2, channels, 32, 48)
    model.train()
    raw, sr = model.forward_raw(x, with_sr=True)
    assert raw.shape == (2, 3, 8, 12, 8)
    assert sr is not None
    assert sr.shape == (2, bands, 64, 96)
    assert len(model.bands) == bands
    model.eval()
    decoded = model(x)
    assert decoded.shape == (2, 3 * 8 * 12, 8)
    assert (decoded[..., 4:] >= 0).all()
    assert (decoded[..., 4:] <= 1).all()
    results = model.predict(x, score_threshold=0.0, max_detections=10)
    assert len(results) == 2
    assert results[0]['boxes'].shape == (10, 4)


def test_mf_block_splits_modalities() -> None:
    mf = MultimodalFusion([[0, 1, 2], [3]], 64)
    assert [p.conv.out_channels for p in mf.paths if isinstance(p, ModalityPath)] == [
        48,
        16,
    ]
    x = torch.randn(1, 4, 8, 8)
    y = mf(x)
    assert y.shape == (1, 64, 8, 8)
    # The IR features depend only on band 3.
    x2 = x.clone()
    x2[:, 0] += 1
    assert torch.allclose(mf.paths[1](x[:, [3]]), mf.paths[1](x2[:, [3]]))
    with pytest.raises(ValueError, match='non-empty'):
        MultimodalFusion([[0], []])


def test_unknown_variant() -> None:
    with pytest.raises(ValueError, match='unknown model'):
        get_model('superyolo_thermal')


@pytest.mark.slow
def test_fuse_preserves_outputs() -> None:
    torch.manual_seed(0)
    model = superyolo_mf(2)
    # Non-trivial batch-norm statistics.
    model.train()
    with torch.no_grad():
        model(torch.randn(2, 4, 32, 32))
    model.eval()
    x = torch.randn(1, 4, 32, 32)
    before = model(x)
    after = model.fuse()(x)
    assert torch.allclose(before, after, atol=1e-4, rtol=1e-3)


def test_decode_geometry() -> None:
    model = superyolo_mf(1, super_resolution=False)
    raw = torch.zeros(1, 3, 2, 2, 6)
    decoded = model.detect.decode(raw)
    # sigmoid(0) = 0.5: centre = (0.5 * 2 - 0.5 + cell) * 4, size = anchor.
    assert decoded[0, 0, :4].tolist() == [2.0, 2.0, 10.0, 13.0]
    assert decoded[0, 1, :2].tolist() == [6.0, 2.0]
    assert decoded[0, 4, 2:4].tolist() == [16.0, 30.0]


def test_postprocess_nms() -> None:
    decoded = torch.zeros(1, 3, 7)
    decoded[0, 0] = torch.tensor([10, 10, 4, 4, 0.9, 1.0, 0.0])
    decoded[0, 1] = torch.tensor([10.5, 10, 4, 4, 0.8, 1.0, 0.0])  # suppressed
    decoded[0, 2] = torch.tensor([10.5, 10, 4, 4, 0.8, 0.0, 1.0])  # other class
    (result,) = postprocess(decoded, score_threshold=0.1, iou_threshold=0.5)
    assert result['labels'].tolist() == [0, 1]
    assert torch.allclose(result['boxes'][0], torch.tensor([8.0, 8.0, 12.0, 12.0]))
    assert result['scores'].tolist() == pytest.approx([0.9, 0.8])


@pytest.mark.slow
def test_onnx_export(tmp_path: Path) -> None:
    pytest.importorskip('onnx')
    torch.manual_seed(0)
    model = superyolo_mf(2)
    path = tmp_path / 'superyolo.onnx'
    export_onnx(model, path, image_size=64)
    assert path.stat().st_size > 1e6
    assert model.sr is not None  # the original is untouched
    ort = pytest.importorskip('onnxruntime')
    session = ort.InferenceSession(str(path), providers=['CPUExecutionProvider'])
    x = torch.randn(2, 4, 64, 64)
    (onnx_out,) = session.run(None, {'image': x.numpy()})
    expected = model.eval()(x)
    assert onnx_out.shape == tuple(expected.shape)
    assert torch.allclose(torch.from_numpy(onnx_out), expected, atol=1e-3, rtol=1e-3)


def test_se_gate_is_torchvision_squeeze_excitation() -> None:
    # The MF block's SE: mean pool, 64 -> 4 -> 64 bottleneck with ReLU, sigmoid.
    fusion = MultimodalFusion([[0, 1, 2], [3]], 64)
    se = fusion.se
    torch.manual_seed(0)
    x = torch.randn(2, 64, 5, 7)
    w1 = se.fc1.weight.flatten(1)
    w2 = se.fc2.weight.flatten(1)
    assert w1.shape == (4, 64)
    hidden = torch.relu(x.mean(dim=(2, 3)) @ w1.T + se.fc1.bias)
    gate = torch.sigmoid(hidden @ w2.T + se.fc2.bias)
    torch.testing.assert_close(se(x), x * gate[:, :, None, None])


@pytest.mark.parametrize(
    ('model', 'shape'),
    [
        (superyolo_mf(3, super_resolution=False, width=0.25), (2, 4, 32, 48)),
        (superyolo_rgb(3, super_resolution=False, width=0.25), (1, 4, 16, 16)),
        (superyolo_early(3, 5, super_resolution=False, width=0.25), (3, 5, 48, 32)),
        (SuperYOLO(3, [[4], [0, 2]], False, width=0.25), (1, 5, 32, 32)),
    ],
)
def test_stem_and_first_conv_equals_stem_then_conv(
    model: SuperYOLO, shape: tuple[int, ...]
) -> None:
    # The composed 5 x 5 kernel, the SE mean from border sums and the exact first
    # row and column: equal to running the MF block and b1 in turn, per image.
    torch.manual_seed(0)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):  # non-trivial fused weights
            assert module.running_mean is not None
            assert module.running_var is not None
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
    model.fuse()
    x = torch.rand(*shape) * 2
    x[0, :, :3, :3] += 5  # corners matter: the corrected first row and column
    with torch.inference_mode():
        expected = model.b1(model.stem(x))
        got = stem_and_first_conv(model.stem, model.b1, x)
        torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)
        raw, _ = model.forward_after_first_conv(got)
        torch.testing.assert_close(raw, model.forward_raw(x)[0], rtol=1e-4, atol=1e-4)


def test_stem_and_first_conv_half_precision_does_not_overflow() -> None:
    # The SE mean comes from sums over the whole image: 512 x 512 of values ~1
    # overflow float16 unless they are accumulated in float32.
    torch.manual_seed(0)
    model = superyolo_mf(3, super_resolution=False, width=0.25).fuse()
    x = torch.rand(1, 4, 512, 512) * 2
    with torch.inference_mode():
        expected = model.b1(model.stem(x))
        half = model.half()
        got = stem_and_first_conv(half.stem, half.b1, x.half()).float()
    assert torch.isfinite(got).all()
    torch.testing.assert_close(got, expected, rtol=0, atol=2e-3)
