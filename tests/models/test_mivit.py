"""Tests for MIViT."""

from __future__ import annotations

import pytest
import torch

from torchgeo_ext.models.api import get_model
from torchgeo_ext.models.complexity import count_parameters
from torchgeo_ext.models.mivit import MIViT, OrientedAttentionFusion, centre_crop


def test_outputs() -> None:
    torch.manual_seed(0)
    model = get_model('mivit_tiny', hsi_bands=10, lidar_bands=2, num_classes=4)
    assert isinstance(model, MIViT)
    x = torch.rand(3, 12, 9, 9)
    out = model(x)
    assert out['logits'].shape == (3, 4)
    assert set(out['aux_logits']) == {'hsi', 'lidar', 'cnn'}
    for recon, target, s in zip(
        out['reconstruction'], out['reconstruction_target'], (4, 6, 8), strict=True
    ):
        assert recon.shape == target.shape == (3, 12, s, s)
    assert out['features']['fused'].shape == (3, 16)


def test_centre_crop_keeps_centre_pixel() -> None:
    x = torch.arange(24 * 24.0).reshape(1, 1, 24, 24)
    for size in (8, 16, 24):
        crop = centre_crop(x, size)
        assert crop.shape[-1] == size
        assert crop[0, 0, size // 2, size // 2] == x[0, 0, 12, 12]
    with pytest.raises(ValueError, match='smaller'):
        centre_crop(x, 25)


def test_oaf_gates_across_modalities() -> None:
    torch.manual_seed(0)
    oaf = OrientedAttentionFusion(4).eval()
    a, b = torch.rand(2, 4, 5, 5), torch.rand(2, 4, 5, 5)
    ra, rb, fused = oaf(a, b)
    torch.testing.assert_close(fused, ra + rb)
    # Modality 1's refined map depends on modality 2 (the gates).
    ra2, _, _ = oaf(a, torch.rand(2, 4, 5, 5))
    assert not torch.allclose(ra, ra2)


def test_missing_modality_head_ignores_other_modality() -> None:
    torch.manual_seed(0)
    model = get_model('mivit_tiny', hsi_bands=6, lidar_bands=1, num_classes=3).eval()
    x = torch.rand(2, 7, 8, 8)
    y = x.clone()
    y[:, 6:] = 0
    # The HSI classifier sees the LiDAR only through the OAF gates: it changes,
    # but stays defined; the LiDAR classifier changes too.
    assert torch.isfinite(model(y)['aux_logits']['hsi']).all()


def test_paper_size() -> None:
    # The authors' configuration (dim 64, 5 layers, 4 heads, crops 8/16/24) on
    # Houston2013 (144 + 1 bands, 15 classes); the paper states no size.
    model = get_model('mivit_base', hsi_bands=144, lidar_bands=1, num_classes=15)
    assert 1.0e6 < count_parameters(model) < 1.1e6
