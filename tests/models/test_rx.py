import numpy as np
import pytest
import torch
from torchmetrics.functional.classification import binary_auroc

from torchgeo_ext.demo_scene import synthetic_anomaly_scene
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
