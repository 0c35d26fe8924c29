"""Tests for FedFusion: the model, its low-rank feature exchange and its loss."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from torchgeo_ext.losses.fedfusion import fedfusion_loss
from torchgeo_ext.models.api import get_model
from torchgeo_ext.models.fedfusion import FedFusion, compress_features


def test_outputs_on_7x7_patches() -> None:
    torch.manual_seed(0)
    model = get_model('fedfusion_tiny', hsi_bands=10, lidar_bands=2, num_classes=5)
    assert isinstance(model, FedFusion)
    x = torch.rand(6, 12, 7, 7)
    out = model(x)
    assert set(out) == {'logits', 'hsi_logits', 'lidar_logits'}
    assert all(v.shape == (6, 5) for v in out.values())
    parts = model.split(x)
    assert parts['hsi'].shape[1] == 10
    assert parts['lidar'].shape[1] == 2
    # The paper's encoder: 7 x 7 -> 4 x 4 maps of 4 x width channels.
    assert model.encode('lidar', parts['lidar']).shape == (6, 16, 4, 4)


def test_paper_width() -> None:
    model = get_model('fedfusion', hsi_bands=144, lidar_bands=1, num_classes=15)
    features = model.encode('hsi', torch.rand(2, 144, 7, 7))
    assert features.shape == (2, 64, 4, 4)


def test_compression_is_the_best_rank_r_approximation() -> None:
    torch.manual_seed(0)
    features = torch.randn(8, 16, 4, 4)
    low = compress_features(features, rank=4)
    assert low.u.shape == (8 * 16, 4)
    assert low.s.shape == (4,)
    assert low.v.shape == (16, 4)
    assert low.rank == 4
    assert low.nbytes == 4 * (8 * 16 * 4 + 4 + 16 * 4)
    # Eckart-Young: the squared error is the energy of the dropped singular values.
    s_all = torch.linalg.svdvals(features.reshape(8 * 16, 16))
    error = (low.reconstruct() - features).pow(2).sum()
    torch.testing.assert_close(error, s_all[4:].pow(2).sum(), rtol=1e-4, atol=1e-4)
    full = compress_features(features, rank=16)
    torch.testing.assert_close(full.reconstruct(), features, rtol=1e-4, atol=1e-4)
    # A rank beyond the matrix's is clamped to it.
    assert compress_features(features, rank=100).rank == 16


def test_rank_4_sends_about_4x_fewer_bytes() -> None:
    features = torch.rand(64, 64, 4, 4)
    low = compress_features(features, rank=4)
    ratio = features.numel() * features.element_size() / low.nbytes
    assert 3.9 < ratio < 4.0  # (h*w) / rank, less the s and v factors


def test_compression_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match='rank must be positive'):
        compress_features(torch.rand(2, 3, 4, 4), rank=0)
    with pytest.raises(ValueError, match='B x C x h x w'):
        compress_features(torch.rand(3, 4, 4), rank=2)


def test_exchange_rank_passes_lidar_through_the_svd() -> None:
    torch.manual_seed(0)
    model = get_model(
        'fedfusion_tiny', hsi_bands=4, lidar_bands=1, num_classes=3
    ).eval()
    x = torch.rand(5, 5, 7, 7)
    with torch.no_grad():
        plain = model(x)['logits']
        model.exchange_rank = 16  # full rank of a 4 x 4 map: lossless
        lossless = model(x)['logits']
        model.exchange_rank = 1
        lossy = model(x)['logits']
    torch.testing.assert_close(lossless, plain, rtol=1e-4, atol=1e-4)
    assert not torch.allclose(lossy, plain, atol=1e-4)


def test_shared_layers_are_fusion_and_head_only() -> None:
    model = get_model('fedfusion_tiny', hsi_bands=4, lidar_bands=1, num_classes=3)
    names = list(model.state_dict())
    shared = {n for n in names if model.is_shared(n)}
    assert shared
    assert all(n.startswith(('cross_a.', 'cross_b.', 'head.')) for n in shared)
    assert not any(n.startswith('encoders.') for n in shared)
    assert not any(n.endswith('num_batches_tracked') for n in shared)
    assert any(n.startswith('encoders.hsi.') for n in names)
    assert any(n.startswith('encoders.lidar.') for n in names)


def test_loss_terms() -> None:
    torch.manual_seed(0)
    logits = torch.randn(4, 3, requires_grad=True)
    target = torch.tensor([0, 1, 2, 1])
    same = {'logits': logits, 'hsi_logits': logits, 'lidar_logits': logits}
    terms = fedfusion_loss(same, target)
    torch.testing.assert_close(terms['ce'], F.cross_entropy(logits, target))
    assert terms['consistency'] == 0
    apart = {**same, 'hsi_logits': logits + 1.0}
    terms = fedfusion_loss(apart, target, consistency_weight=2.0)
    torch.testing.assert_close(terms['consistency'], torch.tensor(1.0))
    torch.testing.assert_close(terms['loss'], terms['ce'] + 2.0)
    terms['loss'].backward()
    assert logits.grad is not None


def test_training_step_reaches_every_layer() -> None:
    torch.manual_seed(0)
    model = get_model('fedfusion_tiny', hsi_bands=4, lidar_bands=1, num_classes=3)
    out = model(torch.rand(8, 5, 7, 7))
    fedfusion_loss(out, torch.randint(0, 3, (8,)))['loss'].backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert not missing
