"""Georeferenced random sampling restricted to valid (non-nodata) areas."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence

import numpy as np
import pandas as pd
import rasterio
import rasterio.windows
import torch
from numpy.typing import NDArray
from rasterio.io import DatasetReader
from rasterio.vrt import WarpedVRT
from shapely import Polygon
from torch import Generator
from torchgeo.datasets import GeoDataset
from torchgeo.samplers import Units
from torchgeo.samplers.single import GeoSampler

#: A custom validity rule: maps a decimated read (bands x rows x cols) to a
#: boolean array (rows x cols), True where the pixel is valid.
ValidityFn = Callable[[NDArray[np.generic]], NDArray[np.bool_]]


def _window_fraction(
    integral: NDArray[np.float64], y0: float, x0: float, kh: int, kw: int
) -> float:
    """Mean validity over a (possibly fractional) window of the coarse grid.

    ``integral`` is the summed-area table of the coarse validity grid with a
    leading row and column of zeros. Because validity is piecewise constant
    per cell, the integral at fractional coordinates is exactly the bilinear
    interpolation of the table.

    Args:
        integral: summed-area table, shape ``(rows + 1, cols + 1)``.
        y0: top of the window in cell units.
        x0: left of the window in cell units.
        kh: window height in cells.
        kw: window width in cells.

    Returns:
        The area-weighted valid fraction of the window.
    """

    def at(y: float, x: float) -> float:
        i = min(math.floor(y), integral.shape[0] - 2)
        j = min(math.floor(x), integral.shape[1] - 2)
        a, b = y - i, x - j
        s = integral
        return float(
            s[i, j] * (1 - a) * (1 - b)
            + s[i + 1, j] * a * (1 - b)
            + s[i, j + 1] * (1 - a) * b
            + s[i + 1, j + 1] * a * b
        )

    y1, x1 = y0 + kh, x0 + kw
    total = at(y1, x1) - at(y0, x1) - at(y1, x0) + at(y0, x0)
    return total / (kh * kw)


class ValidAreaGeoSampler(GeoSampler):
    """Random patch sampler that only yields patches with enough valid pixels.

    Scenes such as FYH's full-disk crops (off-disk fill class 10) and HAD100's
    flight lines (nodata around the swath) have large nodata or fill margins.
    TorchGeo's :class:`~torchgeo.samplers.RandomGeoSampler` samples positions
    uniformly over each file's bounding box, so many of its patches are mostly
    or entirely fill: wasted compute and a biased loss. This sampler instead:

    1. reads, once, a decimated version of each indexed file (one value per
       coarse cell of ``size / resolution_factor``, in the dataset CRS, warped
       when the file is in another CRS) and derives a coarse validity grid from
       the dataset's ``nodata`` value if set, otherwise the file's
       ``dataset_mask()`` (nodata value, internal mask or alpha band); pixels
       holding one of ``invalid_values`` (e.g. FYH's fill class ``10`` in a
       label raster) or rejected by a custom ``validity`` rule are invalid too;
    2. computes, with a summed-area table over the coarse grid, the valid
       fraction of every cell-aligned patch window, and keeps the windows that
       reach ``min_valid`` as candidates;
    3. at each draw picks a candidate uniformly (so over all files uniformly
       by area), jitters it by a whole number of pixels within one cell, and
       keeps the jitter only if the jittered window's (area-weighted) valid
       fraction still reaches ``min_valid``, otherwise uses the aligned window.

    The valid fraction is estimated on the coarse grid; it is exact when the
    nodata boundary follows cell edges and otherwise off by at most the
    within-cell variation. Patches never leave the (ROI-clipped) file bounds.
    A dataset in which no patch reaches ``min_valid`` raises ``ValueError``.

    Yields ``(x, y, t)`` slices like TorchGeo's samplers, usable with any
    :class:`~torchgeo.datasets.GeoDataset` and
    :func:`~torchgeo.datasets.stack_samples`.
    """

    def __init__(
        self,
        dataset: GeoDataset,
        size: tuple[float, float] | float,
        length: int | None = None,
        *,
        min_valid: float = 0.5,
        roi: Polygon | None = None,
        units: Units = Units.PIXELS,
        invalid_values: Sequence[float] | None = None,
        validity: ValidityFn | None = None,
        resolution_factor: int = 8,
        generator: Generator | None = None,
    ) -> None:
        """Initialise a new ValidAreaGeoSampler.

        Args:
            dataset: dataset to index from; its index must have a ``filepath``
                column (as :class:`~torchgeo.datasets.RasterDataset` has).
            size: patch size ``(height, width)`` or a single value for both.
            length: number of patches per epoch (defaults to the number of
                non-overlapping patches that fit in the valid area, at least 1).
            min_valid: minimum fraction of valid pixels of a patch, in [0, 1].
            roi: region of interest to sample from (defaults to the dataset
                bounds).
            units: whether ``size`` is in pixels or CRS units.
            invalid_values: pixel values that mark invalid pixels in any band
                (e.g. ``(10,)`` for FYH's fill class in label rasters).
            validity: custom rule mapping a decimated read (bands x rows x
                cols) to a boolean valid array (rows x cols); combined (AND)
                with the nodata mask and ``invalid_values``.
            resolution_factor: number of coarse cells along each patch side;
                larger is more precise and slower.
            generator: pseudo-random number generator for reproducibility.

        Raises:
            ValueError: If an argument is out of range, the index has no
                ``filepath`` column, or no patch reaches ``min_valid``.
        """
        if not 0 <= min_valid <= 1:
            raise ValueError(f'min_valid must be in [0, 1], got {min_valid}')
        if resolution_factor < 1:
            raise ValueError(f'resolution_factor must be >= 1, got {resolution_factor}')
        super().__init__(dataset, roi)
        if 'filepath' not in self.index.columns:
            raise ValueError(
                'ValidAreaGeoSampler needs a dataset whose index has a '
                "'filepath' column (e.g. a RasterDataset)"
            )
        self.size = self._map_size(size, units)
        self.min_valid = min_valid
        self.resolution_factor = resolution_factor
        self.invalid_values = tuple(invalid_values or ())
        self.validity = validity
        self.generator = generator
        self.nodata: float | None = getattr(dataset, 'nodata', None)
        self.crs = dataset.crs
        self.cell = (self.size[0] / resolution_factor, self.size[1] / resolution_factor)

        #: per kept file: (xmin, ymax) anchor, time interval, summed-area table
        self.anchors: list[tuple[float, float]] = []
        self.intervals: list[pd.Interval] = []
        self.integrals: list[NDArray[np.float64]] = []
        self.candidates = self._scan_files()
        k = resolution_factor
        self.length = (
            length if length is not None else max(1, len(self.candidates) // (k * k))
        )

    def _map_size(
        self, size: tuple[float, float] | float, units: Units
    ) -> tuple[float, float]:
        """The patch size ``(height, width)`` in CRS units; raise if not positive."""
        height, width = (size, size) if isinstance(size, int | float) else size
        res_x, res_y = float(self.res[0]), float(self.res[1])
        if units == Units.PIXELS:
            height, width = height * res_y, width * res_x
        if height <= 0 or width <= 0:
            raise ValueError(f'size must be positive, got {size}')
        return (float(height), float(width))

    def _scan_files(self) -> NDArray[np.int64]:
        """The candidate patch positions of every file; raise if there is none."""
        candidates: list[NDArray[np.int64]] = []
        best = 0.0
        for hit in range(len(self.index)):
            file_best, file_candidates = self._scan_file(hit)
            best = max(best, file_best)
            if file_candidates is not None:
                candidates.append(file_candidates)
        if not candidates:
            raise ValueError(
                f'no patch of size {self.size} (CRS units) reaches '
                f'min_valid={self.min_valid}: the best valid fraction found is '
                f'{best:.3f}; lower min_valid, shrink size or check the '
                'nodata/invalid_values settings'
            )
        return np.concatenate(candidates)

    def _scan_file(self, hit: int) -> tuple[float, NDArray[np.int64] | None]:
        """Find the patch positions of one indexed file that reach ``min_valid``.

        A file with some keeps its anchor, time interval and summed-area table.

        Args:
            hit: Row of the file in the index.

        Returns:
            The best valid fraction of a patch in the file, and its candidates as
            ``(file id, row, col)`` rows in coarse cells (None if none qualifies).
        """
        k = self.resolution_factor
        xmin, ymin, xmax, ymax = self.index.geometry.iloc[hit].bounds
        rows = math.floor((ymax - ymin) / self.cell[0] + 1e-9)
        cols = math.floor((xmax - xmin) / self.cell[1] + 1e-9)
        if rows < k or cols < k:
            return 0.0, None
        valid = self._coarse_validity(
            str(self.index.filepath.iloc[hit]), (xmin, ymax), rows, cols
        )
        integral = np.zeros((rows + 1, cols + 1), dtype=np.float64)
        integral[1:, 1:] = valid.astype(np.float64).cumsum(0).cumsum(1)
        frac = (
            integral[k:, k:]
            - integral[:-k, k:]
            - integral[k:, :-k]
            + integral[:-k, :-k]
        ) / (k * k)
        r, c = np.nonzero(frac >= self.min_valid - 1e-9)
        if len(r) == 0:
            return float(frac.max()), None
        file_id = len(self.anchors)
        self.anchors.append((xmin, ymax))
        self.intervals.append(
            pd.Interval(self.index.index[hit].left, self.index.index[hit].right)
        )
        self.integrals.append(integral)
        found = np.stack([np.full_like(r, file_id), r, c], axis=1).astype(np.int64)
        return float(frac.max()), found

    def _coarse_validity(
        self, filepath: str, origin: tuple[float, float], rows: int, cols: int
    ) -> NDArray[np.bool_]:
        """Read a decimated validity grid of one file.

        Args:
            filepath: raster file to read.
            origin: ``(xmin, ymax)`` of the grid in the dataset CRS.
            rows: number of coarse rows.
            cols: number of coarse columns.

        Returns:
            Boolean grid ``(rows, cols)``, True where valid.
        """
        with rasterio.open(filepath) as src:
            if self.crs is not None and src.crs is not None and src.crs != self.crs:
                with WarpedVRT(src, crs=self.crs) as vrt:
                    return self._read_validity(vrt, origin, rows, cols)
            return self._read_validity(src, origin, rows, cols)

    def _read_validity(
        self,
        src: DatasetReader | WarpedVRT,
        origin: tuple[float, float],
        rows: int,
        cols: int,
    ) -> NDArray[np.bool_]:
        """Decimated read of the validity of an open raster.

        Args:
            src: open raster in the dataset CRS.
            origin: ``(xmin, ymax)`` of the grid in the dataset CRS.
            rows: number of coarse rows.
            cols: number of coarse columns.

        Returns:
            Boolean grid ``(rows, cols)``, True where valid.
        """
        xmin, ymax = origin
        window = rasterio.windows.from_bounds(
            xmin,
            ymax - rows * self.cell[0],
            xmin + cols * self.cell[1],
            ymax,
            transform=src.transform,
        )
        shape = (rows, cols)
        need_values = (
            self.nodata is not None
            or bool(self.invalid_values)
            or self.validity is not None
        )
        values = (
            src.read(window=window, out_shape=(src.count, *shape), boundless=False)
            if need_values
            else None
        )
        if self.nodata is not None and values is not None:
            nodata = self.nodata
            bad = np.isnan(values) if np.isnan(nodata) else values == nodata
            valid: NDArray[np.bool_] = ~bad.all(axis=0)
        else:
            mask = src.dataset_mask(window=window, out_shape=shape)
            valid = np.asarray(mask) > 0
        if values is not None and self.invalid_values:
            valid &= ~np.isin(values, self.invalid_values).any(axis=0)
        if values is not None and self.validity is not None:
            valid &= np.asarray(self.validity(values), dtype=bool)
        return valid

    def __iter__(self) -> Iterator[tuple[slice, slice, slice]]:
        """Yield random patches with enough valid pixels.

        Yields:
            ``[xmin:xmax, ymin:ymax, tmin:tmax]`` slices to index the dataset.
        """
        k = self.resolution_factor
        cell_h, cell_w = self.cell
        res_x, res_y = float(self.res[0]), float(self.res[1])
        for _ in range(len(self)):
            pick = int(
                torch.randint(len(self.candidates), (1,), generator=self.generator)
            )
            file_id, r, c = (int(v) for v in self.candidates[pick])
            integral = self.integrals[file_id]
            rows, cols = integral.shape[0] - 1, integral.shape[1] - 1
            jitter = torch.rand(2, generator=self.generator).tolist()
            # Whole-pixel jitter within one cell, kept inside the grid.
            dy = math.floor(jitter[0] * cell_h / res_y) * res_y
            dx = math.floor(jitter[1] * cell_w / res_x) * res_x
            y0 = min(r + dy / cell_h, rows - k)
            x0 = min(c + dx / cell_w, cols - k)
            if _window_fraction(integral, y0, x0, k, k) < self.min_valid - 1e-9:
                y0, x0 = float(r), float(c)
            xmin_f, ymax_f = self.anchors[file_id]
            xmin = xmin_f + x0 * cell_w
            ymax = ymax_f - y0 * cell_h
            interval = self.intervals[file_id]
            yield (
                slice(xmin, xmin + self.size[1]),
                slice(ymax - self.size[0], ymax),
                slice(interval.left, interval.right),
            )

    def __len__(self) -> int:
        """Return the number of patches per epoch.

        Returns:
            The epoch length.
        """
        return self.length
