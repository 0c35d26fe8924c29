"""Tests for the patch-classification losses."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from torchgeo_ext.losses.classification import (
    distillation_loss,
    gaussian_mutual_information,
    information_aggregation_loss,
    mivit_class_weights,
    reconstruction_loss,
    softmax_focal_loss,
)


def test_focal_loss() -> None:
    logits = torch.randn(8, 5)
    target = torch.randint(0, 5, (8,))
    torch.testing.assert_close(
        softmax_focal_loss(logits, target, gamma=0.0), F.cross_entropy(logits, target)
    )
    # Focusing lowers the loss of well-classified samples most.
    assert softmax_focal_loss(logits, target, 2.0) < F.cross_entropy(logits, target)
    weight = torch.rand(5)
    expected = (
        F.cross_entropy(logits, target, reduction='none') * weight[target]
    ).mean()
    torch.testing.assert_close(
        softmax_focal_loss(logits, target, 0.0, weight), expected
    )
    ignored = torch.full_like(target, -100)
    assert float(softmax_focal_loss(logits, ignored)) == 0.0


def test_mivit_class_weights() -> None:
    weights = mivit_class_weights([10, 30, 80, 0])
    # Mean count 30: (30 - 10) / 10 = 2; others clamp to 1.
    assert weights.tolist() == [2.0, 1.0, 1.0, 1.0]


def test_distillation() -> None:
    a = torch.randn(4, 3)
    assert float(distillation_loss(a, a)) == pytest.approx(0.0, abs=1e-6)
    assert float(distillation_loss(a, -a)) > 0.1


def test_reconstruction() -> None:
    x = torch.rand(2, 3, 4, 4)
    assert float(reconstruction_loss([x, x], [x, x + 1])) == pytest.approx(0.5)
    with pytest.raises(ValueError, match='reconstructions'):
        reconstruction_loss([x], [])


def test_gaussian_mutual_information() -> None:
    g = torch.Generator().manual_seed(0)
    a = torch.randn(512, 4, generator=g)
    independent = torch.randn(512, 4, generator=g)
    noisy = a + 0.1 * torch.randn(512, 4, generator=g)
    low = float(gaussian_mutual_information(a, independent))
    high = float(gaussian_mutual_information(a, noisy))
    assert abs(low) < 0.1
    assert high > 2.0
    # Closed form for one correlated pair: -0.5 log(1 - rho^2).
    x = torch.randn(4096, 1, generator=g)
    y = 0.6 * x + 0.8 * torch.randn(4096, 1, generator=g)
    expected = -0.5 * torch.log(torch.tensor(1 - 0.36))
    mi = gaussian_mutual_information(x, y, eps=0.0)
    assert float(mi) == pytest.approx(float(expected), abs=0.03)


def test_information_aggregation_prefers_complementary_fusion() -> None:
    g = torch.Generator().manual_seed(0)
    z1, z2 = torch.randn(256, 3, generator=g), torch.randn(256, 3, generator=g)
    complementary = torch.cat([z1, z2], dim=1)
    unrelated = torch.randn(256, 6, generator=g)
    assert information_aggregation_loss(z1, z2, complementary) < (
        information_aggregation_loss(z1, z2, unrelated)
    )
    redundant = z1 + 0.01 * torch.randn(256, 3, generator=g)
    assert information_aggregation_loss(z1, redundant, unrelated) > (
        information_aggregation_loss(z1, z2, unrelated)
    )
