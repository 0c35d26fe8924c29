"""Tests of VectorObjects: labels from vector files in the patch's pixel coordinates."""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

import geopandas as gpd
import matplotlib.pyplot as plt
import numpy as np
import pytest
import shapely
import torch
from pyproj import CRS
from torchgeo.datasets import DatasetNotFoundError, RasterDataset

from torchgeo_ext.datasets.intersection import StackedIntersectionDataset, intersect
from torchgeo_ext.datasets.vector import VectorObjects
from torchgeo_ext.errors import InvalidInputError
from torchgeo_ext.ops.obb import obb_to_poly, poly_to_obb

ROOT = os.path.join('tests', 'data', 'own')
RGB = os.path.join(ROOT, 'rgb.tif')
IR = os.path.join(ROOT, 'ir.tif')
LABELS = os.path.join(ROOT, 'labels.gpkg')
RES = 0.05
PATCH = 96

Stack = tuple[RasterDataset, VectorObjects, StackedIntersectionDataset]


@pytest.fixture(scope='module')
def truth() -> gpd.GeoDataFrame:
    """The label file reprojected to the RGB CRS independently of the dataset."""
    return gpd.read_file(LABELS).to_crs('EPSG:32633')


@pytest.fixture(scope='module')
def stack() -> Stack:
    rgb = RasterDataset(RGB)
    ir = RasterDataset(IR, crs=rgb.crs, res=rgb.res)
    labels = VectorObjects(LABELS)
    return rgb, labels, intersect(rgb, ir, labels)


def _patches(
    west: float, north: float, n: int, size: int, stride: int | None = None
) -> list[tuple[slice, slice]]:
    """A grid of n x n query slices of ``size`` pixels from (west, north)."""
    out = []
    extent = size * RES
    step = (stride or size) * RES
    for i in range(n):
        for j in range(n):
            x0, y1 = west + j * step, north - i * step
            out.append((slice(x0, x0 + extent), slice(y1 - extent, y1)))
    return out


def _to_map(poly: np.ndarray, x0: float, y1: float) -> np.ndarray:
    """Pixel coordinates (N x 2) back to map coordinates, float64."""
    poly = np.asarray(poly, dtype=np.float64).reshape(-1, 2)
    return np.stack([x0 + poly[:, 0] * RES, y1 - poly[:, 1] * RES], axis=1)


def _iou(a: Any, b: Any) -> float:
    return float(a.intersection(b).area / a.union(b).area)


def test_reads_and_classes(stack: Stack) -> None:
    _, labels, _ = stack
    assert labels.classes == ['car', 'truck']
    assert labels.num_classes == 2
    assert len(labels.objects) == 36
    assert len(labels) == 1
    # reprojected to the first modality by the intersection
    assert labels.crs == CRS.from_epsg(32633)
    assert labels.res == (RES, RES)
    assert labels.skipped == {}
    assert labels.repaired == {}


def test_own_crs_and_mapping(tmp_path: Path) -> None:
    ds = VectorObjects(LABELS, classes={'car': 0, 'truck': 0}, crs=CRS.from_epsg(3857))
    assert ds.crs.to_epsg() == 3857
    assert ds.classes == ['car/truck']
    assert set(ds.objects['label']) == {0}
    ds = VectorObjects(
        LABELS, classes=['truck', 'car', 'bus'], crs=CRS.from_epsg(32633), res=0.5
    )
    assert ds.classes == ['truck', 'car', 'bus']
    assert ds.res == (0.5, 0.5)
    x, y, _ = ds.bounds
    sample = ds[x.start : x.stop, y.start : y.stop]
    assert set(sample['label'].tolist()) == {0, 1}
    names = np.array(ds.classes)[ds.objects['label'].to_numpy()]
    np.testing.assert_array_equal(names, gpd.read_file(LABELS)['class'].to_numpy())


def test_sample_keys(stack: Stack) -> None:
    rgb, _, ds = stack
    x, y, _ = rgb.bounds
    sample = ds[x.start : x.start + PATCH * RES, y.stop - PATCH * RES : y.stop]
    assert sample['image'].shape == (4, PATCH, PATCH)
    assert sample['mask'].shape == (PATCH, PATCH)
    assert sample['mask'].dtype == torch.int64
    n = len(sample['label'])
    assert n > 0
    assert sample['label'].dtype == torch.int64
    assert sample['bbox_xyxy'].shape == (n, 4)
    assert sample['bbox_xyxy'].dtype == torch.float32
    assert sample['bbox'].shape == (n, 8)
    assert sample['bbox'].dtype == torch.float32
    assert sample['transform'].dtype == torch.float64
    assert sample['transform'].shape == (9,)
    assert sample['bounds'].dtype == torch.float64
    assert (sample['bbox_xyxy'] >= 0).all()
    assert (sample['bbox_xyxy'] <= PATCH).all()


def test_boxes_map_back_to_labels(stack: Stack, truth: gpd.GeoDataFrame) -> None:
    """Objects wholly inside a patch: both boxes map back with IoU >= 0.95."""
    rgb, _, ds = stack
    x, y, _ = rgb.bounds
    seen: set[int] = set()
    for qx, qy in _patches(x.start, y.stop, 9, PATCH, PATCH // 2):
        sample = ds[qx, qy]
        patch = shapely.box(qx.start, qy.start, qx.stop, qy.stop)
        inside = truth[truth.within(patch)]
        assert len(sample['label']) >= len(inside)
        xyxy_map = [
            shapely.box(*_to_map(b, qx.start, qy.stop)[[0, 1]].ravel()[[0, 3, 2, 1]])
            for b in sample['bbox_xyxy'].numpy().reshape(-1, 2, 2)
        ]
        rect_map = [
            shapely.Polygon(_to_map(b, qx.start, qy.stop))
            for b in sample['bbox'].numpy()
        ]
        for row_id, row in inside.iterrows():
            envelope = shapely.box(*row.geometry.bounds)
            best = max(range(len(xyxy_map)), key=lambda k: _iou(xyxy_map[k], envelope))
            assert _iou(xyxy_map[best], envelope) >= 0.95
            assert _iou(rect_map[best], row.geometry.minimum_rotated_rectangle) >= 0.95
            if row['kind'] == 'rectangle':
                assert _iou(rect_map[best], row.geometry) >= 0.95
            assert sample['label'][best].item() == ['car', 'truck'].index(row['class'])
            seen.add(int(row_id))
    assert len(seen) >= 30


def test_precision_5cm_utm(stack: Stack, truth: gpd.GeoDataFrame) -> None:
    """At northings near 5e6 m, pixel positions are exact to < 0.01 px (float64)."""
    rgb, labels, _ = stack
    x, y, _ = rgb.bounds
    assert y.stop > 3_000_000
    worst = 0.0
    float32_error = 0.0
    for qx, qy in _patches(x.start, y.stop, 4, 128):
        sample = labels[qx, qy]
        patch = shapely.box(qx.start, qy.start, qx.stop, qy.stop)
        for geometry in truth.geometry[truth.within(patch)]:
            minx, miny, maxx, maxy = geometry.bounds
            expected = np.array(
                [
                    (minx - qx.start) / RES,
                    (qy.stop - maxy) / RES,
                    (maxx - qx.start) / RES,
                    (qy.stop - miny) / RES,
                ]
            )
            error = np.abs(sample['bbox_xyxy'].numpy() - expected).max(axis=1).min()
            worst = max(worst, float(error))
        # what TorchGeo's float32 copy of the query would give
        top32 = float(np.float32(qy.stop))
        float32_error = max(float32_error, abs(top32 - qy.stop) / RES)
    assert worst < 0.01
    assert float32_error > 0.5  # the float32 route would be off by pixels


def test_min_visible(truth: gpd.GeoDataFrame) -> None:
    """A cut object is kept exactly when its visible fraction reaches min_visible."""
    geometry = truth.geometry.iloc[14]
    minx, miny, maxx, maxy = geometry.bounds
    for cut in (0.2, 0.4, 0.6, 0.8):
        # patch whose west edge cuts the object at `cut` of its width
        west = minx + cut * (maxx - minx)
        patch = shapely.box(west, miny - 1, west + PATCH * RES, maxy + 1)
        fraction = geometry.intersection(patch).area / geometry.area
        for min_visible in (0.25, 0.5, 0.75):
            labels = VectorObjects(
                LABELS, crs=CRS.from_epsg(32633), res=RES, min_visible=min_visible
            )
            sample = labels[west : west + PATCH * RES, miny - 1 : maxy + 1]
            # objects of the patch other than this one are whole (spacing > 2 m)
            others = truth[truth.within(patch)]
            n_expected = len(others) + (fraction >= min_visible)
            assert len(sample['label']) == n_expected, (cut, min_visible, fraction)
            # the cut object's visible pixels are in the mask either way
            col = int((geometry.intersection(patch).centroid.x - west) / RES)
            row = int((maxy + 1 - geometry.intersection(patch).centroid.y) / RES)
            assert sample['mask'][row, col] > 0
            kept = sample['bbox_xyxy']
            assert (kept[:, 0] >= 0).all()  # clipped to the patch


def test_mask_values(stack: Stack, truth: gpd.GeoDataFrame) -> None:
    rgb, labels, _ = stack
    x, y, _ = rgb.bounds
    sample = labels[x.start : x.stop, y.start : y.stop]
    mask = sample['mask']
    assert mask.shape == (512, 512)
    for _, row in truth.iterrows():
        c = row.geometry.representative_point()
        col = int((c.x - x.start) / RES)
        r = int((y.stop - c.y) / RES)
        assert mask[r, col].item() == ['car', 'truck'].index(row['class']) + 1
    assert (mask == 0).float().mean() > 0.8


def test_corner_order_contract(stack: Stack) -> None:
    """``bbox`` corners are in the ops.obb order (round trip, clockwise on screen)."""
    rgb, labels, _ = stack
    x, y, _ = rgb.bounds
    bbox = labels[x.start : x.stop, y.start : y.stop]['bbox'].double()
    torch.testing.assert_close(obb_to_poly(poly_to_obb(bbox)), bbox, atol=1e-3, rtol=0)
    pts = bbox.reshape(-1, 4, 2)
    x_, y_ = pts[..., 0], pts[..., 1]
    signed = (x_ * y_.roll(-1, 1) - x_.roll(-1, 1) * y_).sum(1) / 2
    assert (signed > 0).all()  # clockwise with y down


def test_no_crs(tmp_path: Path) -> None:
    path = tmp_path / 'nocrs.gpkg'
    gpd.GeoDataFrame({'class': ['car']}, geometry=[shapely.box(0, 0, 1, 1)]).to_file(
        path
    )
    with pytest.raises(InvalidInputError, match=r'nocrs\.gpkg: has no CRS'):
        VectorObjects(path)


def test_unknown_classes(tmp_path: Path) -> None:
    with pytest.raises(
        InvalidInputError,
        match=r"labels\.gpkg: class values not in classes: \['truck'\]",
    ):
        VectorObjects(LABELS, classes=['car', 'bus'])


def test_missing_column() -> None:
    with pytest.raises(InvalidInputError, match='no class column'):
        VectorObjects(LABELS, class_column='type')


def test_unreadable(tmp_path: Path) -> None:
    path = tmp_path / 'broken.geojson'
    path.write_text('{not json')
    with pytest.raises(InvalidInputError, match=r'broken\.geojson: cannot be read'):
        VectorObjects(path)


def test_not_found(tmp_path: Path) -> None:
    with pytest.raises(DatasetNotFoundError):
        VectorObjects(tmp_path)


def test_empty_layer(tmp_path: Path) -> None:
    # A layer with no features is no missing dataset: one clear error naming it.
    path = tmp_path / 'empty.gpkg'
    gpd.read_file(LABELS).iloc[:0].to_file(path)
    with pytest.raises(
        InvalidInputError, match=r'empty\.gpkg: no objects in the layer'
    ):
        VectorObjects(path)


def test_layer_without_usable_objects(tmp_path: Path) -> None:
    path = tmp_path / 'lines.gpkg'
    gpd.GeoDataFrame(
        {'class': ['car']}, geometry=[shapely.LineString([(0, 0), (1, 1)])], crs=32633
    ).to_file(path)
    with pytest.raises(
        InvalidInputError,
        match=r'lines\.gpkg: no usable objects in the layer; skipped LineString geometry: 1',
    ):
        VectorObjects(path)


def test_one_empty_file_among_others_warns(tmp_path: Path) -> None:
    frame = gpd.read_file(LABELS)
    frame.to_file(tmp_path / 'a.gpkg')
    frame.iloc[:0].to_file(tmp_path / 'b.gpkg')
    with pytest.warns(UserWarning, match=r'b\.gpkg: no usable objects'):
        ds = VectorObjects(tmp_path)
    assert len(ds.objects) == len(frame)


def test_empty_and_invalid_geometries(tmp_path: Path) -> None:
    bowtie = shapely.Polygon([(0, 0), (2, 2), (2, 0), (0, 2)])
    frame = gpd.GeoDataFrame(
        {'class': ['car', 'car', 'car', None, 'truck']},
        geometry=[
            shapely.box(10, 10, 12, 11),
            bowtie,
            shapely.Polygon(),
            shapely.box(20, 20, 21, 21),
            shapely.LineString([(0, 0), (5, 5)]),
        ],
        crs='EPSG:32633',
    )
    path = tmp_path / 'messy.gpkg'
    frame.to_file(path)
    with pytest.warns(UserWarning, match='empty geometry: 1'):
        ds = VectorObjects(path, classes=['car', 'truck'], res=0.1)
    key = str(path)
    assert ds.repaired == {key: {'invalid geometry': 1}}
    assert ds.skipped[key] == {
        'empty geometry': 1,
        'no class value': 1,
        'LineString geometry': 1,
    }
    assert len(ds.objects) == 2
    repaired = ds.objects.geometry.iloc[1]
    assert repaired.is_valid
    assert repaired.area == pytest.approx(2.0)


def test_points(tmp_path: Path) -> None:
    frame = gpd.GeoDataFrame(
        {'class': ['car', 'truck']},
        geometry=[
            shapely.Point(100, 200),
            shapely.MultiPoint([(110, 210), (120, 200)]),
        ],
        crs='EPSG:32633',
    )
    path = tmp_path / 'points.geojson'
    frame.to_file(path)
    with pytest.raises(InvalidInputError, match=r'points\.geojson: has point labels'):
        VectorObjects(path)
    ds = VectorObjects(path, point_size=2.0, res=0.5)
    assert len(ds.objects) == 3
    sample = ds[99:101, 199:201]
    assert sample['bbox_xyxy'].tolist() == [[0.0, 0.0, 4.0, 4.0]]
    # reprojection keeps the squares square in the new CRS
    ds.crs = CRS.from_epsg(32632)
    widths = ds.objects.geometry.bounds
    assert (widths.maxx - widths.minx).to_numpy() == pytest.approx([2.0] * 3)


def test_directory_and_formats(tmp_path: Path) -> None:
    frame = gpd.read_file(LABELS)
    frame.iloc[:10].to_parquet(tmp_path / 'a.parquet')
    frame.iloc[10:20].to_file(tmp_path / 'b.shp')
    frame.iloc[20:].to_file(tmp_path / 'c.geojson')
    (tmp_path / 'notes.txt').write_text('not a vector file')
    ds = VectorObjects(tmp_path, crs=CRS.from_epsg(32633))
    assert len(ds.objects) == 36
    assert len(ds) == 3


def test_requires_res() -> None:
    ds = VectorObjects(LABELS)
    x, y, _ = ds.bounds
    with pytest.raises(ValueError, match='no resolution'):
        ds[x.start : x.stop, y.start : y.stop]


def test_patch_without_objects(truth: gpd.GeoDataFrame) -> None:
    labels = VectorObjects(LABELS, crs=CRS.from_epsg(32633), res=RES)
    # a 1 m square between the objects of the jittered grid
    x, y = truth.geometry.iloc[0].centroid.x + 2.1, truth.geometry.iloc[0].centroid.y
    patch = shapely.box(x, y - 0.5, x + 1, y + 0.5)
    assert not truth.intersects(patch).any()
    sample = labels[x : x + 1, y - 0.5 : y + 0.5]
    assert sample['bbox_xyxy'].shape == (0, 4)
    assert sample['bbox'].shape == (0, 8)
    assert sample['label'].shape == (0,)
    assert sample['mask'].shape == (20, 20)
    assert not sample['mask'].any()


def test_outside_raises_index_error(stack: Stack) -> None:
    _, labels, _ = stack
    with pytest.raises(IndexError):
        labels[0:10, 0:10]


def test_plot(stack: Stack) -> None:
    rgb, labels, ds = stack
    x, y, _ = rgb.bounds
    query = (slice(x.start, x.start + PATCH * RES), slice(y.stop - PATCH * RES, y.stop))
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        fig = labels.plot(ds[query], suptitle='objects')
    plt.close(fig)
    fig = labels.plot(labels[query], show_titles=False)
    plt.close(fig)
