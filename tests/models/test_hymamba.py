"""Tests for the HyMamba tracker."""

from __future__ import annotations

import pytest
import torch

from torchgeo_ext.models.api import get_model
from torchgeo_ext.models.complexity import count_parameters
from torchgeo_ext.models.hyat import hyat_tiny
from torchgeo_ext.models.hymamba import (
    HyMambaTracker,
    HyperspectralMamba,
    SpectralScan,
    SpectralStateIntegration,
    hymamba_tiny,
)


def _crops(bands: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return torch.rand(2, 3 + bands, 32, 32, generator=g), torch.rand(
        2, 3 + bands, 64, 64, generator=g
    )


def test_outputs() -> None:
    torch.manual_seed(0)
    model = get_model('hymamba_tiny', hsi_bands=16)
    assert isinstance(model, HyMambaTracker)
    template, search = _crops()
    out = model(template, search)
    assert out['score'].shape == (2, 1, 8, 8)
    assert out['bbox_xyxy'].shape == (2, 4)
    assert len(model.ssi) == 2
    assert not hasattr(model, 'spectral_embed')


def test_fresh_model_is_its_backbone() -> None:
    # SSI outputs and adapters start at zero: same output as HyA-T with the
    # same backbone and head weights.
    torch.manual_seed(0)
    hymamba = hymamba_tiny().eval()
    hyat = hyat_tiny().eval()
    state = {k: v for k, v in hymamba.state_dict().items() if k in hyat.state_dict()}
    hyat.load_state_dict(state, strict=False)
    missing = set(hyat.state_dict()) - set(state)
    assert missing == {'spectral_embed.weight', 'spectral_embed.bias'}
    template, search = _crops()
    a, b = hymamba(template, search), hyat(template, search)
    torch.testing.assert_close(a['score'], b['score'])


def test_spectral_state_reaches_output_after_training_step() -> None:
    torch.manual_seed(0)
    model = hymamba_tiny()
    model.freeze_backbone()
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert any(n.startswith('ssi.') for n in trainable)
    assert any(n.startswith('spectral_scan.') for n in trainable)
    assert not any(n.startswith('patch_embed.') for n in trainable)
    template, search = _crops()
    model(template, search)['score'].sum().backward()
    ssi = model.ssi[0]
    assert isinstance(ssi, SpectralStateIntegration)
    give = ssi.give.weight.grad
    assert give is not None
    assert give.abs().sum() > 0


def test_spectral_scan_depends_on_band_order() -> None:
    torch.manual_seed(0)
    scan = SpectralScan(4, 8, d_state=2)
    x = torch.rand(1, 5, 8, 8)
    y = scan(x)
    assert y.shape == (1, 4, 8)
    assert not torch.allclose(y, scan(x.flip(1)))


def test_hsm_vertical_order() -> None:
    torch.manual_seed(0)
    hsm = HyperspectralMamba(8, d_state=2, groups=2)
    s = torch.rand(1, 4 + 9, 8)
    out = hsm(s, (2, 3))
    assert out.shape == s.shape
    # Causal scans: the first template token sees only itself in every order.
    s2 = s.clone()
    s2[:, 1:] = torch.rand(1, 12, 8)
    torch.testing.assert_close(hsm(s2, (2, 3))[:, 0], out[:, 0])
    with pytest.raises(ValueError, match='groups'):
        HyperspectralMamba(6, groups=4)


@pytest.mark.slow
def test_base_size() -> None:
    # ViT-B/16 backbone (about 86M parameters) plus the HyA-T and HyMamba parts.
    model = get_model('hymamba_base', hsi_bands=16)
    hyat = get_model('hyat_base', hsi_bands=16)
    extra = count_parameters(model) - count_parameters(hyat)
    assert 15e6 < extra < 25e6  # 19.0M measured: 4 SSI + the spectral scan
