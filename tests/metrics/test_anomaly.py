import math

import numpy as np
import pytest
import torch

from torchgeo_ext.metrics.anomaly import (
    anomaly_metrics,
    auc_d_f,
    auc_d_f_thresholds,
    auc_tau,
    rank_normalise,
)


def test_auc_perfect_and_inverted() -> None:
    target = torch.tensor([0, 0, 1, 0, 1])
    scores = torch.tensor([1.0, 2.0, 1e6, 3.0, 5e5])  # large values: no sigmoid ties
    assert auc_d_f(scores, target) == pytest.approx(1.0)
    assert auc_d_f(-scores, target) == pytest.approx(0.0)


def test_auc_hand_computed_with_ties() -> None:
    target = torch.tensor([1, 0, 1, 0])
    scores = torch.tensor([3.0, 2.0, 2.0, 1.0])
    # pairs (a, b): (3>2)=1, (3>1)=1, (2=2)=0.5, (2>1)=1 -> 3.5 / 4
    assert auc_d_f(scores, target) == pytest.approx(0.875)


def test_nan_and_valid_ignored() -> None:
    target = torch.tensor([1, 0, 0, 0])
    scores = torch.tensor([5.0, float('nan'), 1.0, 9.0])
    valid = torch.tensor([True, True, True, False])
    assert auc_d_f(scores, target, valid) == pytest.approx(1.0)


def test_auc_tau_is_mean_normalised_score() -> None:
    target = torch.tensor([1, 0, 0, 1])
    scores = torch.tensor([10.0, 0.0, 5.0, 8.0])
    d, f = auc_tau(scores, target)
    assert d == pytest.approx((1.0 + 0.8) / 2)
    assert f == pytest.approx(0.25)
    # numerically integrating P_F(tau) over tau gives the same area
    taus = torch.linspace(0, 1, 100001)
    norm = scores / 10
    pf = (norm[target == 0][None] > taus[:, None]).float().mean(1)
    assert float(torch.trapezoid(pf, taus)) == pytest.approx(f, abs=1e-3)


def test_anomaly_metrics() -> None:
    target = torch.tensor([1, 0, 0, 1])
    scores = torch.tensor([10.0, 0.0, 5.0, 8.0])
    m = anomaly_metrics(scores, target)
    assert m['auc_df'] == pytest.approx(1.0)
    assert m['auc_df_30k'] == pytest.approx(1.0)
    assert m['auc_bs'] == pytest.approx(1.0 - 0.25)
    assert m['auc_snpr'] == pytest.approx(0.9 / 0.25)
    assert m['auc_odp'] == pytest.approx(1.0 + 0.9 - 0.25)
    assert all(math.isfinite(v) for v in m.values())


def test_one_class_raises() -> None:
    with pytest.raises(ValueError, match='both'):
        auc_d_f(torch.rand(4), torch.zeros(4))


def test_rank_normalise() -> None:
    ranks = rank_normalise(torch.tensor([5.0, 1.0, 5.0, 3.0]))
    torch.testing.assert_close(
        ranks, torch.tensor([1.0, 0.0, 1.0, 0.5], dtype=torch.float64)
    )


def _authors_auc(target: np.ndarray, predicted: np.ndarray, num: int) -> float:
    """A literal loop over thresholds, as the BSDM/STAD authors' evaluation."""
    predicted = (predicted - predicted.min()) / (predicted.max() - predicted.min())
    taus = np.linspace(0, predicted.max(), num)
    pf = np.array([((predicted >= t) & (target == 0)).mean() for t in taus])
    pd = np.array([((predicted >= t) & (target == 1)).mean() for t in taus])
    pf, pd = pf / (target == 0).mean(), pd / (target == 1).mean()
    return float(np.sum((pf[:-1] - pf[1:]) * (pd[1:] + pd[:-1]) / 2))


def test_auc_thresholds_matches_the_authors_loop() -> None:
    rng = np.random.default_rng(0)
    target = (rng.random(400) < 0.1).astype(int)
    scores = rng.standard_normal(400) ** 4 + 0.5 * target  # heavy-tailed
    for num in (7, 300):
        assert auc_d_f_thresholds(scores, target, thresholds=num) == pytest.approx(
            _authors_auc(target, scores, num), abs=1e-12
        )
    # with few thresholds the tied low scores are not resolved: it differs from rank AUC
    assert (
        abs(auc_d_f_thresholds(scores, target, thresholds=7) - auc_d_f(scores, target))
        > 0.01
    )
    # on well-spread scores 30,000 thresholds resolve every pair: the two agree
    spread = rng.random(400) + 0.3 * target
    assert auc_d_f_thresholds(spread, target) == pytest.approx(
        auc_d_f(spread, target), abs=1e-3
    )
