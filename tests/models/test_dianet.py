from typing import Any

import pytest
import torch
from torch import nn

from torchgeo_ext.models.api import get_model
from torchgeo_ext.models.dianet import (
    DIANet,
    InteractiveAttention,
    PatchNonLocal,
    SoftmaxChannelGate,
    dianet_w8,
    dianet_w48,
)


def count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize('size', [(100, 100), (32, 32), (17, 23), (41, 64)])
def test_output_shape(size: tuple[int, int]) -> None:
    model = dianet_w8().eval()
    with torch.no_grad():
        out = model(torch.rand(2, 14, *size))
    assert out.shape == (2, 11, *size)
    assert torch.isfinite(out).all()


def test_custom_bands_and_classes() -> None:
    model = DIANet(
        width=4,
        in_channels=3,
        num_classes=5,
        layer1_planes=4,
        num_blocks=1,
        num_modules=(1, 1, 1),
    ).eval()
    with torch.no_grad():
        assert model(torch.rand(1, 3, 20, 20)).shape == (1, 5, 20, 20)


def test_paper_configuration() -> None:
    model: Any = dianet_w48()
    # Branch widths 48/96/192/384 fused to 720 channels; first layer 14 -> 256.
    assert model.attention.channels == 720
    assert model.layer1[0].body[0].in_channels == 14
    assert model.layer1[-1].body[-1].num_features == 256
    assert model.attention.channel_gate.mlp[0].out_channels == 3  # 48 / 16
    assert model.head[-1].out_channels == 11
    assert [len(stage) for stage in model.stages] == [1, 4, 3]
    # HRNetV2-W48 segmentation has ~65.9M parameters; without its stem, with
    # 14 input bands and the attention module, DIAnet-W48 has ~66.8M.
    assert 66_000_000 < count(model) < 68_000_000


def test_builders_by_name() -> None:
    small = count(get_model('dianet_w8'))
    medium = count(get_model('dianet_w18'))
    assert small < medium < 15_000_000
    assert isinstance(get_model('dianet_w8'), DIANet)


def test_full_resolution_high_branch() -> None:
    model = dianet_w8().eval()
    with torch.no_grad():
        features = model.features(torch.rand(1, 14, 33, 40))
    assert [f.shape[-2:] for f in features] == [(33, 40), (17, 20), (9, 10), (5, 5)]
    assert [f.shape[1] for f in features] == [8, 16, 32, 64]


def test_channel_gate() -> None:
    gate: Any = SoftmaxChannelGate(32, reduction=16)
    assert gate.mlp[0].out_channels == 2
    x = torch.rand(2, 32, 7, 9)
    g = gate.gates(x)
    assert g.shape == (2, 32, 1, 1)
    assert ((g > 0) & (g < 1)).all()
    torch.testing.assert_close(gate(x), x * g)
    # Softmax-weighted pooling: a constant map pools to that constant whatever
    # the position scores, so the gates only depend on the channel values.
    const = torch.ones(1, 32, 5, 5) * torch.arange(32.0).view(1, 32, 1, 1)
    with torch.no_grad():
        gate.score.weight.normal_()
    expected = torch.sigmoid(gate.mlp(torch.arange(32.0).view(1, 32, 1, 1)))
    torch.testing.assert_close(gate.gates(const), expected)


def test_patch_non_local_is_local_to_quadrants() -> None:
    block: Any = PatchNonLocal(6, splits=2)
    with torch.no_grad():
        block.out[1].weight.fill_(1.0)  # leave the identity initialisation
    block.eval()
    x = torch.rand(1, 6, 10, 11)
    base = block(x)
    assert base.shape == x.shape
    changed = x.clone()
    changed[..., 0, 0] += 5.0  # top-left quadrant (rows 0-4, columns 0-4)
    diff = (block(changed) - base).abs().sum(dim=1)[0]
    assert diff[:5, :5].max() > 0
    assert diff[5:, :].max() == 0
    assert diff[:, 5:].max() == 0


def test_patch_non_local_starts_as_identity() -> None:
    block = PatchNonLocal(8).eval()
    x = torch.rand(2, 8, 6, 6)
    torch.testing.assert_close(block(x), x)


def test_patch_non_local_matches_explicit_attention() -> None:
    block: Any = PatchNonLocal(4, inter_channels=2, splits=1)
    with torch.no_grad():
        block.out[1].weight.fill_(1.0)
    block.eval()
    x = torch.rand(1, 4, 3, 3)
    theta = block.theta(x).flatten(2)[0].T
    phi = block.phi(x).flatten(2)[0]
    g = block.g(x).flatten(2)[0].T
    y = (torch.softmax(theta @ phi, dim=-1) @ g).T.reshape(1, 2, 3, 3)
    torch.testing.assert_close(block(x), x + block.out(y))


def test_interactive_attention() -> None:
    iam = InteractiveAttention([4, 8, 16, 32]).eval()
    xs = [torch.rand(1, 4 * 2**k, (15 + 2**k - 1) // 2**k, 10) for k in range(4)]
    out = iam(xs)
    assert out.shape == (1, 60, 15, 10)


def test_backward() -> None:
    model = dianet_w8()
    out = model(torch.rand(2, 14, 24, 24))
    out.mean().backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)


def test_attention_channels() -> None:
    model: Any = dianet_w8(attention_channels=8)
    assert model.attention.non_local.theta.out_channels == 8
    assert dianet_w8().attention.non_local.inter_channels == 60  # 15 * 8 / 2
    with torch.no_grad():
        assert model.eval()(torch.rand(1, 14, 20, 20)).shape == (1, 11, 20, 20)
