"""VRT mosaics of GeoTIFFs."""

from pathlib import Path

import numpy as np
import pytest
import rasterio

from torchgeo_ext.errors import InvalidInputError
from torchgeo_ext.export.raster import write_raster
from torchgeo_ext.export.vrt import write_vrt_mosaic


def test_mosaic_places_each_raster(tmp_path: Path) -> None:
    a = np.arange(12, dtype=np.float32).reshape(1, 3, 4)
    b = np.full((1, 2, 2), 99, dtype=np.float32)
    pa = write_raster(
        tmp_path / 'a.tif',
        a,
        crs='EPSG:32633',
        transform=(10, 0, 1000, 0, -10, 5000),
        nodata=float('nan'),
    )
    # b sits 20 m east of a's right edge and 10 m below its top
    pb = write_raster(
        tmp_path / 'b.tif',
        b,
        crs='EPSG:32633',
        transform=(10, 0, 1060, 0, -10, 4990),
        nodata=float('nan'),
    )
    vrt = write_vrt_mosaic([pa, pb], tmp_path / 'mosaic.vrt')
    assert 'relativeToVRT="1">a.tif' in vrt.read_text()
    with rasterio.open(vrt) as src:
        assert (src.width, src.height) == (8, 3)
        assert src.transform == rasterio.Affine(10, 0, 1000, 0, -10, 5000)
        assert src.crs.to_epsg() == 32633
        out = src.read(1)
    np.testing.assert_array_equal(out[:, :4], a[0])
    np.testing.assert_array_equal(out[1:3, 6:8], b[0])
    assert np.isnan(out[0, 6:]).all()
    assert np.isnan(out[:, 4:6]).all()


def test_mosaic_refuses_another_crs(tmp_path: Path) -> None:
    a = write_raster(
        tmp_path / 'a.tif',
        np.zeros((1, 2, 2), np.uint8),
        crs='EPSG:32633',
        transform=(1, 0, 0, 0, -1, 2),
    )
    b = write_raster(
        tmp_path / 'b.tif',
        np.zeros((1, 2, 2), np.uint8),
        crs='EPSG:32632',
        transform=(1, 0, 0, 0, -1, 2),
    )
    with pytest.raises(
        InvalidInputError, match=r'b\.tif: cannot be mosaicked with .*a\.tif'
    ):
        write_vrt_mosaic([a, b], tmp_path / 'm.vrt')
