"""Local anomaly detectors over a dual (guard/outer) window: LRX and CRD."""

from __future__ import annotations

import concurrent.futures
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from numpy.typing import NDArray
from torch import Tensor

__all__ = ('RingDetector', 'crd_scores', 'lrx_scores', 'ring_members', 'ring_offsets')

#: Pixels per chunk on the CPU. Batched LAPACK factorisations of 56 x 56
#: float64 systems ran 2-4x faster per matrix in batches of 64-256 than of
#: 4096 (the batch then no longer fits in cache).
CPU_CHUNK = 192

#: Pixels per chunk on a GPU (one batched cuSOLVER call amortises the launch).
GPU_CHUNK = 16384

#: Memory budget (bytes) of one strip's float64 pixel-major copy.
STRIP_BYTES = 32 * 2**20

#: Default ridge of each method (see :func:`lrx_scores` and :func:`crd_scores`).
DEFAULT_REGULARIZATION = {'lrx': 1e-2, 'crd': 1e-1}


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


@dataclass(frozen=True)
class _Rings:
    """A chunk of centre pixels and their rings.

    Attributes:
        index: ``P`` flat positions of the centres in the scored rows.
        centre: ``P x C`` centre spectra.
        ring: ``P x N x C`` ring spectra (zero for missing members).
        weight: ``P x N`` ring membership (1 valid and inside, else 0).
    """

    index: Tensor
    centre: Tensor
    ring: Tensor
    weight: Tensor


class _StripRings:
    """The rings of the valid pixels of some rows of a block, chunk by chunk."""

    def __init__(
        self,
        block: Tensor,
        valid: Tensor,
        offsets: Tensor,
        rows: tuple[int, int],
        chunk: int,
    ) -> None:
        """Index the scored pixels.

        Args:
            block: ``C x h x W`` float64 pixels, zero where invalid.
            valid: ``h x W`` validity.
            offsets: Ring offsets.
            rows: ``(first, last)``: the block rows to score; rows of the
                block outside them are the halo, rows beyond it are absent.
            chunk: Pixels per chunk.
        """
        c, _, w = block.shape
        first, last = rows
        r = int(offsets.abs().max())
        # Pixel-major copy padded by the ring radius: each ring member of a
        # centre sits at a fixed flat offset, so one gather reads a chunk's rings.
        padded = torch.nn.functional.pad(block, (r, r, r, r)).permute(1, 2, 0)
        self.pixels = padded.reshape(-1, c).contiguous()
        self.present = torch.nn.functional.pad(valid, (r, r, r, r)).reshape(-1)
        wp = w + 2 * r
        device = block.device
        self.shift = offsets[:, 0].to(device) * wp + offsets[:, 1].to(device)
        targets = torch.nonzero(valid[first:last].reshape(-1)).squeeze(1)
        centres = (targets // w + first + r) * wp + targets % w + r
        self.chunks = list(zip(targets.split(chunk), centres.split(chunk)))

    def __getitem__(self, k: int) -> _Rings:
        """Chunk ``k``."""
        index, centre = self.chunks[k]
        members = centre[:, None] + self.shift[None, :]
        return _Rings(
            index=index,
            centre=self.pixels[centre],
            ring=self.pixels[members],
            weight=self.present[members].to(self.pixels.dtype),
        )


def _cholesky(system: Tensor) -> tuple[Tensor, Tensor]:
    """Lower Cholesky factors of symmetric systems, and LAPACK's failure codes.

    Factorising the transpose as an upper factor skips a copy into LAPACK's
    column-major layout (about 15 % faster on batches of small systems).
    """
    upper, info = torch.linalg.cholesky_ex(system.mT, upper=True)
    return upper.mT, info


def _lrx_chunk(rings: _Rings, lam: float) -> Tensor:
    """LRX distances of one chunk, in band space or the ring's Gram space.

    With ``n`` valid ring pixels of mean ``m`` and scatter ``S`` and
    ``z = y - m``, the distance is ``z^T (S / (n - 1) + lam I)^-1 z``. It is
    solved as a ``C x C`` system when ``C <= N``; otherwise through the
    Woodbury identity as an ``N x N`` system in the ring's Gram space. Both
    use ``a^T A^-1 a = |L^-1 a|^2`` for ``A = L L^T``.
    """
    weight, ring = rings.weight, rings.ring
    count = weight.sum(dim=1)
    n = count.clamp_min(1)
    mean = (weight[:, None, :] @ ring).squeeze(1) / n[:, None]  # ring mean, P x C
    dof = (count - 1).clamp_min(1)
    z = rings.centre - mean
    c, size = ring.shape[2], ring.shape[1]
    if c <= size:
        # Missing members are zero rows, so S = X^T X - n m m^T; and
        # z^T (S / dof + lam I)^-1 z = dof z^T (S + lam dof I)^-1 z.
        rhs = z
        system = torch.baddbmm(
            ring.mT @ ring, (mean * n[:, None])[:, :, None], mean[:, None, :], alpha=-1
        )
        system.diagonal(dim1=1, dim2=2).add_((lam * dof)[:, None])
    else:
        u = (ring - mean[:, None, :]) * (weight / dof.sqrt()[:, None])[:, :, None]
        rhs = (u @ z[:, :, None]).squeeze(2)
        system = u @ u.mT
        system.diagonal(dim1=1, dim2=2).add_(lam)
    factor, info = _cholesky(system)
    half = torch.linalg.solve_triangular(factor, rhs[:, :, None], upper=False)
    quad = half.square().sum(dim=(1, 2))
    failed = info != 0
    if bool(failed.any()):
        solved = torch.linalg.solve(system[failed], rhs[failed])
        quad[failed] = (rhs[failed] * solved).sum(dim=1)
    # Woodbury: z^T (lam I + U^T U)^-1 z = (|z|^2 - (Uz)^T (lam I + U U^T)^-1 Uz) / lam.
    d = quad * dof if c <= size else (z.square().sum(dim=1) - quad) / lam
    return torch.where(count >= 2, d, torch.nan)


def _crd_chunk(rings: _Rings, regularization: float) -> Tensor:
    """CRD residual norms of one chunk (an ``N x N`` system per pixel)."""
    weight, ring, y = rings.weight, rings.ring, rings.centre
    gram = ring @ ring.mT
    cross = (ring @ y[:, :, None]).squeeze(2)
    norm = y.square().sum(dim=1)
    own = gram.diagonal(dim1=1, dim2=2)  # |x_i|^2
    dist2 = (norm[:, None] + own - 2 * cross).clamp_min(0) * weight
    # Missing ring members get a unit diagonal so their coefficient is 0;
    # a tiny jitter keeps the system definite if a ring pixel equals y.
    jitter = 1e-12 * own.mean(dim=1, keepdim=True).clamp_min(1e-300)
    system = gram.clone()
    system.diagonal(dim1=1, dim2=2).add_(regularization * dist2 + (1 - weight) + jitter)
    factor, info = _cholesky(system)
    half = torch.linalg.solve_triangular(factor, cross[:, :, None], upper=False)
    alpha = torch.linalg.solve_triangular(factor.mT, half, upper=True).squeeze(2)
    failed = info != 0
    if bool(failed.any()):
        alpha[failed] = torch.linalg.solve(system[failed], cross[failed])
    fit = (alpha * cross).sum(dim=1)
    quad = ((gram @ alpha[:, :, None]).squeeze(2) * alpha).sum(dim=1)
    residual = (norm - 2 * fit + quad).clamp_min(0).sqrt()
    return torch.where(weight.sum(dim=1) > 0, residual, torch.nan)


@dataclass(frozen=True)
class RingDetector:
    """LRX or CRD scoring a scene strip by strip.

    A strip of rows is scored from a block holding those rows and up to
    :attr:`halo` rows above and below them (fewer at the scene's top and
    bottom edges: missing rows are outside the scene), so strips of any
    height give the same scores as the whole scene at once.

    Attributes:
        method: ``'lrx'`` or ``'crd'``.
        inner: Guard window side (odd).
        outer: Outer window side (odd, > inner).
        regularization: LRX: ridge relative to :attr:`band_variance`; CRD:
            weight of the distance-weighted Tikhonov term.
        mean: LRX: the scene's mean spectrum, removed before the products
            (LRX is translation invariant; centring avoids cancellation).
        band_variance: LRX: the scene's mean band variance (ridge scale).
        device: Where the products and solves run.
    """

    method: Literal['lrx', 'crd']
    inner: int = 5
    outer: int = 9
    regularization: float | None = None
    mean: Tensor | None = None
    band_variance: float = 1.0
    device: torch.device = field(default_factory=lambda: torch.device('cpu'))

    def __post_init__(self) -> None:
        """Check the windows.

        Raises:
            ValueError: For bad windows or an unknown method.
        """
        if self.method not in DEFAULT_REGULARIZATION:
            raise ValueError(f"method must be 'lrx' or 'crd', got {self.method!r}")
        ring_offsets(self.inner, self.outer, self.device)

    @property
    def halo(self) -> int:
        """Rows needed above and below a strip (the outer window's radius)."""
        return self.outer // 2

    def strip_rows(self, width: int, bands: int) -> int:
        """Rows per strip that keep one strip's working copy near :data:`STRIP_BYTES`."""
        per_row = (width + 2 * self.halo) * bands * 8
        return max(4 * self.halo, STRIP_BYTES // max(per_row, 1) - 2 * self.halo, 1)

    def score_rows(self, block: Tensor, valid: Tensor, rows: tuple[int, int]) -> Tensor:
        """Scores of some rows of a block.

        Args:
            block: ``C x h x W`` pixels: the scored rows and their halo.
            valid: ``h x W`` validity (pixels that are neither nodata nor NaN).
            rows: ``(first, last)`` block rows to score.

        Returns:
            ``(last - first) x W`` float32 scores on the CPU, NaN where a pixel
            is invalid or its ring holds too few valid pixels.
        """
        x = block.to(self.device, torch.float64)
        ok = valid.to(self.device, torch.bool) & torch.isfinite(x).all(dim=0)
        if self.mean is not None:
            x = x - self.mean.to(x)[:, None, None]
        x = x.masked_fill(~ok[None], 0.0)
        first, last = rows
        w = x.shape[2]
        scores = torch.full(
            ((last - first) * w,), float('nan'), dtype=torch.float64, device=x.device
        )
        offsets = ring_offsets(self.inner, self.outer, x.device)
        reg = DEFAULT_REGULARIZATION[self.method]
        if self.regularization is not None:
            reg = self.regularization
        cpu = x.device.type == 'cpu'
        rings = _StripRings(x, ok, offsets, rows, CPU_CHUNK if cpu else GPU_CHUNK)
        lam = reg * self.band_variance if self.method == 'lrx' else reg
        solve = _lrx_chunk if self.method == 'lrx' else _crd_chunk

        def work(part: int, parts: int) -> None:
            for k in range(part, len(rings.chunks), parts):
                chunk = rings[k]
                scores[chunk.index] = solve(chunk, lam)

        _run_parts(work, torch.get_num_threads() if cpu else 1)
        return scores.view(last - first, w).to('cpu', torch.float32)

    def score(self, cube: Tensor, valid: Tensor) -> Tensor:
        """Scores of a whole in-memory scene, strip by strip.

        Args:
            cube: ``C x H x W`` scene.
            valid: ``H x W`` validity.

        Returns:
            ``H x W`` float32 scores.
        """
        c, h, w = cube.shape
        step, halo = self.strip_rows(w, c), self.halo
        strips = []
        for r0 in range(0, h, step):
            r1 = min(r0 + step, h)
            top, bottom = max(r0 - halo, 0), min(r1 + halo, h)
            strips.append(
                self.score_rows(
                    cube[:, top:bottom], valid[top:bottom], (r0 - top, r1 - top)
                )
            )
        return torch.cat(strips)


def _run_parts(work: Callable[[int, int], None], parts: int) -> None:
    """Run ``work(part, parts)`` for every part, one thread per part.

    The chunks are small, and torch's intra-op parallelism on them mostly
    waits at barriers (4x slower than one thread on a loaded 2-core
    machine), so each part runs single-threaded in its own thread instead:
    torch releases the GIL inside the batched products and factorisations.
    """
    if parts <= 1:
        work(0, 1)
        return
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with concurrent.futures.ThreadPoolExecutor(parts) as pool:
            for future in [pool.submit(work, part, parts) for part in range(parts)]:
                future.result()
    finally:
        torch.set_num_threads(previous)


def _prepare(
    cube: Tensor | NDArray[Any], valid_mask: Tensor | NDArray[Any] | None
) -> tuple[Tensor, Tensor]:
    """The cube as a tensor and its validity (finite and masked in)."""
    x = torch.as_tensor(cube)
    if x.ndim != 3:
        raise ValueError(f'expected a C x H x W cube, got shape {tuple(x.shape)}')
    valid = torch.isfinite(x).all(dim=0)
    if valid_mask is not None:
        valid &= torch.as_tensor(valid_mask, dtype=torch.bool, device=x.device)
    return x, valid


def _background(x: Tensor, valid: Tensor) -> tuple[Tensor, float]:
    """Mean spectrum and mean band variance of the valid pixels (float64)."""
    pixels = x.reshape(x.shape[0], -1)[:, valid.reshape(-1)].to(torch.float64)
    if pixels.shape[1] < 2:
        return torch.zeros(x.shape[0], dtype=torch.float64, device=x.device), 1.0
    scale = float(pixels.var(dim=1).mean())
    return pixels.mean(dim=1), scale if scale > 0 else 1.0


def lrx_scores(
    cube: Tensor | NDArray[Any],
    *,
    inner: int = 5,
    outer: int = 9,
    regularization: float = 1e-2,
    valid_mask: Tensor | NDArray[Any] | None = None,
    device: str | torch.device | None = None,
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
        device: Where to compute (default: the cube's device).

    Returns:
        ``H x W`` float32 scores (NaN where invalid or where the ring holds
        fewer than two valid pixels).
    """
    x, valid = _prepare(cube, valid_mask)
    mean, variance = _background(x, valid)
    detector = RingDetector(
        'lrx',
        inner,
        outer,
        regularization,
        mean=mean,
        band_variance=variance,
        device=torch.device(device) if device is not None else x.device,
    )
    return detector.score(x, valid)


def crd_scores(
    cube: Tensor | NDArray[Any],
    *,
    inner: int = 5,
    outer: int = 9,
    regularization: float = 1e-1,
    valid_mask: Tensor | NDArray[Any] | None = None,
    device: str | torch.device | None = None,
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
        device: Where to compute (default: the cube's device).

    Returns:
        ``H x W`` float32 residual norms (NaN where invalid or the ring is empty).
    """
    x, valid = _prepare(cube, valid_mask)
    detector = RingDetector(
        'crd',
        inner,
        outer,
        regularization,
        device=torch.device(device) if device is not None else x.device,
    )
    return detector.score(x, valid)
