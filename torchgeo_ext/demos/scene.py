"""The built-in demo scene: a small georeferenced hyperspectral cube with implanted anomalies."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

__all__ = ('DEMO_CRS', 'demo_transform', 'make_demo_scene', 'synthetic_anomaly_scene')

#: CRS of the demo scene: WGS 84 / UTM zone 33N.
DEMO_CRS = 'EPSG:32633'


def demo_transform(pixel_size: float = 30.0) -> tuple[float, ...]:
    """Affine transform of the demo scene (rasterio order, north-up, UTM 33N).

    Args:
        pixel_size: Ground sampling distance in metres.

    Returns:
        The six coefficients ``(a, b, c, d, e, f)``.
    """
    return (pixel_size, 0.0, 500_000.0, 0.0, -pixel_size, 5_000_000.0)


def _smooth_field(
    rng: np.random.Generator, count: int, size: int, scale: float
) -> NDArray[np.float64]:
    """``count`` smooth random fields of ``size x size`` (Gaussian low-pass in Fourier space)."""
    noise = rng.standard_normal((count, size, size))
    freq = np.fft.fftfreq(size)
    radius2 = freq[:, None] ** 2 + freq[None, :] ** 2
    kernel = np.exp(-radius2 * (scale**2) * 2 * np.pi**2)
    fields = np.fft.ifft2(np.fft.fft2(noise) * kernel).real
    fields -= fields.mean(axis=(1, 2), keepdims=True)
    fields /= fields.std(axis=(1, 2), keepdims=True) + 1e-12
    return fields


def _spectrum(
    wavelengths: NDArray[np.float64],
    centres: list[float],
    widths: list[float],
    heights: list[float],
) -> NDArray[np.float64]:
    """A smooth reflectance-like spectrum: a sum of Gaussian bumps on a baseline."""
    spectrum = np.full_like(wavelengths, 0.05)
    for centre, width, height in zip(centres, widths, heights, strict=True):
        spectrum += height * np.exp(-0.5 * ((wavelengths - centre) / width) ** 2)
    return spectrum


def _mixed_background(
    rng: np.random.Generator,
    wavelengths: NDArray[np.float64],
    endmembers: int,
    size: int,
) -> NDArray[np.float64]:
    """Smooth endmember spectra mixed by smooth abundance maps, unevenly lit (bands x H x W)."""
    library = np.stack(
        [
            _spectrum(
                wavelengths,
                list(rng.uniform(450, 2400, 3)),
                list(rng.uniform(100, 400, 3)),
                list(rng.uniform(0.05, 0.4, 3)),
            )
            for _ in range(endmembers)
        ]
    )
    logits = 2.0 * _smooth_field(rng, endmembers, size, scale=size / 8)
    weights = np.exp(logits - logits.max(axis=0, keepdims=True))
    weights /= weights.sum(axis=0, keepdims=True)
    cube = np.einsum('kb,khw->bhw', library, weights)
    # Spatially varying illumination keeps the background non-trivial.
    cube *= 1 + 0.05 * _smooth_field(rng, 1, size, scale=size / 4)
    return cube


def _implant_targets(
    rng: np.random.Generator,
    cube: NDArray[np.float64],
    target: NDArray[np.float64],
    targets: int,
    abundance: tuple[float, float],
) -> NDArray[np.bool_]:
    """Mix ``target`` into ``cube`` in place, in small blobs kept apart; return the truth."""
    size = cube.shape[-1]
    truth = np.zeros((size, size), dtype=bool)
    margin = 3
    placed = 0
    attempts = 0
    while placed < targets and attempts < 100 * targets:
        attempts += 1
        side = int(rng.integers(1, 4))
        row = int(rng.integers(margin, size - margin - side))
        col = int(rng.integers(margin, size - margin - side))
        # Keep blobs apart so each is a distinct small target.
        if truth[
            max(row - 4, 0) : row + side + 4, max(col - 4, 0) : col + side + 4
        ].any():
            continue
        alpha = float(rng.uniform(*abundance))
        block = cube[:, row : row + side, col : col + side]
        cube[:, row : row + side, col : col + side] = (
            1 - alpha
        ) * block + alpha * target[:, None, None]
        truth[row : row + side, col : col + side] = True
        placed += 1
    return truth


def synthetic_anomaly_scene(
    size: int = 128,
    bands: int = 50,
    *,
    seed: int = 0,
    abundance: tuple[float, float] = (0.2, 0.6),
    targets: int = 12,
    endmembers: int = 4,
    noise: float = 0.005,
) -> tuple[NDArray[np.float32], NDArray[np.bool_]]:
    """Build a hyperspectral cube with implanted sub-pixel anomalies.

    The background is a linear mixture of a few smooth endmember spectra whose
    abundances vary smoothly in space (a spatially and spectrally correlated
    background, like a real scene), plus sensor noise. Targets with a distinct
    spectrum are implanted as *sub-pixel* anomalies by linear mixing, ``x = (1 -
    a) * background + a * target`` with abundance ``a < 1``, in blobs of one to
    a few pixels. The truth mask marks every implanted pixel.

    Args:
        size: Height and width in pixels.
        bands: Number of spectral bands.
        seed: Random seed (the scene is a deterministic function of all arguments).
        abundance: Range of target abundances (fraction of the pixel
            covered by the target), each blob drawing one value.
        targets: Number of target blobs (1 x 1 to 3 x 3 pixels).
        endmembers: Number of background endmembers.
        noise: Standard deviation of the additive sensor noise (reflectance units).

    Returns:
        ``bands x size x size`` float32 cube and ``size x size`` boolean truth mask.
    """
    if size < 8 or bands < 2:
        raise ValueError('the scene needs size >= 8 and bands >= 2')
    rng = np.random.default_rng(seed)
    wavelengths = np.linspace(400.0, 2500.0, bands)

    cube = _mixed_background(rng, wavelengths, endmembers, size)

    # Target: a spectrum unlike any endmember (a narrow absorption plus a bump).
    target = _spectrum(wavelengths, [1100.0, 1900.0], [60.0, 150.0], [0.35, 0.2])
    target -= 0.04 * np.exp(-0.5 * ((wavelengths - 700.0) / 40.0) ** 2)

    truth = _implant_targets(rng, cube, target, targets, abundance)
    cube += noise * rng.standard_normal(cube.shape)
    return cube.astype(np.float32), truth


def make_demo_scene(
    path: str | os.PathLike[str],
    *,
    size: int = 128,
    bands: int = 50,
    seed: int = 0,
    abundance: tuple[float, float] = (0.2, 0.6),
) -> tuple[Path, NDArray[np.bool_]]:
    """Write the demo scene as a georeferenced GeoTIFF (EPSG:32633, 30 m pixels).

    Args:
        path: Output GeoTIFF (written atomically).
        size: Height and width in pixels.
        bands: Number of bands.
        seed: Random seed.
        abundance: Range of the targets' sub-pixel abundances.

    Returns:
        The written path and the ``size x size`` boolean truth mask.
    """
    cube, truth = synthetic_anomaly_scene(size, bands, seed=seed, abundance=abundance)
    return _write_scene(Path(path), cube), truth


def _write_scene(path: Path, cube: NDArray[np.float32]) -> Path:
    """Write a cube with the demo georeferencing through the library's raster writer."""
    from affine import Affine

    from ..export.raster import write_raster

    transform: Any = Affine(*demo_transform())
    write_raster(path, cube, crs=DEMO_CRS, transform=transform)
    return path
