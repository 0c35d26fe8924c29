import numpy as np
import pytest
import torch
from torchmetrics.functional.classification import binary_auroc

from torchgeo_ext.demos.scene import synthetic_anomaly_scene
from torchgeo_ext.models.local_anomaly import (
    crd_scores,
    lrx_scores,
    ring_members,
    ring_offsets,
)


def auc(scores: torch.Tensor, truth: np.ndarray) -> float:
    values, ranks = torch.unique(scores.flatten(), return_inverse=True)
    probs = ranks.double() / max(len(values) - 1, 1)
    return float(binary_auroc(probs, torch.from_numpy(truth).flatten().long()))


def naive(
    x: torch.Tensor, valid: torch.Tensor, inner: int, outer: int, kind: str, reg: float
) -> np.ndarray:
    """Per-pixel reference: explicit truncated ring, explicit covariance / CRD solve."""
    c, h, w = x.shape
    out = np.full((h, w), np.nan)
    scale = float(x.reshape(c, -1)[:, valid.reshape(-1)].var(dim=1).mean())
    ro, ri = outer // 2, inner // 2
    for r in range(h):
        for q in range(w):
            if not valid[r, q]:
                continue
            ring = [
                x[:, r + dy, q + dx]
                for dy in range(-ro, ro + 1)
                for dx in range(-ro, ro + 1)
                if max(abs(dy), abs(dx)) > ri
                and 0 <= r + dy < h
                and 0 <= q + dx < w
                and valid[r + dy, q + dx]
            ]
            ring_x = torch.stack(ring)
            y = x[:, r, q]
            if kind == 'lrx':
                m = ring_x.mean(0)
                cov = torch.cov(ring_x.T) + reg * scale * torch.eye(c, dtype=x.dtype)
                out[r, q] = float((y - m) @ torch.linalg.solve(cov, y - m))
            else:
                gamma = torch.diag(((ring_x - y) ** 2).sum(1))
                alpha = torch.linalg.solve(ring_x @ ring_x.T + reg * gamma, ring_x @ y)
                out[r, q] = float(torch.linalg.norm(y - ring_x.T @ alpha))
    return out


def test_ring_offsets() -> None:
    offsets = ring_offsets(3, 7)
    assert offsets.shape == (49 - 9, 2)
    assert (offsets.abs().amax(dim=1) > 1).all()
    assert offsets.abs().max() == 3
    with pytest.raises(ValueError, match='odd'):
        ring_offsets(4, 7)
    with pytest.raises(ValueError, match='outer > inner'):
        ring_offsets(5, 5)


def test_ring_truncated_at_borders() -> None:
    valid = torch.ones(10, 12, dtype=torch.bool)
    offsets = ring_offsets(3, 7)
    rows = torch.tensor([0, 0, 5, 9, 5])
    cols = torch.tensor([0, 6, 6, 11, 0])
    counts = ring_members(rows, cols, valid, offsets).sum(dim=1)
    # corner: 4 x 4 quadrant minus the 2 x 2 guard part; top edge: 4 x 7 minus 2 x 3.
    assert counts.tolist() == [16 - 4, 28 - 6, 40, 16 - 4, 28 - 6]
    valid[5, 4] = False  # a nodata pixel inside the ring of (5, 6)
    assert ring_members(rows[2:3], cols[2:3], valid, offsets).sum() == 39


@pytest.mark.parametrize('kind', ['lrx', 'crd'])
def test_matches_per_pixel_reference(kind: str) -> None:
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(6, 11, 9, generator=gen, dtype=torch.float64) + 0.5
    valid = torch.ones(11, 9, dtype=torch.bool)
    valid[4, 5] = False
    fn = lrx_scores if kind == 'lrx' else crd_scores
    reg = 1e-2 if kind == 'lrx' else 1e-1
    scores = (
        fn(x, inner=3, outer=7, regularization=reg, valid_mask=valid).double().numpy()
    )
    expected = naive(x, valid, 3, 7, kind, reg)
    np.testing.assert_allclose(scores, expected, rtol=1e-4)
    assert np.isnan(scores[4, 5])


@pytest.mark.parametrize('fn', [lrx_scores, crd_scores])
def test_finds_subpixel_anomalies(fn: object) -> None:
    cube, truth = synthetic_anomaly_scene(32, 20, abundance=(0.1, 0.3), targets=4)
    scores = fn(cube)  # type: ignore[operator]
    assert scores.shape == (32, 32)
    assert torch.isfinite(scores).all()
    assert auc(scores, truth) > 0.9


def test_any_band_count() -> None:
    for bands in (3, 50):
        cube, _ = synthetic_anomaly_scene(16, bands, targets=2)
        assert lrx_scores(cube).shape == (16, 16)
        assert crd_scores(cube, inner=3, outer=5).shape == (16, 16)
