import numpy as np
import pytest
import torch
from torchmetrics.functional.classification import binary_auroc

from torchgeo_ext.demos.scene import synthetic_anomaly_scene
from torchgeo_ext.models.rx import RX, RXStatistics, rx_scores, whitening_matrix


def auc(scores: torch.Tensor, truth: np.ndarray) -> float:
    # Rank-transform: torchmetrics squashes scores outside [0, 1] with a sigmoid.
    values, ranks = torch.unique(scores.flatten(), return_inverse=True)
    probs = ranks.double() / max(len(values) - 1, 1)
    return float(binary_auroc(probs, torch.from_numpy(truth).flatten().long()))


def test_rx_matches_mahalanobis() -> None:
    gen = torch.Generator().manual_seed(0)
    cube = torch.randn(5, 12, 10, generator=gen, dtype=torch.float64) * 3 + 7
    pixels = cube.reshape(5, -1).T
    mean = pixels.mean(0)
    inv = torch.linalg.inv(torch.cov(pixels.T))
    centred = pixels - mean
    expected = ((centred @ inv) * centred).sum(1).reshape(12, 10)
    scores = rx_scores(cube, regularization=0)
    torch.testing.assert_close(scores.double(), expected, rtol=1e-4, atol=1e-4)


def test_rx_finds_subpixel_anomalies() -> None:
    cube, truth = synthetic_anomaly_scene(64, 30, abundance=(0.1, 0.3), targets=6)
    assert auc(rx_scores(cube), truth) > 0.95


def test_streamed_statistics_equal_in_memory() -> None:
    gen = torch.Generator().manual_seed(1)
    pixels = torch.randn(1000, 7, generator=gen, dtype=torch.float64) * 100 + 1e4
    stats = RXStatistics(7)
    for chunk in pixels.split([1, 300, 0, 2, 697]):
        stats.update(chunk)
    assert stats.count == 1000
    torch.testing.assert_close(stats.mean, pixels.mean(0))
    torch.testing.assert_close(stats.covariance, torch.cov(pixels.T))


def test_degenerate_covariance() -> None:
    cube = torch.rand(4, 8, 8)
    cube[3] = cube[0] * 2  # collinear band
    cube[2] = 5.0  # constant band
    scores = rx_scores(cube)
    assert torch.isfinite(scores).all()
    assert whitening_matrix(torch.zeros(3, 3)).abs().sum() == 0


def test_rx_band_mismatch() -> None:
    detector = RX.fit(torch.rand(3, 4, 4))
    with pytest.raises(ValueError, match='3 bands'):
        detector(torch.rand(1, 4, 4, 4))


def test_rx_stable_over_many_orders_of_magnitude() -> None:
    # bands scaled from 1e-6 to 1e6: the covariance spans 24 orders of magnitude
    rng = np.random.default_rng(0)
    base = rng.standard_normal((6, 30, 30))
    base[:, 10, 10] += 6.0  # an anomaly in every band
    scales = np.logspace(-6, 6, 6)[:, None, None]
    scaled = base * scales
    # RX is invariant to band scaling, and so is the per-band ridge
    torch.testing.assert_close(rx_scores(scaled), rx_scores(base), rtol=1e-4, atol=1e-4)
    # an anomaly only in the faintest band is still found
    faint = base.copy()
    faint[0, 20, 20] += 8.0
    scores = rx_scores(faint * scales)
    assert int(torch.argmax(scores.nan_to_num(0))) in (10 * 30 + 10, 20 * 30 + 20)
    assert float(scores[20, 20]) > float(np.quantile(scores.numpy(), 0.99))


def test_rx_projection_is_float64() -> None:
    # a large offset and a tiny spread: float32 centring/projection would cancel
    rng = np.random.default_rng(1)
    cube = 1e4 + 1e-3 * rng.standard_normal((4, 20, 20))
    expected = rx_scores(cube - 1e4)
    torch.testing.assert_close(rx_scores(cube), expected, rtol=1e-3, atol=1e-3)
