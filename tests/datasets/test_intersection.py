"""Tests of the single-georeference intersection (TorchGeo's 18-value transform fixed)."""

from __future__ import annotations

import os

import pytest
import rasterio
import torch
from rasterio.transform import from_origin
from torchgeo.datasets import RasterDataset

from torchgeo_ext.datasets.intersection import (
    StackedIntersectionDataset,
    intersect,
    merge_intersection_samples,
)
from torchgeo_ext.datasets.vector import VectorObjects

ROOT = os.path.join('tests', 'data', 'own')
RGB = os.path.join(ROOT, 'rgb.tif')
IR = os.path.join(ROOT, 'ir.tif')
LABELS = os.path.join(ROOT, 'labels.gpkg')


def _query(rgb: RasterDataset, size: int = 64) -> tuple[slice, slice]:
    x, y, _ = rgb.bounds
    return slice(x.start, x.start + size * 0.05), slice(y.stop - size * 0.05, y.stop)


def test_plain_torchgeo_concatenates_transforms() -> None:
    """What TorchGeo 0.10 does: one 9-value copy per dataset, float32."""
    rgb = RasterDataset(RGB)
    ir = RasterDataset(IR, crs=rgb.crs, res=rgb.res)
    sample = (rgb & ir & VectorObjects(LABELS))[_query(rgb)]
    assert sample['transform'].shape == (27,)
    assert rgb[_query(rgb)]['transform'].dtype == torch.float32


@pytest.mark.parametrize('how', ['intersect', 'and'])
def test_one_float64_transform(how: str) -> None:
    rgb = RasterDataset(RGB)
    ir = RasterDataset(IR, crs=rgb.crs, res=rgb.res)
    labels = VectorObjects(LABELS)
    if how == 'intersect':
        ds = intersect(rgb, ir, labels)
    else:
        ds = StackedIntersectionDataset(rgb, ir) & labels
    assert isinstance(ds, StackedIntersectionDataset)
    qx, qy = _query(rgb)
    sample = ds[qx, qy]
    assert sample['transform'].shape == (9,)
    assert sample['transform'].dtype == torch.float64
    expected = tuple(from_origin(qx.start, qy.stop, 0.05, 0.05))
    assert sample['transform'].tolist() == list(expected)  # exact, not float32
    assert sample['bounds'][:6].tolist() == [
        qx.start,
        qx.stop,
        0.05,
        qy.start,
        qy.stop,
        0.05,
    ]
    # images stacked in dataset order: RGB bands then IR
    assert sample['image'].shape == (4, 64, 64)
    torch.testing.assert_close(sample['image'][:3], rgb[qx, qy]['image'])
    assert sample['mask'].shape == (64, 64)
    assert 'label' in sample


def test_other_crs_and_resolution_are_warped() -> None:
    """The IR (UTM 32N, 10 cm) is read on the RGB grid (UTM 33N, 5 cm)."""
    rgb = RasterDataset(RGB)
    ir = RasterDataset(IR)
    labels = VectorObjects(LABELS)
    ds = intersect(rgb, ir, labels)
    assert ir.crs == rgb.crs
    assert ir.res == rgb.res
    x, y, _ = rgb.bounds
    sample = ds[x.start : x.stop, y.start : y.stop]
    assert sample['image'].shape == (4, 512, 512)
    # objects are warm in the IR and drawn in the mask: they agree after warping
    warm = sample['image'][3] > 150
    drawn = sample['mask'] > 0
    agreement = (warm == drawn).float().mean().item()
    assert agreement > 0.98


def test_merge_nested_plain_samples() -> None:
    transform = torch.arange(9, dtype=torch.float32)
    inner = {
        'image': torch.zeros(3, 2, 2),
        'transform': torch.cat([transform, transform]),
        'bounds': torch.cat([transform, transform]),
    }
    labels = {'mask': torch.ones(2, 2), 'transform': transform, 'bounds': transform}
    merged = merge_intersection_samples([inner, labels])
    assert merged['transform'].tolist() == transform.tolist()
    assert merged['image'].shape == (3, 2, 2)
    with pytest.raises(ValueError, match="'mask' is returned by more than one"):
        merge_intersection_samples([labels, labels])


def test_intersect_needs_two() -> None:
    with pytest.raises(ValueError, match='at least two'):
        intersect(RasterDataset(RGB))


def test_no_overlap_raises(tmp_path: os.PathLike[str]) -> None:
    path = os.path.join(tmp_path, 'far.tif')
    with rasterio.open(
        path,
        'w',
        driver='GTiff',
        width=8,
        height=8,
        count=1,
        dtype='uint8',
        crs='EPSG:32633',
        transform=from_origin(100_000, 1_000_000, 1, 1),
    ) as dst:
        dst.write(torch.zeros(1, 8, 8, dtype=torch.uint8).numpy())
    with pytest.raises(RuntimeError, match='no spatial intersection'):
        intersect(RasterDataset(RGB), RasterDataset(path))
