"""A grid sampler that tiles whole split cells (validation and test of own imagery)."""

from __future__ import annotations

import copy
import warnings
from collections.abc import Iterator, Sequence
from typing import Any

import shapely
from torchgeo.datasets import GeoDataset
from torchgeo.samplers import GeoSampler, GridGeoSampler


class CellGridSampler(GeoSampler):
    """TorchGeo's ``GridGeoSampler`` over whole split cells, minus patches off the data.

    The cells are multiples of the patch size, so the grid tiles each cell
    exactly (a grid centred on the split's union, as TorchGeo's
    ``GriddedPatchSampler`` draws it, would spill into neighbouring cells).
    Dropped: patches not inside a cell of the split (``GridGeoSampler`` rounds
    the chip count up, so a rounding error of the cell size adds a chip that
    overhangs), and patches off the data footprint (nothing to read there).
    """

    def __init__(
        self,
        dataset: GeoDataset,
        size: int,
        footprint: Any,
        cells: Sequence[shapely.Polygon],
    ) -> None:
        """Initialise the sampler: the grid patches inside ``cells`` and on ``footprint``.

        Args:
            dataset: The dataset whose index rows are the cells (its ``res`` sets
                the tolerance).
            size: Patch side in pixels.
            footprint: Where the data is (a shapely geometry in the dataset's CRS).
            cells: The cells (map polygons) to tile.
        """
        tolerance = 1e-6 * max(dataset.res)
        inside = [c.buffer(tolerance, join_style='mitre') for c in cells]
        prepared = copy.copy(footprint)
        shapely.prepare(prepared)
        self.queries: list[tuple[slice, slice, slice]] = []
        seen = set()
        with warnings.catch_warnings():
            # GridGeoSampler's per-row grid is what we need; only its deprecation
            # warning (TorchGeo's move to GriddedPatchSampler) is silenced
            warnings.simplefilter('ignore', DeprecationWarning)
            grid = GridGeoSampler(dataset, size=size, stride=size)
            queries = list(grid)
        for x, y, t in queries:
            key = (
                round(x.start / tolerance),
                round(y.start / tolerance),
                t.start,
                t.stop,
            )
            box = shapely.box(x.start, y.start, x.stop, y.stop)
            if key in seen or not any(box.within(c) for c in inside):
                continue  # a cell repeated for several files, or an overhang
            if prepared.intersection(box).area <= 0:
                continue  # off the data
            seen.add(key)
            self.queries.append((x, y, t))
        self._length = len(self.queries)

    def __iter__(self) -> Iterator[tuple[slice, slice, slice]]:
        """Yield the patches (always the same, in order).

        Yields:
            ``[xmin:xmax, ymin:ymax, tmin:tmax]`` slices.
        """
        yield from self.queries
