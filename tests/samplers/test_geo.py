"""Tests for torchgeo_ext.samplers.geo.ValidAreaGeoSampler."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
import shapely
import torch
from pyproj import CRS
from rasterio.transform import from_origin
from torch.utils.data import DataLoader
from torchgeo.datasets import RasterDataset, stack_samples

from torchgeo_ext.samplers.geo import ValidAreaGeoSampler

SIZE = 200
RES = 10.0
LEFT, TOP = 500000.0, 4600000.0
CUT = 140  # columns [0, CUT) are nodata / fill (70 %)


class _Image(RasterDataset):
    filename_glob = 'image*.tif'
    is_image = True


class _Label(RasterDataset):
    filename_glob = 'label*.tif'
    is_image = False


def _write(path: Path, data: np.ndarray, nodata: float | None) -> None:
    with rasterio.open(
        path,
        'w',
        driver='GTiff',
        height=data.shape[0],
        width=data.shape[1],
        count=1,
        dtype=data.dtype,
        crs='EPSG:32633',
        transform=from_origin(LEFT, TOP, RES, RES),
        nodata=nodata,
    ) as dst:
        dst.write(data, 1)


@pytest.fixture
def image_dataset(tmp_path: Path) -> _Image:
    rng = np.random.default_rng(0)
    data = rng.integers(1, 255, (SIZE, SIZE)).astype(np.uint8)
    data[:, :CUT] = 0
    _write(tmp_path / 'image.tif', data, nodata=0)
    return _Image(tmp_path)


@pytest.fixture
def label_dataset(tmp_path: Path) -> _Label:
    rng = np.random.default_rng(1)
    data = rng.integers(0, 4, (SIZE, SIZE)).astype(np.uint8)
    data[:, :CUT] = 10  # FYH fill class
    _write(tmp_path / 'label.tif', data, nodata=None)
    return _Label(tmp_path)


def _in_bounds(x: slice, y: slice) -> bool:
    return bool(
        x.start >= LEFT - 1e-6
        and x.stop <= LEFT + SIZE * RES + 1e-6
        and y.start >= TOP - SIZE * RES - 1e-6
        and y.stop <= TOP + 1e-6
    )


def test_patches_valid_and_in_bounds(image_dataset: _Image) -> None:
    sampler = ValidAreaGeoSampler(
        image_dataset, 32, 40, min_valid=0.5, generator=torch.Generator().manual_seed(0)
    )
    xs = []
    for x, y, t in sampler:
        assert _in_bounds(x, y)
        assert x.stop - x.start == pytest.approx(32 * RES)
        assert y.stop - y.start == pytest.approx(32 * RES)
        image = image_dataset[x, y, t]['image']
        assert image.shape[-2:] == (32, 32)
        assert float((image != 0).float().mean()) >= 0.5
        xs.append(x.start)
    # Jitter gives more positions than the cell-aligned ones.
    assert len(set(xs)) > 3
    # Uniform sampling would put most patches in the fill margin.
    assert min(xs) >= LEFT + (CUT - 16) * RES - 1e-6


def test_high_min_valid(image_dataset: _Image) -> None:
    sampler = ValidAreaGeoSampler(
        image_dataset, 32, 20, min_valid=1.0, generator=torch.Generator().manual_seed(3)
    )
    for x, y, t in sampler:
        image = image_dataset[x, y, t]['image']
        assert bool((image != 0).all())


def test_length_and_determinism(image_dataset: _Image) -> None:
    default = ValidAreaGeoSampler(image_dataset, 32)
    # Valid area 200 x 60 px holds a handful of non-overlapping 32 px patches.
    assert 1 <= len(default) <= (SIZE // 32) * (SIZE // 32)
    assert len(list(default)) == len(default)

    def draw(seed: int) -> list[tuple[float, float]]:
        sampler = ValidAreaGeoSampler(
            image_dataset, 32, 15, generator=torch.Generator().manual_seed(seed)
        )
        assert len(sampler) == 15
        return [(x.start, y.start) for x, y, _ in sampler]

    first = draw(7)
    assert len(first) == 15
    assert first == draw(7)
    assert first != draw(8)


def test_roi(image_dataset: _Image) -> None:
    roi = shapely.box(LEFT + 100 * RES, TOP - 100 * RES, LEFT + 200 * RES, TOP)
    sampler = ValidAreaGeoSampler(image_dataset, 16, 20, roi=roi, min_valid=0.9)
    for x, y, _ in sampler:
        assert x.start >= LEFT + 100 * RES - 1e-6
        assert y.start >= TOP - 100 * RES - 1e-6


def test_all_nodata_raises(tmp_path: Path) -> None:
    _write(tmp_path / 'image.tif', np.zeros((64, 64), np.uint8), nodata=0)
    with pytest.raises(ValueError, match='min_valid'):
        ValidAreaGeoSampler(_Image(tmp_path), 16)


def test_bad_arguments(image_dataset: _Image) -> None:
    with pytest.raises(ValueError, match='min_valid'):
        ValidAreaGeoSampler(image_dataset, 32, min_valid=1.5)
    with pytest.raises(ValueError, match='resolution_factor'):
        ValidAreaGeoSampler(image_dataset, 32, resolution_factor=0)


def test_dataloader(image_dataset: _Image) -> None:
    sampler = ValidAreaGeoSampler(
        image_dataset, 32, 8, generator=torch.Generator().manual_seed(0)
    )
    loader = DataLoader(
        image_dataset, sampler=sampler, batch_size=4, collate_fn=stack_samples
    )
    batches = list(loader)
    assert len(batches) == 2
    for batch in batches:
        assert batch['image'].shape == (4, 1, 32, 32)
        valid = (batch['image'] != 0).float().mean(dim=(1, 2, 3))
        assert bool((valid >= 0.5).all())


def test_fyh_fill_class(label_dataset: _Label) -> None:
    # Inside the fill margin nothing is valid once class 10 is invalid.
    with pytest.raises(ValueError, match='min_valid'):
        ValidAreaGeoSampler(
            label_dataset,
            32,
            min_valid=0.99,
            invalid_values=(10,),
            roi=shapely.box(LEFT, TOP - SIZE * RES, LEFT + CUT * RES, TOP),
        )
    sampler = ValidAreaGeoSampler(
        label_dataset,
        32,
        30,
        min_valid=0.75,
        invalid_values=(10,),
        generator=torch.Generator().manual_seed(0),
    )
    for x, y, t in sampler:
        mask = label_dataset[x, y, t]['mask']
        assert float((mask != 10).float().mean()) >= 0.75


def test_custom_validity(label_dataset: _Label) -> None:
    # Custom rule: class 0 is also invalid (on top of the fill class).
    sampler = ValidAreaGeoSampler(
        label_dataset,
        32,
        10,
        min_valid=0.5,
        invalid_values=(10,),
        validity=lambda values: values[0] != 0,
        resolution_factor=32,
    )
    for x, y, t in sampler:
        mask = label_dataset[x, y, t]['mask']
        valid = (mask != 10) & (mask != 0)
        assert float(valid.float().mean()) >= 0.5


def test_reprojected_dataset(tmp_path: Path) -> None:
    # The dataset warps to a neighbouring UTM zone: validity is read through a
    # WarpedVRT in the dataset CRS.
    data = np.full((SIZE, SIZE), 7, np.uint8)
    data[:, :CUT] = 0
    _write(tmp_path / 'image.tif', data, nodata=0)
    dataset = _Image(tmp_path, crs=CRS.from_epsg(32632))
    sampler = ValidAreaGeoSampler(
        dataset, 16, 20, min_valid=0.9, generator=torch.Generator().manual_seed(0)
    )
    for x, y, t in sampler:
        image = dataset[x, y, t]['image']
        # Warping blurs the coarse estimate at the boundary only slightly.
        assert float((image != 0).float().mean()) >= 0.8
