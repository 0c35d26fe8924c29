"""Object-aware patch sampling: every patch built around a labelled object."""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import numpy as np
import shapely
from torchgeo.datasets import GeoDataset, IntersectionDataset, UnionDataset
from torchgeo.samplers import GeoSampler

from ..datasets.vector import VectorObjects

#: Tolerance (map units, relative to the resolution) of the containment tests.
_EPS = 1e-6


def first_modality(dataset: GeoDataset) -> GeoDataset:
    """The dataset that fixes CRS and resolution of an intersection (its first leaf).

    Args:
        dataset: A dataset, possibly an (nested) intersection or union.

    Returns:
        The first non-composite dataset.
    """
    while isinstance(dataset, IntersectionDataset | UnionDataset):
        dataset = dataset.datasets[0]
    return dataset


def grid_origin(dataset: GeoDataset) -> tuple[float, float]:
    """West and north edges of the pixel grid of a dataset's first modality.

    Patches whose corners are on this grid read the first modality without
    resampling.

    Args:
        dataset: A dataset, possibly an intersection.

    Returns:
        ``(west, north)`` in the dataset CRS.
    """
    x, y, _ = first_modality(dataset).bounds
    return float(x.start), float(y.stop)


def find_objects(dataset: GeoDataset) -> VectorObjects:
    """The :class:`VectorObjects` inside a dataset (itself or in an intersection).

    Args:
        dataset: A dataset.

    Returns:
        The first :class:`VectorObjects` found, depth first.

    Raises:
        TypeError: If there is none.
    """
    if isinstance(dataset, VectorObjects):
        return dataset
    for child in getattr(dataset, 'datasets', []):
        try:
            return find_objects(child)
        except TypeError:
            continue
    raise TypeError(f'{type(dataset).__name__} holds no VectorObjects dataset')


def _snap(value: float, origin: float, res: float, lo: float, hi: float) -> float:
    """``value`` moved onto the grid ``origin + k * res`` within ``[lo, hi]`` if possible."""
    k = round((value - origin) / res)
    for candidate in (k, k + 1, k - 1):
        snapped = origin + candidate * res
        if lo - _EPS * res <= snapped <= hi + _EPS * res:
            return snapped
    return value  # the feasible range holds no grid line: stay exact, unsnapped


class ObjectSampler(GeoSampler):
    """Patches that each hold one randomly chosen labelled object whole, plus background.

    The dataset must contain a :class:`~torchgeo_ext.datasets.vector.VectorObjects`
    (alone or intersected with rasters). Each region of the dataset's index
    (one row: a file footprint, or one cell of a geographic split) bounds the
    patches drawn in it: a patch never leaves the region it was drawn for.

    * Object patches: an epoch walks through random permutations of the
      objects that fit whole in a patch inside a region, so with the default
      length every such object is placed whole at least once per epoch. The
      patch is centred on the object and moved by a random offset of up to
      ``jitter`` of the free room (``patch - object`` size) on each axis,
      then kept inside the region and snapped to the pixel grid of the first
      modality where that keeps the object inside.
    * Background patches (``background_fraction`` of the epoch): anywhere in
      a region (chosen by area), on the pixel grid, intersecting its footprint.

    With ``keep_out`` (an area no patch may overlap, such as the held-out cells
    of a geographic split inside the bounds of a training region), patches are
    moved to the nearest position clear of it.

    Objects larger than the patch, not wholly inside any region, or with no
    patch around them clear of ``keep_out`` are never the centre of a patch;
    they are counted in :attr:`unplaceable`.

    Yields ``(x, y, t)`` slices, ``t`` the region's time interval.
    """

    def __init__(
        self,
        dataset: GeoDataset,
        size: tuple[float, float] | float,
        length: int | None = None,
        background_fraction: float = 0.1,
        jitter: float = 0.25,
        *,
        generator: int | np.random.Generator | None = None,
        keep_out: Any = None,
    ) -> None:
        """Initialise a new ObjectSampler.

        Args:
            dataset: A dataset holding a :class:`VectorObjects`.
            size: Patch size in pixels, ``(height, width)`` or one value.
            length: Patches per epoch (default: one per placeable object, plus
                the background share).
            background_fraction: Share of background patches, in ``[0, 1)``.
            jitter: Largest offset from the centred position as a fraction of
                the free room, in ``[0, 1]``.
            generator: Seed or NumPy generator.
            keep_out: A shapely geometry (dataset CRS) that no patch overlaps,
                or None.

        Raises:
            ValueError: For arguments out of range, or when no object fits
                whole in a patch.
        """
        if not 0 <= background_fraction < 1:
            raise ValueError(
                f'background_fraction must be in [0, 1): {background_fraction}'
            )
        if not 0 <= jitter <= 1:
            raise ValueError(f'jitter must be in [0, 1]: {jitter}')
        height, width = (size, size) if isinstance(size, int | float) else size
        self.res = (float(dataset.res[0]), float(dataset.res[1]))
        #: Patch extent (height, width) in map units.
        self.size = (height * self.res[1], width * self.res[0])
        self.background_fraction = background_fraction
        self.jitter = jitter
        self.generator = np.random.default_rng(generator)
        self.origin = grid_origin(dataset)
        self._set_keep_out(keep_out)
        self._collect_regions(dataset.index)
        bounds = find_objects(dataset).objects.geometry.bounds.to_numpy()
        #: Map bounds of each placeable object and the regions it fits in.
        self.placeable: list[tuple[np.ndarray, list[int]]] = []
        for b in bounds:
            fits = self._regions_fitting(b)
            if fits:
                self.placeable.append((b, fits))
        #: Objects that cannot be placed whole in a patch (too big, or cut by regions).
        self.unplaceable = len(bounds) - len(self.placeable)
        if not self.placeable:
            largest = (
                max(
                    ((r[2] - r[0]) / self.res[0], (r[3] - r[1]) / self.res[1])
                    for r in self.regions
                )
                if self.regions
                else (0.0, 0.0)
            )
            raise ValueError(
                f'no labelled object fits whole in a {height} x {width} pixel patch '
                f'inside the sampled area ({len(self.regions)} regions of at least '
                f'that size, the widest {largest[0]:.0f} x {largest[1]:.0f} px; the '
                'area is where the images and the extent of the labels overlap): '
                'use a smaller patch size'
            )
        if length is None:
            n = len(self.placeable)
            length = n + round(n * background_fraction / (1 - background_fraction))
        self.length = int(length)
        areas = np.array([g.area for g in self.geometries], dtype=np.float64)
        self._region_weights = areas / areas.sum()

    def _set_keep_out(self, keep_out: Any) -> None:
        """Keep the area no patch may enter (shrunk by the tolerance) and its edges."""
        self.keep_out = None
        if keep_out is not None and not keep_out.is_empty:
            # shrunk by the tolerance: a patch may touch its border, not enter it
            self.keep_out = keep_out.buffer(-_EPS * max(self.res), join_style='mitre')
            shapely.prepare(self.keep_out)
            # its edges bound the clear positions (exactly so for unions of cells)
            corners = shapely.get_coordinates(keep_out)
            self._edges = (np.unique(corners[:, 0]), np.unique(corners[:, 1]))

    def _collect_regions(self, index: Any) -> None:
        """Keep the index regions (bounds, footprint, time) large enough for a patch."""
        h, w = self.size
        self.regions: list[tuple[float, float, float, float]] = []
        self.geometries: list[Any] = []
        self.intervals = []
        for geometry, interval in zip(index.geometry, index.index, strict=True):
            minx, miny, maxx, maxy = geometry.bounds
            if (
                maxx - minx < w - _EPS * self.res[0]
                or maxy - miny < h - _EPS * self.res[1]
            ):
                continue  # too small for one patch
            self.regions.append((minx, miny, maxx, maxy))
            self.geometries.append(geometry)
            self.intervals.append(interval)

    def _regions_fitting(self, b: np.ndarray) -> list[int]:
        """Regions that hold the object of bounds ``b`` whole in a clear patch."""
        h, w = self.size
        if b[2] - b[0] > w or b[3] - b[1] > h:
            return []
        fits = [
            k
            for k, r in enumerate(self.regions)
            if r[0] <= b[0] + _EPS
            and r[1] <= b[1] + _EPS
            and b[2] <= r[2] + _EPS
            and b[3] <= r[3] + _EPS
        ]
        return [k for k in fits if self._positions(b, k)]

    def __len__(self) -> int:
        """Number of patches per epoch.

        Returns:
            The length.
        """
        return self.length

    def __iter__(self) -> Iterator[tuple[slice, slice, slice]]:
        """Yield the patches of one epoch.

        Yields:
            ``[xmin:xmax, ymin:ymax, tmin:tmax]`` slices to index the dataset.
        """
        rng = self.generator
        n_background = round(self.length * self.background_fraction)
        n_objects = self.length - n_background
        order: list[int] = []
        while len(order) < n_objects:
            order.extend(rng.permutation(len(self.placeable)).tolist())
        kinds = np.array([True] * n_objects + [False] * n_background)
        rng.shuffle(kinds)
        objects = iter(order[:n_objects])
        for is_object in kinds:
            if is_object:
                yield self._around(next(objects))
            else:
                yield self._background()

    def _slices(
        self, left: float, top: float, region: int
    ) -> tuple[slice, slice, slice]:
        h, w = self.size
        interval = self.intervals[region]
        return (
            slice(left, left + w),
            slice(top - h, top),
            slice(interval.left, interval.right),
        )

    def _clear(self, left: float, top: float) -> bool:
        """Whether the patch with this top-left corner stays out of ``keep_out``."""
        if self.keep_out is None:
            return True
        h, w = self.size
        return not self.keep_out.intersects(shapely.box(left, top - h, left + w, top))

    def _feasible(
        self, bounds: np.ndarray, region: int
    ) -> tuple[float, float, float, float]:
        """Ranges of left and top edges keeping object and patch inside the region."""
        minx, miny, maxx, maxy = bounds
        rminx, rminy, rmaxx, rmaxy = self.regions[region]
        h, w = self.size
        return (
            max(rminx, maxx - w),
            min(rmaxx - w, minx),
            max(rminy + h, maxy),
            min(rmaxy, miny + h),
        )

    def _positions(self, bounds: np.ndarray, region: int) -> list[tuple[float, float]]:
        """Grid-snapped top-left corners around an object clear of ``keep_out``.

        Without ``keep_out`` any feasible position will do (one is returned).
        """
        lo_x, hi_x, lo_y, hi_y = self._feasible(bounds, region)
        if self.keep_out is None:
            return [(lo_x, lo_y)]
        h, w = self.size
        # candidates: the range ends, its middle, and patches flush with an edge
        xs = np.concatenate(
            [[lo_x, hi_x, (lo_x + hi_x) / 2], self._edges[0], self._edges[0] - w]
        )
        ys = np.concatenate(
            [[lo_y, hi_y, (lo_y + hi_y) / 2], self._edges[1], self._edges[1] + h]
        )
        xs = np.unique(xs[(xs >= lo_x - _EPS) & (xs <= hi_x + _EPS)])
        ys = np.unique(ys[(ys >= lo_y - _EPS) & (ys <= hi_y + _EPS)])
        found = []
        for x in xs:
            left = _snap(float(x), self.origin[0], self.res[0], lo_x, hi_x)
            for y in ys:
                top = _snap(float(y), self.origin[1], self.res[1], lo_y, hi_y)
                if self._clear(left, top):
                    found.append((left, top))
        return found

    def _around(self, k: int) -> tuple[slice, slice, slice]:
        """A patch holding object ``k`` whole, jittered."""
        rng = self.generator
        bounds, fits = self.placeable[k]
        minx, miny, maxx, maxy = bounds
        region = fits[int(rng.integers(len(fits)))]
        h, w = self.size
        # feasible left edges / top edges: object inside, patch inside the region
        lo_x, hi_x, lo_y, hi_y = self._feasible(bounds, region)
        free_x, free_y = w - (maxx - minx), h - (maxy - miny)
        left = (minx + maxx - w) / 2 + rng.uniform(-1, 1) * self.jitter * free_x / 2
        top = (miny + maxy + h) / 2 + rng.uniform(-1, 1) * self.jitter * free_y / 2
        left = min(max(left, lo_x), hi_x)
        top = min(max(top, lo_y), hi_y)
        left = _snap(left, self.origin[0], self.res[0], lo_x, hi_x)
        top = _snap(top, self.origin[1], self.res[1], lo_y, hi_y)
        if not self._clear(left, top):  # the nearest position out of keep_out
            left, top = min(
                self._positions(bounds, region),
                key=lambda p: (p[0] - left) ** 2 + (p[1] - top) ** 2,
            )
        return self._slices(left, top, region)

    def _background(self) -> tuple[slice, slice, slice]:
        """A patch anywhere in a region (chosen by area), touching its footprint."""
        rng = self.generator
        region = int(rng.choice(len(self.regions), p=self._region_weights))
        rminx, rminy, rmaxx, rmaxy = self.regions[region]
        h, w = self.size
        left = top = math.nan
        for _ in range(20 if self.keep_out is None else 200):
            left = _snap(
                rng.uniform(rminx, rmaxx - w),
                self.origin[0],
                self.res[0],
                rminx,
                rmaxx - w,
            )
            top = _snap(
                rng.uniform(rminy + h, rmaxy),
                self.origin[1],
                self.res[1],
                rminy + h,
                rmaxy,
            )
            box = shapely.box(left, top - h, left + w, top)
            if self.geometries[region].intersection(box).area > 0 and self._clear(
                left, top
            ):
                break
        else:  # a thin footprint: centre the patch on a point inside it
            point = self.geometries[region].representative_point()
            left = min(max(point.x - w / 2, rminx), rmaxx - w)
            top = min(max(point.y + h / 2, rminy + h), rmaxy)
        return self._slices(left, top, region)
