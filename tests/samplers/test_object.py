"""Tests of ObjectSampler: patches built around labelled objects."""

from __future__ import annotations

import os

import numpy as np
import pytest
import shapely
from torchgeo.datasets import RasterDataset

from torchgeo_ext.datasets.intersection import StackedIntersectionDataset, intersect
from torchgeo_ext.datasets.vector import VectorObjects
from torchgeo_ext.samplers.object import (
    ObjectSampler,
    find_objects,
    first_modality,
    grid_origin,
)

ROOT = os.path.join('tests', 'data', 'own')
RES = 0.05


@pytest.fixture(scope='module')
def dataset() -> StackedIntersectionDataset:
    rgb = RasterDataset(os.path.join(ROOT, 'rgb.tif'))
    ir = RasterDataset(os.path.join(ROOT, 'ir.tif'))
    return intersect(rgb, ir, VectorObjects(os.path.join(ROOT, 'labels.gpkg')))


def _boxes(query: tuple[slice, slice, slice]) -> shapely.Polygon:
    x, y, _ = query
    return shapely.box(x.start, y.start, x.stop, y.stop)


def test_helpers(dataset: StackedIntersectionDataset) -> None:
    assert isinstance(first_modality(dataset), RasterDataset)
    assert grid_origin(dataset) == pytest.approx((500_123.45, 4_999_987.65))
    assert isinstance(find_objects(dataset), VectorObjects)
    with pytest.raises(TypeError, match='no VectorObjects'):
        find_objects(first_modality(dataset))


def test_every_object_whole_once_per_epoch(dataset: StackedIntersectionDataset) -> None:
    objects = find_objects(dataset).objects.geometry
    sampler = ObjectSampler(dataset, 64, generator=0)
    assert sampler.unplaceable == 0
    assert len(sampler) == 36 + 4  # 10 % background
    queries = list(sampler)
    assert len(queries) == len(sampler)
    placed = set()
    empty = 0
    for query in queries:
        inside = np.flatnonzero(objects.within(_boxes(query)).to_numpy())
        placed.update(inside.tolist())
        empty += len(inside) == 0
    assert placed == set(range(36))
    # every object patch holds at least one whole object
    assert len(queries) - empty >= 36


def test_patches_inside_regions_and_on_grid(
    dataset: StackedIntersectionDataset,
) -> None:
    sampler = ObjectSampler(
        dataset, 64, length=100, background_fraction=0.3, generator=1
    )
    west, north = grid_origin(dataset)
    ((rminx, rminy, rmaxx, rmaxy),) = sampler.regions
    n_snapped = 0
    for x, y, t in sampler:
        assert x.stop - x.start == pytest.approx(64 * RES)
        assert y.stop - y.start == pytest.approx(64 * RES)
        assert rminx - 1e-6 <= x.start
        assert x.stop <= rmaxx + 1e-6
        assert rminy - 1e-6 <= y.start
        assert y.stop <= rmaxy + 1e-6
        col = (x.start - west) / RES
        row = (north - y.stop) / RES
        n_snapped += abs(col - round(col)) < 1e-6 and abs(row - round(row)) < 1e-6
        assert t.start <= t.stop
    # off the grid only where one exact position is feasible (object at the
    # edge of the labelled area, which is not on the pixel grid)
    assert n_snapped >= 85


def test_jitter_zero_centres(dataset: StackedIntersectionDataset) -> None:
    objects = find_objects(dataset).objects.geometry.bounds.to_numpy()
    sampler = ObjectSampler(dataset, 64, background_fraction=0, jitter=0, generator=2)
    ((rminx, rminy, rmaxx, rmaxy),) = sampler.regions
    half = 32 * RES
    cx = (objects[:, 0] + objects[:, 2]) / 2
    cy = (objects[:, 1] + objects[:, 3]) / 2
    # objects whose centred patch stays inside the labelled area
    free = (cx - half >= rminx) & (cx + half <= rmaxx)
    free &= (cy - half >= rminy) & (cy + half <= rmaxy)
    assert free.sum() >= 10
    centred = 0
    for x, y, _ in sampler:
        centre = ((x.start + x.stop) / 2, (y.start + y.stop) / 2)
        k = np.hypot(cx - centre[0], cy - centre[1]).argmin()
        if free[k]:
            # centred up to the snap to the pixel grid (half a pixel per axis)
            assert abs(cx[k] - centre[0]) <= RES / 2 + 1e-6
            assert abs(cy[k] - centre[1]) <= RES / 2 + 1e-6
            centred += 1
    assert centred == free.sum()


def test_jitter_moves_objects(dataset: StackedIntersectionDataset) -> None:
    objects = find_objects(dataset).objects.geometry
    sampler = ObjectSampler(dataset, 96, background_fraction=0, jitter=1, generator=3)
    offsets = []
    for query in sampler:
        box = _boxes(query)
        inside = objects[objects.within(box)]
        centre = box.centroid
        offsets.append(min(centre.distance(g.centroid) for g in inside))
    assert max(offsets) > 0.5  # metres: objects are not all in the centre


def test_background_share(dataset: StackedIntersectionDataset) -> None:
    objects = find_objects(dataset).objects.geometry
    sampler = ObjectSampler(
        dataset, 64, length=50, background_fraction=0.5, generator=4
    )
    queries = list(sampler)
    assert len(queries) == 50
    with_objects = sum(bool(objects.within(_boxes(q)).any()) for q in queries)
    assert with_objects >= 25
    # samples can be read for every patch
    for query in queries[:3]:
        assert dataset[query]['image'].shape == (4, 64, 64)


def test_deterministic(dataset: StackedIntersectionDataset) -> None:
    a = [q[0].start for q in ObjectSampler(dataset, 64, generator=5)]
    b = [q[0].start for q in ObjectSampler(dataset, 64, generator=5)]
    assert a == b


def test_objects_too_big(dataset: StackedIntersectionDataset) -> None:
    with pytest.raises(ValueError, match='no labelled object fits whole'):
        ObjectSampler(dataset, 8)


@pytest.mark.parametrize(
    ('kwargs', 'match'),
    [({'background_fraction': 1.0}, 'background_fraction'), ({'jitter': 2}, 'jitter')],
)
def test_bad_arguments(
    dataset: StackedIntersectionDataset, kwargs: dict[str, float], match: str
) -> None:
    with pytest.raises(ValueError, match=match):
        ObjectSampler(dataset, 64, **kwargs)  # type: ignore[arg-type]
