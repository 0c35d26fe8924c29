"""Global RX anomaly detector (Reed and Xiaoli, 1990), in memory and streamed."""

from __future__ import annotations

from typing import Any

import torch
from numpy.typing import NDArray
from torch import Tensor, nn

__all__ = ('RX', 'RXStatistics', 'rx_scores', 'whitening_matrix')


class RXStatistics:
    """Streaming mean and covariance of pixel spectra, accumulated in float64.

    Chunks of pixels are merged with the parallel update of Chan, Golub and
    LeVeque: each chunk contributes its own mean and centred scatter matrix,
    so the result equals the two-pass statistics of all pixels up to
    floating-point rounding, whatever the order and size of the chunks.
    """

    def __init__(self, channels: int) -> None:
        """Initialise empty statistics.

        Args:
            channels: Number of bands.
        """
        self.channels = channels
        self.count = 0
        # On the host until the first chunk says where the pixels are.
        self._mean = torch.zeros(channels, dtype=torch.float64, device='cpu')
        self._scatter = torch.zeros(
            channels, channels, dtype=torch.float64, device='cpu'
        )

    def update(self, pixels: Tensor | NDArray[Any]) -> None:
        """Add a chunk of pixel spectra.

        Args:
            pixels: ``N x C`` spectra (rows with non-finite values must be
                removed by the caller).

        Raises:
            ValueError: If the band count differs from ``channels``.
        """
        x = torch.as_tensor(pixels).to(torch.float64)
        if x.ndim != 2 or x.shape[1] != self.channels:
            raise ValueError(
                f'expected N x {self.channels} pixels, got shape {tuple(x.shape)}'
            )
        n_b = x.shape[0]
        if n_b == 0:
            return
        mean_b = x.mean(dim=0)
        centred = x - mean_b
        scatter_b = centred.T @ centred
        n_a = self.count
        n = n_a + n_b
        if n_a == 0:  # the statistics live where the first chunk is
            self._mean = self._mean.to(x.device)
            self._scatter = self._scatter.to(x.device)
        delta = mean_b - self._mean
        self._mean = self._mean + delta * (n_b / n)
        self._scatter = (
            self._scatter + scatter_b + torch.outer(delta, delta) * (n_a * n_b / n)
        )
        self.count = n

    @property
    def mean(self) -> Tensor:
        """The mean spectrum (float64, length C)."""
        return self._mean.clone()

    @property
    def covariance(self) -> Tensor:
        """The sample covariance (float64, C x C, normalised by N - 1)."""
        if self.count < 2:
            raise ValueError('covariance needs at least two valid pixels')
        return self._scatter / (self.count - 1)


def whitening_matrix(
    covariance: Tensor, regularization: float = 1e-6, rcond: float = 1e-10
) -> Tensor:
    """A matrix W with ``W.T @ W`` the regularised pseudo-inverse of a covariance.

    The ridge is scaled per band: ``S + regularization * diag(S)``, i.e. the
    decomposition runs on the correlation matrix ``R = D^-1/2 S D^-1/2``
    (``D = diag(S)``) plus ``regularization * I``. The result is therefore
    unchanged when bands are rescaled, and a band whose variance is many
    orders of magnitude below the others is neither swamped by a ridge sized
    for the large bands nor lost to round-off. Constant bands are ignored.

    Args:
        covariance: ``C x C`` symmetric positive semi-definite matrix.
        regularization: Ridge relative to each band's variance (0 disables it).
        rcond: Eigenvalues of the regularised correlation matrix below
            ``rcond`` times the largest are dropped (pseudo-inverse), which
            keeps degenerate directions from dominating the score.

    Returns:
        ``K x C`` whitening matrix (float64), K the number of kept directions.
    """
    cov = covariance.to(torch.float64)
    cov = (cov + cov.T) / 2
    channels = cov.shape[0]
    variance = torch.diagonal(cov).clamp_min(0)
    tiny = torch.finfo(torch.float64).tiny
    live = variance > tiny
    scale = torch.where(live, variance.clamp_min(tiny).rsqrt(), 0.0)
    corr = cov * scale[:, None] * scale[None, :]
    corr = corr + regularization * torch.diag(live.to(torch.float64))
    values, vectors = torch.linalg.eigh(corr)
    top = float(values.max().clamp_min(0))
    keep = values > max(rcond * top, tiny)
    if not bool(keep.any()):
        # A constant scene: nothing is anomalous.
        return torch.zeros(1, channels, dtype=torch.float64, device=cov.device)
    return (vectors[:, keep] / values[keep].sqrt()).T * scale[None, :]


class RX(nn.Module):
    """Global RX detector as a module: ``B x C x h x w`` -> ``B x 1 x h x w`` scores.

    Build it from background statistics with :meth:`from_statistics` or from
    a cube with :meth:`fit`; it is then a plain callable for tiled
    prediction.
    """

    mean: Tensor
    whitening: Tensor

    def __init__(self, mean: Tensor, whitening: Tensor) -> None:
        """Initialise a new RX detector.

        Args:
            mean: Background mean spectrum (length C).
            whitening: ``K x C`` whitening matrix (see :func:`whitening_matrix`).
        """
        super().__init__()
        self.register_buffer('mean', mean.to(torch.float64).clone())
        self.register_buffer('whitening', whitening.to(torch.float64).clone())

    @classmethod
    def from_statistics(
        cls,
        mean: Tensor,
        covariance: Tensor,
        regularization: float = 1e-6,
        rcond: float = 1e-10,
    ) -> RX:
        """Build a detector from a background mean and covariance.

        Args:
            mean: Mean spectrum (length C).
            covariance: ``C x C`` covariance.
            regularization: Relative ridge (see :func:`whitening_matrix`).
            rcond: Pseudo-inverse cut-off (see :func:`whitening_matrix`).

        Returns:
            The detector.
        """
        return cls(mean, whitening_matrix(covariance, regularization, rcond))

    @classmethod
    def fit(
        cls,
        cube: Tensor | NDArray[Any],
        mask: Tensor | NDArray[Any] | None = None,
        regularization: float = 1e-6,
        rcond: float = 1e-10,
    ) -> RX:
        """Estimate the background statistics from an in-memory cube.

        Args:
            cube: ``C x H x W`` scene.
            mask: Optional ``H x W`` boolean mask of valid pixels; pixels
                with non-finite values are always excluded.
            regularization: Relative ridge (see :func:`whitening_matrix`).
            rcond: Pseudo-inverse cut-off (see :func:`whitening_matrix`).

        Returns:
            The detector.
        """
        pixels = _valid_pixels(torch.as_tensor(cube), mask)
        stats = RXStatistics(pixels.shape[1])
        stats.update(pixels)
        return cls.from_statistics(stats.mean, stats.covariance, regularization, rcond)

    def forward(self, x: Tensor) -> Tensor:
        """Score a batch of tiles.

        Args:
            x: ``B x C x h x w`` tiles (any float dtype).

        Returns:
            ``B x 1 x h x w`` RX scores in float32.
        """
        b, c, h, w = x.shape
        if c != self.mean.numel():
            raise ValueError(f'RX was fitted on {self.mean.numel()} bands, got {c}')
        # Centring and projection in float64: with a badly conditioned
        # covariance the whitening rows span many orders of magnitude and a
        # float32 product cancels to noise. Rows go in chunks to bound memory.
        pixels = x.permute(0, 2, 3, 1).reshape(-1, c)
        scores = torch.cat(
            [
                ((chunk.to(torch.float64) - self.mean) @ self.whitening.T)
                .square()
                .sum(dim=1)
                for chunk in pixels.split(65536)
            ]
        )
        return scores.to(torch.float32).view(b, 1, h, w)


def _valid_pixels(cube: Tensor, mask: Tensor | NDArray[Any] | None) -> Tensor:
    """Flatten a cube to ``N x C`` finite (and masked-in) pixels."""
    if cube.ndim != 3:
        raise ValueError(f'expected a C x H x W cube, got shape {tuple(cube.shape)}')
    pixels = cube.reshape(cube.shape[0], -1).T
    valid = torch.isfinite(pixels).all(dim=1)
    if mask is not None:
        valid &= torch.as_tensor(mask, dtype=torch.bool).reshape(-1)
    return pixels[valid]


def rx_scores(
    cube: Tensor | NDArray[Any],
    mask: Tensor | NDArray[Any] | None = None,
    regularization: float = 1e-6,
    rcond: float = 1e-10,
) -> Tensor:
    """Global RX scores of an in-memory cube.

    Args:
        cube: ``C x H x W`` scene (tensor or array).
        mask: Optional ``H x W`` boolean mask of valid (background-estimating)
            pixels; invalid or non-finite pixels score NaN.
        regularization: Relative ridge (see :func:`whitening_matrix`).
        rcond: Pseudo-inverse cut-off (see :func:`whitening_matrix`).

    Returns:
        ``H x W`` float32 scores.
    """
    tensor = torch.as_tensor(cube)
    detector = RX.fit(tensor, mask, regularization, rcond)
    scores = detector(tensor.unsqueeze(0))[0, 0]
    invalid = ~torch.isfinite(tensor).all(dim=0)
    if mask is not None:
        invalid |= ~torch.as_tensor(mask, dtype=torch.bool)
    return scores.masked_fill(invalid, float('nan'))
