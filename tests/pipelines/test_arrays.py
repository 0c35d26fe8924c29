"""Tests of predict_array: tiled prediction on georeferenced xarray DataArrays."""

from pathlib import Path

import numpy as np
import pytest
import rasterio
import rioxarray  # noqa: F401
import torch
import xarray as xr
from rasterio.transform import from_origin
from torch import nn

from torchgeo_ext.errors import InvalidInputError
from torchgeo_ext.export.raster import write_raster
from torchgeo_ext.pipelines.arrays import predict_array
from torchgeo_ext.pipelines.tiling import predict_raster

# 10 m pixels in UTM 33N at a northing above 5 million
TRANSFORM = from_origin(500_000.0, 5_300_000.0, 10.0, 10.0)


def conv_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 4, 5, padding=2), nn.ReLU(), nn.Conv2d(4, 2, 3, padding=1)
    )


def data_array(nodata: float | None = None) -> xr.DataArray:
    rng = np.random.default_rng(0)
    values = rng.random((3, 70, 90)).astype(np.float32)
    if nodata is not None:
        values[:, 5:9, 11:20] = nodata
    x = TRANSFORM.c + (np.arange(90) + 0.5) * TRANSFORM.a
    y = TRANSFORM.f + (np.arange(70) + 0.5) * TRANSFORM.e
    da = xr.DataArray(
        values, dims=('band', 'y', 'x'), coords={'band': [1, 2, 3], 'y': y, 'x': x}
    )
    da = da.rio.write_crs('EPSG:32633').rio.write_transform(TRANSFORM)
    return da.rio.write_nodata(nodata) if nodata is not None else da


@pytest.mark.parametrize('nodata', [None, -9999.0])
def test_round_trip_equals_predict_raster(tmp_path: Path, nodata: float | None) -> None:
    da = data_array(nodata)
    options = {'tile_size': 32, 'overlap': 8, 'batch_size': 3, 'progress': False}
    result = predict_array(conv_model(), da, **options)  # type: ignore[arg-type]

    source = write_raster(
        tmp_path / 'in.tif',
        da.values,
        crs='EPSG:32633',
        transform=TRANSFORM,
        nodata=nodata,
        cog=False,
    )
    predict_raster(conv_model(), source, tmp_path / 'out.tif', **options)  # type: ignore[arg-type]
    with rasterio.open(tmp_path / 'out.tif') as src:
        expected = src.read()
        expected_nodata = src.nodata

    np.testing.assert_array_equal(result.values, expected)
    assert result.dims == ('band', 'y', 'x')
    assert result.rio.crs.to_epsg() == 32633
    assert result.rio.transform() == TRANSFORM
    np.testing.assert_array_equal(result.x, da.x)
    np.testing.assert_array_equal(result.y, da.y)
    assert np.isnan(result.rio.nodata)
    assert np.isnan(expected_nodata)
    if nodata is not None:
        assert np.isnan(result.values[:, 5:9, 11:20]).all()
        assert not np.isnan(result.values[:, 20:, 30:]).any()


def test_classes_and_band_names() -> None:
    result = predict_array(
        conv_model(),
        data_array(),
        tile_size=32,
        overlap=8,
        output_kind='classes',
        class_names=['water', 'land'],
    )
    assert result.dtype == np.uint8
    assert set(np.unique(result.values)) <= {0, 1}
    assert result.attrs['class_names'] == ['water', 'land']
    assert result.rio.nodata == 255


def test_refuses_array_without_crs() -> None:
    da = data_array()
    da = da.drop_vars('spatial_ref')
    with pytest.raises(InvalidInputError, match='no CRS'):
        predict_array(conv_model(), da)
    with pytest.raises(InvalidInputError, match='dims'):
        predict_array(conv_model(), data_array().transpose('y', 'x', 'band'))
