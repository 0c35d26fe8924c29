r"""Local anomaly detectors over a dual (guard/outer) window: LRX and CRD.

Both compare each pixel with the *ring* of pixels between a square guard
window (which keeps the target's own pixels, and its sub-pixel spill-over,
out of the background) and a larger square outer window, both centred on the
pixel:

* **LRX** (local RX): the squared Mahalanobis distance of the pixel to the
  ring's mean, with the ring's covariance plus a ridge,
  :math:`d = (y - m)^T (\Sigma_{ring} + \lambda I)^{-1} (y - m)`.
* **CRD** (collaborative representation, Li and Du, 2015): the pixel is
  represented as a combination of the ring pixels,
  :math:`\alpha = (X^T X + \lambda \Gamma^T \Gamma)^{-1} X^T y` with the
  distance-weighted Tikhonov matrix :math:`\Gamma = diag(\|y - x_i\|)`;
  the score is the residual norm :math:`\|y - X\alpha\|`.

The ring geometry lives in one place, :func:`ring_offsets` and
:func:`ring_members`. At image borders and around nodata pixels the ring
keeps only the pixels that exist and are valid (it is *truncated*, never
padded with made-up values).

Everything is vectorised over pixels (batched matrix products and solves in
float64, in chunks that bound memory). LRX is computed in the Gram space of
the ring (Woodbury identity), so its cost per pixel is ``N^2 C + N^3`` for a
ring of ``N`` pixels and ``C`` bands, like CRD's.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
from numpy.typing import NDArray
from torch import Tensor

__all__ = ('crd_scores', 'lrx_scores', 'ring_members', 'ring_offsets')

#: Memory budget (bytes) of the per-chunk float64 work arrays.
CHUNK_BYTES = 64 * 2**20


def ring_offsets(
    inner: int, outer: int, device: torch.device | str | None = None
) -> Tensor:
    """Offsets of the ring between a guard window and an outer window.

    Args:
        inner: Side of the square guard window (odd, >= 1); pixels inside it
            (the centre included) are excluded.
        outer: Side of the square outer window (odd, > inner).
        device: Where to make them (the cube's device).

    Returns:
        ``N x 2`` int64 ``(drow, dcol)`` offsets, row-major,
        ``N = outer**2 - inner**2``.

    Raises:
        ValueError: If the sides are not odd or ``outer <= inner``.
    """
    if inner < 1 or outer <= inner or inner % 2 == 0 or outer % 2 == 0:
        raise ValueError(
            f'windows must be odd with outer > inner >= 1, got inner={inner}, outer={outer}'
        )
    r_out, r_in = outer // 2, inner // 2
    span = torch.arange(-r_out, r_out + 1, device=device)
    rows, cols = torch.meshgrid(span, span, indexing='ij')
    ring = torch.maximum(rows.abs(), cols.abs()) > r_in
    return torch.stack([rows[ring], cols[ring]], dim=1)


def ring_members(rows: Tensor, cols: Tensor, valid: Tensor, offsets: Tensor) -> Tensor:
    """Which ring pixels of some centre pixels exist and are valid.

    Args:
        rows: ``P`` centre rows.
        cols: ``P`` centre columns.
        valid: ``H x W`` boolean mask of usable pixels.
        offsets: ``N x 2`` ring offsets from :func:`ring_offsets`.

    Returns:
        ``P x N`` float64 weights, 1 for ring pixels inside the image and
        valid, 0 for those outside the image (truncated ring) or invalid.
    """
    h, w = valid.shape
    rr = rows[:, None] + offsets[None, :, 0]
    cc = cols[:, None] + offsets[None, :, 1]
    inside = (rr >= 0) & (rr < h) & (cc >= 0) & (cc < w)
    flat = rr.clamp(0, h - 1) * w + cc.clamp(0, w - 1)
    return (inside & valid.reshape(-1)[flat]).to(torch.float64)


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
        out = torch.empty(
            span, span, ha, wa, dtype=self.last.dtype, device=self.last.device
        )
        block = 32
        for c0 in range(0, wa, block):
            bw = min(block, wa - c0)
            base = self.last[r0 + 2 * r : r0 + 2 * r + ha, 2 * r + c0 : 2 * r + c0 + bw]
            diagonals = (
                torch.arange(bw, device=out.device)[:, None]
                + torch.arange(span, device=out.device)[None, :]
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
        valid &= torch.as_tensor(valid_mask, dtype=torch.bool).to(x.device)
    return x.masked_fill(~valid[None], 0.0), valid


def _band_variance(x: Tensor, valid: Tensor) -> float:
    """Mean per-band variance of the valid pixels (sets the ridge scale)."""
    pixels = x.reshape(x.shape[0], -1)[:, valid.reshape(-1)]
    if pixels.shape[1] < 2:
        return 1.0
    scale = float(pixels.var(dim=1).mean())
    return scale if scale > 0 else 1.0


def lrx_scores(
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
    offsets = ring_offsets(inner, outer, x.device)
    lam = regularization * _band_variance(x, valid)
    # LRX is translation invariant: removing the scene mean first keeps the
    # centring below free of cancellation.
    mean = x.reshape(c, -1)[:, valid.reshape(-1)].mean(dim=1)
    x = (x - mean[:, None, None]).masked_fill(~valid[None], 0.0)
    scores = torch.full((h * w,), float('nan'), dtype=torch.float64, device=x.device)
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


def crd_scores(
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
    offsets = ring_offsets(inner, outer, x.device)
    scores = torch.full((h * w,), float('nan'), dtype=torch.float64, device=x.device)
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
