"""Tests of E2E-MFD's fusion loss in torchgeo_ext.losses.fusion."""

import pytest
import torch

from torchgeo_ext.losses.fusion import FusionLoss, laplacian_pyramid
from torchgeo_ext.ops.obb import obb_to_poly


def test_laplacian_pyramid_reconstructs() -> None:
    x = torch.rand(1, 1, 16, 16)
    pyramid = laplacian_pyramid(x, 2)
    assert [p.shape[-1] for p in pyramid] == [16, 8, 4]
    # constant image: no band-pass energy
    flat = laplacian_pyramid(torch.full((1, 1, 16, 16), 0.3), 2)
    assert flat[0][..., 3:-3, 3:-3].abs().max() < 1e-6


def test_fusion_loss_terms() -> None:
    loss = FusionLoss()
    img = torch.rand(2, 1, 32, 32)
    total, parts = loss(img, img, img)
    assert total.item() == pytest.approx(0.0, abs=1e-4)
    polys = [obb_to_poly(torch.tensor([[16.0, 16, 10, 6, 0.5]])), torch.zeros(0, 8)]
    ir = torch.zeros(2, 1, 32, 32)
    visible = torch.ones(2, 1, 32, 32)
    # background should follow IR, objects the brightest/mean of both
    _, bad_parts = loss(visible.clone(), ir, visible, polys)
    _, good_parts = loss(ir.clone(), ir, visible, polys)
    assert good_parts['loss_pixel'] < bad_parts['loss_pixel']
    assert set(parts) == {'loss_ssim', 'loss_grad', 'loss_pixel'}
