"""LRX and CRD against the previous implementation (kept here as the slow reference).

The reference below is the ring-Gram implementation that
``torchgeo_ext.models.local_anomaly`` had before it was rewritten for speed
(issue 26); the rewrite must give the same scores within float tolerance.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import torch
from numpy.typing import NDArray
from torch import Tensor

from torchgeo_ext.demos.scene import synthetic_anomaly_scene
from torchgeo_ext.models.local_anomaly import (
    RingDetector,
    crd_scores,
    lrx_scores,
    ring_members,
    ring_offsets,
)

CHUNK_BYTES = 64 * 2**20

# --- The previous implementation (reference) -------------------------------------------


class _RingGram:
    """Inner products between each pixel and its ring, and within the ring.

    Neighbouring pixels share most of their ring pairs, so instead of
    recomputing ``N^2`` dot products per pixel, the dot products
    ``S_d(a) = <x_a, x_{a+d}>`` are computed once per strip of rows for every
    displacement ``d`` within twice the outer radius, and each pixel's ring
    Gram matrix is gathered from them. Invalid and out-of-image pixels are
    zero, so their products vanish.
    """

    def __init__(self, x: Tensor, valid: Tensor, offsets: Tensor) -> None:
        self.c, self.h, self.w = x.shape
        self.valid = valid
        self.offsets = offsets
        self.radius = int(offsets.abs().max())
        r = self.radius
        padded = torch.nn.functional.pad(x, (3 * r, 3 * r, 3 * r, 3 * r))
        self.last = padded.permute(1, 2, 0).contiguous()  # rows x cols x C
        self.span = 4 * r + 1
        ring_d = offsets[None, :, :] - offsets[:, None, :]  # N x N x 2: o_j - o_i
        self.pair_index = (ring_d[..., 0] + 2 * r) * self.span + (
            ring_d[..., 1] + 2 * r
        )
        self.centre_index = (offsets[:, 0] + 2 * r) * self.span + (
            offsets[:, 1] + 2 * r
        )
        self.zero_index = 2 * r * self.span + 2 * r

    def strips(self, budget: int = CHUNK_BYTES) -> list[tuple[int, int]]:
        r = self.radius
        per_row = self.span**2 * (self.w + 2 * r) * 8
        rows = max(1, budget // per_row - 2 * r)
        # The products of a strip cost (rows + 2r) / rows of its own rows.
        rows = max(rows, 4 * r)
        return [(r0, min(r0 + rows, self.h)) for r0 in range(0, self.h, rows)]

    def products(self, r0: int, r1: int) -> Tensor:
        """``D x Ha x Wa`` dot products of the strip's a-grid with every displacement.

        Computed as batched matrix products of column blocks (one per row
        displacement) from which the needed diagonals are gathered: more
        multiplications than strictly needed, but at matrix-product speed.
        """
        r = self.radius
        span = self.span
        ha, wa = r1 - r0 + 2 * r, self.w + 2 * r
        out = torch.empty(span, span, ha, wa, dtype=self.last.dtype)
        block = 32
        for c0 in range(0, wa, block):
            bw = min(block, wa - c0)
            base = self.last[r0 + 2 * r : r0 + 2 * r + ha, 2 * r + c0 : 2 * r + c0 + bw]
            diagonals = (
                torch.arange(bw)[:, None] + torch.arange(span)[None, :]
            ).expand(ha, bw, span)
            for dy in range(-2 * r, 2 * r + 1):
                rows = slice(r0 + 2 * r + dy, r0 + 2 * r + dy + ha)
                other = self.last[rows, c0 : c0 + bw + 4 * r]
                full = torch.bmm(base, other.transpose(1, 2))  # ha x bw x (bw + 4r)
                picked = full.gather(2, diagonals)  # ha x bw x span (dx = -2r..2r)
                out[dy + 2 * r, :, :, c0 : c0 + bw] = picked.permute(2, 0, 1)
        return out.view(span * span, ha, wa)

    def gather(
        self, products: Tensor, r0: int, rows: Tensor, cols: Tensor
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Ring Gram matrices ``P x N x N``, pixel-ring products ``P x N``, ``|y|^2`` ``P``."""
        r = self.radius
        _, ha, wa = products.shape
        flat = products.reshape(-1)
        plane = ha * wa
        # Flat a-grid index of each centre pixel; ring member i sits at a fixed
        # offset from it. Gathering with the pixels innermost reads memory
        # nearly sequentially (neighbouring pixels, neighbouring products).
        centre = (rows - r0 + r) * wa + cols + r  # P
        shift = self.offsets[:, 0] * wa + self.offsets[:, 1]  # N
        base = self.pair_index * plane + shift[:, None]  # N x N
        gram = flat[base[:, :, None] + centre].permute(2, 0, 1)
        cross = flat[(self.centre_index * plane)[:, None] + centre].T
        norm = flat[self.zero_index * plane + centre]
        return gram, cross, norm


def _ring_loop(
    x: Tensor, valid: Tensor, offsets: Tensor
) -> Iterator[tuple[Tensor, Tensor, Tensor, Tensor, Tensor]]:
    """Chunks of ``(pixels, weights, gram, cross, norm)`` covering the valid pixels."""
    ring = _RingGram(x, valid, offsets)
    n = len(offsets)
    per_pixel = 8 * (2 * n * n + 8 * n)
    size = max(1, CHUNK_BYTES // per_pixel)
    for r0, r1 in ring.strips():
        strip_valid = valid[r0:r1].reshape(-1)
        pix = torch.nonzero(strip_valid).squeeze(1) + r0 * ring.w
        if pix.numel() == 0:
            continue
        products = ring.products(r0, r1)
        for chunk in pix.split(size):
            rows, cols = chunk // ring.w, chunk % ring.w
            weight = ring_members(rows, cols, valid, offsets)
            gram, cross, norm = ring.gather(products, r0, rows, cols)
            yield chunk, weight, gram, cross, norm


def _spd_solve(matrix: Tensor, rhs: Tensor) -> Tensor:
    """Solve batched symmetric positive-definite systems (Cholesky, LU fallback)."""
    factor, info = torch.linalg.cholesky_ex(matrix)
    solution = torch.cholesky_solve(rhs.unsqueeze(-1), factor).squeeze(-1)
    failed = info != 0
    if bool(failed.any()):
        solution[failed] = torch.linalg.solve(matrix[failed], rhs[failed])
    return solution


def _prepare(
    cube: Tensor | NDArray[Any], valid_mask: Tensor | NDArray[Any] | None
) -> tuple[Tensor, Tensor]:
    """A float64 cube with invalid pixels zeroed, and the validity mask."""
    x = torch.as_tensor(cube).to(torch.float64)
    if x.ndim != 3:
        raise ValueError(f'expected a C x H x W cube, got shape {tuple(x.shape)}')
    valid = torch.isfinite(x).all(dim=0)
    if valid_mask is not None:
        valid &= torch.as_tensor(valid_mask, dtype=torch.bool)
    return torch.where(valid[None], x, torch.zeros((), dtype=x.dtype)), valid


def _band_variance(x: Tensor, valid: Tensor) -> float:
    """Mean per-band variance of the valid pixels (sets the ridge scale)."""
    pixels = x.reshape(x.shape[0], -1)[:, valid.reshape(-1)]
    if pixels.shape[1] < 2:
        return 1.0
    scale = float(pixels.var(dim=1).mean())
    return scale if scale > 0 else 1.0


def old_lrx(
    cube: Tensor | NDArray[Any],
    *,
    inner: int = 5,
    outer: int = 9,
    regularization: float = 1e-2,
    valid_mask: Tensor | NDArray[Any] | None = None,
) -> Tensor:
    """Local RX scores with statistics from the guard/outer ring.

    Args:
        cube: ``C x H x W`` scene.
        inner: Guard window side (odd).
        outer: Outer window side (odd, > inner).
        regularization: Ridge added to each ring covariance, relative to the
            scene's mean band variance (rings hold fewer pixels than there
            are bands, so their covariance is singular without it).
        valid_mask: Optional ``H x W`` mask; invalid pixels are left out of
            every ring and score NaN.

    Returns:
        ``H x W`` float32 scores (NaN where invalid or where the ring holds
        fewer than two valid pixels).
    """
    x, valid = _prepare(cube, valid_mask)
    c, h, w = x.shape
    offsets = ring_offsets(inner, outer)
    lam = regularization * _band_variance(x, valid)
    # LRX is translation invariant: removing the scene mean first keeps the
    # centring below free of cancellation.
    mean = x.reshape(c, -1)[:, valid.reshape(-1)].mean(dim=1)
    x = torch.where(
        valid[None], x - mean[:, None, None], torch.zeros((), dtype=x.dtype)
    )
    scores = torch.full((h * w,), float('nan'), dtype=torch.float64)
    for pix, weight, gram, cross, norm in _ring_loop(x, valid, offsets):
        count = weight.sum(dim=1)
        n = count.clamp_min(1)
        # <x_i, m>, <m, m> and <y, m> for the ring mean m, from inner products alone.
        xm = (gram * weight[:, None, :]).sum(dim=2) / n[:, None]
        mm = (xm * weight).sum(dim=1) / n
        ym = (cross * weight).sum(dim=1) / n
        dof = (count - 1).clamp_min(1)
        centred = gram - xm[:, :, None] - xm[:, None, :] + mm[:, None, None]
        centred = centred * weight[:, :, None] * weight[:, None, :] / dof[:, None, None]
        uz = weight * (cross - xm - ym[:, None] + mm[:, None]) / dof.sqrt()[:, None]
        zz = norm - 2 * ym + mm
        centred.diagonal(dim1=1, dim2=2).add_(lam)
        solved = _spd_solve(centred, uz)
        # Woodbury: z^T (lam I + U^T U)^-1 z = (|z|^2 - (Uz)^T (lam I + U U^T)^-1 Uz) / lam
        d = (zz - (uz * solved).sum(dim=1)) / lam
        scores[pix] = torch.where(count >= 2, d, torch.nan)
    return scores.view(h, w).to(torch.float32)


def old_crd(
    cube: Tensor | NDArray[Any],
    *,
    inner: int = 5,
    outer: int = 9,
    regularization: float = 1e-1,
    valid_mask: Tensor | NDArray[Any] | None = None,
) -> Tensor:
    r"""Collaborative-representation detector scores over the guard/outer ring.

    Args:
        cube: ``C x H x W`` scene.
        inner: Guard window side (odd).
        outer: Outer window side (odd, > inner).
        regularization: Weight :math:`\lambda` of the distance-weighted
            Tikhonov term (dimensionless: both terms scale with the data squared).
        valid_mask: Optional ``H x W`` mask; invalid pixels are left out of
            every ring and score NaN.

    Returns:
        ``H x W`` float32 residual norms (NaN where invalid or the ring is empty).
    """
    x, valid = _prepare(cube, valid_mask)
    _, h, w = x.shape
    offsets = ring_offsets(inner, outer)
    scores = torch.full((h * w,), float('nan'), dtype=torch.float64)
    for pix, weight, gram, cross, norm in _ring_loop(x, valid, offsets):
        own = gram.diagonal(dim1=1, dim2=2)  # |x_i|^2
        dist2 = (norm[:, None] + own - 2 * cross).clamp_min(0) * weight
        # Missing ring members get a unit diagonal so their coefficient is 0;
        # a tiny jitter keeps the system definite if a ring pixel equals y.
        jitter = 1e-12 * own.mean(dim=1, keepdim=True).clamp_min(1e-300)
        system = gram + torch.diag_embed(regularization * dist2 + (1 - weight) + jitter)
        alpha = _spd_solve(system, cross)
        fit = (alpha * cross).sum(dim=1)
        quad = torch.einsum('pi,pij,pj->p', alpha, gram, alpha)
        residual = (norm - 2 * fit + quad).clamp_min(0).sqrt()
        scores[pix] = torch.where(weight.sum(dim=1) > 0, residual, torch.nan)
    return scores.view(h, w).to(torch.float32)


# --- Tests --------------------------------------------------------------------------------


def scene(bands: int, height: int = 23, width: int = 19) -> tuple[Tensor, Tensor]:
    cube, _ = synthetic_anomaly_scene(max(height, width), bands, seed=3, targets=3)
    x = torch.as_tensor(cube)[:, :height, :width].contiguous()
    valid = torch.ones(height, width, dtype=torch.bool)
    valid[4, 6] = False  # nodata inside rings
    valid[10:12, 0:3] = False  # at the border
    x[:, 15, 9] = float('nan')  # a NaN pixel is invalid too
    return x, valid


@pytest.mark.parametrize(
    ('bands', 'inner', 'outer'),
    [(6, 3, 7), (20, 3, 5), (50, 5, 9)],  # C < N, C > N (Woodbury), the defaults
)
@pytest.mark.parametrize('method', ['lrx', 'crd'])
def test_equals_previous_implementation(
    method: str, bands: int, inner: int, outer: int
) -> None:
    x, valid = scene(bands)
    new = (lrx_scores if method == 'lrx' else crd_scores)(
        x, inner=inner, outer=outer, valid_mask=valid
    )
    old = (old_lrx if method == 'lrx' else old_crd)(
        x, inner=inner, outer=outer, valid_mask=valid
    )
    assert torch.equal(torch.isnan(new), torch.isnan(old))
    assert torch.isnan(new[4, 6])
    assert torch.isnan(new[15, 9])
    np.testing.assert_allclose(new.numpy(), old.numpy(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize('method', ['lrx', 'crd'])
def test_strips_equal_whole_scene(method: str) -> None:
    x, valid = scene(8, 30, 17)
    whole = (lrx_scores if method == 'lrx' else crd_scores)(
        x, inner=3, outer=7, valid_mask=valid
    )
    pixels = x.reshape(8, -1)[:, (valid & torch.isfinite(x).all(0)).reshape(-1)]
    detector = RingDetector(
        method,  # type: ignore[arg-type]
        inner=3,
        outer=7,
        mean=pixels.double().mean(dim=1) if method == 'lrx' else None,
        band_variance=float(pixels.double().var(dim=1).mean()),
    )
    halo = detector.halo
    parts = []
    for r0 in range(0, 30, 7):  # strips of 7 rows, each with its halo
        r1 = min(r0 + 7, 30)
        top, bottom = max(r0 - halo, 0), min(r1 + halo, 30)
        parts.append(
            detector.score_rows(
                x[:, top:bottom], valid[top:bottom], (r0 - top, r1 - top)
            )
        )
    np.testing.assert_allclose(
        torch.cat(parts).numpy(), whole.numpy(), rtol=1e-6, equal_nan=True
    )


def test_ring_members_unchanged() -> None:
    valid = torch.ones(10, 12, dtype=torch.bool)
    offsets = ring_offsets(3, 7)
    counts = ring_members(torch.tensor([0]), torch.tensor([0]), valid, offsets)
    assert counts.sum() == 16 - 4


def test_bad_method() -> None:
    with pytest.raises(ValueError, match='lrx'):
        RingDetector('rx')  # type: ignore[arg-type]
    with pytest.raises(ValueError, match='odd'):
        RingDetector('lrx', inner=4)
