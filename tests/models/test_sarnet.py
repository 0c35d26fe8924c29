"""Tests of SAR-Net in torchgeo_ext.models.sarnet."""

import pytest
import torch
from torch import nn

from torchgeo_ext.models import obb_detector, superyolo
from torchgeo_ext.models.api import get_model, list_models
from torchgeo_ext.models.complexity import count_parameters
from torchgeo_ext.models.sarnet import (
    DirectionAwareAttention,
    SARNet,
    SARNetOBB,
    UnifiedCompensation,
    resize_to,
    sarnet_n,
    sarnet_n_obb,
)


def _anchors(h: int, w: int) -> int:
    # Grid cells of the three levels of an image padded to multiples of 32.
    h, w = -(-h // 32) * 32, -(-w // 32) * 32
    return sum((h // s) * (w // s) for s in (8, 16, 32))


def test_registry_builds_every_sarnet() -> None:
    names = {'sarnet_n', 'sarnet_s', 'sarnet_n_obb', 'sarnet_s_obb'}
    assert names <= set(list_models())
    for name in names:
        model = get_model(name, num_classes=2)
        assert isinstance(model, SARNetOBB if name.endswith('_obb') else SARNet)
        assert model.bands == [0]
    small = count_parameters(get_model('sarnet_s', num_classes=2))
    assert small > 3 * count_parameters(get_model('sarnet_n', num_classes=2))


def test_parameter_counts_at_the_ship_configuration() -> None:
    # One class (ship), one band; the numbers of docs/models/sarnet.md.
    assert count_parameters(sarnet_n(num_classes=1)) == 2_998_086
    assert count_parameters(sarnet_n_obb(num_classes=1)) == 3_813_126


def test_axis_aligned_outputs_and_decoding() -> None:
    model = sarnet_n(num_classes=3).train()
    raw, sr = model.forward_raw(torch.randn(2, 1, 100, 130))
    assert sr is None
    assert [r.shape for r in raw] == [
        (2, 3, 16, 20, 8),
        (2, 3, 8, 10, 8),
        (2, 3, 4, 5, 8),
    ]
    model.eval()
    with torch.no_grad():
        decoded = model(torch.randn(2, 1, 100, 130))
    assert decoded.shape == (2, 3 * _anchors(100, 130), 8)
    assert ((decoded[..., 4:] >= 0) & (decoded[..., 4:] <= 1)).all()
    results = superyolo.postprocess(decoded, score_threshold=0.0, max_detections=5)
    assert len(results) == 2
    assert all(r['boxes'].shape[1] == 4 and len(r['boxes']) <= 5 for r in results)


def test_oriented_outputs_and_decoding() -> None:
    model = sarnet_n_obb(num_classes=2).eval()
    with torch.no_grad():
        out = model(torch.randn(2, 1, 100, 130))
    anchors = _anchors(100, 130)
    assert out.distri.shape == (2, anchors, 64)
    assert out.scores.shape == (2, anchors, 2)
    assert out.angle.shape == (2, anchors, 1)
    results = obb_detector.postprocess(out, 16, score_threshold=0.0, max_detections=4)
    assert all(r['prediction_bbox'].shape[1] == 8 for r in results)
    assert all(len(r['prediction_bbox']) <= 4 for r in results)


def test_gradients_reach_both_modules() -> None:
    torch.manual_seed(0)
    model = sarnet_n_obb(num_classes=1).train()
    out = model(torch.randn(2, 1, 64, 64))
    (out.scores.sum() + out.distri.pow(2).mean() + out.angle.sum()).backward()
    for part in ('body.ucm', 'body.dam'):
        params = [(n, p) for n, p in model.named_parameters() if n.startswith(part)]
        assert params
        grads = []
        for name, p in params:
            assert p.grad is not None, name
            assert torch.isfinite(p.grad).all(), name
            grads.append(float(p.grad.abs().sum()))
        assert sum(grads) > 0


@pytest.mark.parametrize('module', ['ucm', 'dam'])
def test_each_module_changes_the_output(module: str) -> None:
    # Training mode: batch statistics (at initialisation the running statistics
    # of eval mode shrink every feature towards nothing and leave the biases).
    torch.manual_seed(0)
    model = sarnet_n(num_classes=1).train()
    x = torch.randn(2, 1, 64, 64)
    with torch.no_grad():
        full, _ = model.forward_raw(x)
        setattr(model.body, module, None)  # the same weights without the module
        without, _ = model.forward_raw(x)
    for a, b in zip(full, without, strict=True):
        assert a.shape == b.shape
        # Every level moves by a sizeable fraction of its range.
        assert (a - b).abs().amax() > 0.05 * a.abs().amax()


def test_ablation_flags_leave_the_modules_out() -> None:
    full = sarnet_n(num_classes=1)
    bare = sarnet_n(num_classes=1, ucm=False, dam=False)
    assert bare.body.ucm is None
    assert bare.body.dam is None
    assert full.body.ucm is not None
    assert full.body.dam is not None
    extra = count_parameters(full) - count_parameters(bare)
    assert extra == count_parameters(full.body.ucm) + count_parameters(full.body.dam)


def test_dam_orders_differ_and_are_transpose_symmetric() -> None:
    torch.manual_seed(0)
    dam = DirectionAwareAttention(16).eval()
    for gate in (dam.rows, dam.cols):
        nn.init.normal_(gate.expand.weight, std=0.5)
    x = torch.randn(2, 16, 12, 9)
    with torch.no_grad():
        rows_first = dam.attend_cols(dam.attend_rows(x))
        cols_first = dam.attend_rows(dam.attend_cols(x))
        assert not torch.allclose(rows_first, cols_first, atol=1e-5)
        y = dam(x)
        # Swapping the row and column gates (and so the two orders' places in
        # the fusion) and transposing the input gives the transposed output:
        # the module treats both directions alike.
        dam.rows, dam.cols = dam.cols, dam.rows
        weight = dam.fuse.conv.weight
        weight.copy_(torch.cat((weight[:, 16:], weight[:, :16]), dim=1))
        y_t = dam(x.transpose(2, 3))
    torch.testing.assert_close(y_t, y.transpose(2, 3), atol=1e-5, rtol=1e-5)


def test_dam_weights_follow_row_content() -> None:
    # A bright row (a ship's strong scatterer) changes the weights of that row
    # only, in the rows-only attention.
    torch.manual_seed(0)
    dam = DirectionAwareAttention(8).eval()
    x = torch.rand(1, 8, 10, 10)
    bright = x.clone()
    bright[:, :, 4] += 5.0
    with torch.no_grad():
        w = dam.rows(x.mean(3) + x.amax(3))
        w_bright = dam.rows(bright.mean(3) + bright.amax(3))
    changed = (w - w_bright).abs().amax(dim=1)[0] > 1e-6
    # The gate's depthwise kernel (7) spreads the change over neighbouring rows only.
    assert changed[4]
    assert not changed[[0, 8, 9]].any()


def test_ucm_feeds_global_context_back_to_every_branch() -> None:
    torch.manual_seed(0)
    channels = (4, 8, 16, 32)
    ucm = UnifiedCompensation(channels, (1, 2, 3), 2, 16).eval()
    feats = [torch.randn(1, c, 32 // 2**i, 32 // 2**i) for i, c in enumerate(channels)]
    with torch.no_grad():
        out = ucm(feats)
        assert [o.shape for o in out] == [f.shape for f in feats[1:]]
        # A change in one corner of the finest level (which is not a branch)
        # reaches every position of every branch, the far corner included.
        changed = [f.clone() for f in feats]
        changed[0][..., :2, :2] += 3.0
        out2 = ucm(changed)
    for a, b in zip(out, out2, strict=True):
        assert ((a - b).abs().amax(dim=1) > 0).all()


def test_resize_to_pools_down_and_interpolates_up() -> None:
    x = torch.arange(16.0).view(1, 1, 4, 4)
    down = resize_to(x, (2, 2))
    torch.testing.assert_close(down, torch.tensor([[[[2.5, 4.5], [10.5, 12.5]]]]))
    assert resize_to(x, (8, 8)).shape == (1, 1, 8, 8)
    assert resize_to(x, (4, 4)) is x
