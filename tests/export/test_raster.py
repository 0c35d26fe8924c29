import os
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from rasterio.crs import CRS
from rasterio.transform import Affine, from_origin
from rasterio.windows import Window

from torchgeo_ext.errors import InvalidInputError, MissingInputError
from torchgeo_ext.export.atomic import atomic_output
from torchgeo_ext.export.raster import (
    RasterWriter,
    crs_to_string,
    open_inputs,
    to_affine,
    transform_to_tuple,
    write_raster,
)

CUSTOM_PROJ = (
    '+proj=aea +lat_1=29.5 +lat_2=42.5 +lat_0=23 +lon_0=-96.25 '
    '+x_0=0 +y_0=0 +datum=WGS84 +units=m +no_defs'
)
CRSS = {
    'epsg4326': ('EPSG:4326', Affine(0.001, 0, 11.25, 0, -0.001, 48.5)),
    'utm': ('EPSG:32633', from_origin(500123.5, 5400456.25, 0.5, 0.5)),
    'wkt': (
        CRS.from_proj4(CUSTOM_PROJ).to_wkt(),
        Affine(30.0, 2.0, -1234567.0, 1.5, -30.0, 2345678.0),
    ),
}


def files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


@pytest.mark.parametrize('name', sorted(CRSS))
def test_crs_and_transform_round_trip(tmp_path: Path, name: str) -> None:
    crs, transform = CRSS[name]
    array = np.random.default_rng(0).random((2, 40, 30)).astype(np.float32)
    path = write_raster(tmp_path / 'out.tif', array, crs=crs, transform=transform)
    with rasterio.open(path) as src:
        assert src.crs == CRS.from_user_input(crs)
        assert CRS.from_user_input(crs_to_string(src.crs)) == CRS.from_user_input(crs)
        assert tuple(src.transform) == tuple(transform)
        assert (src.width, src.height, src.count) == (30, 40, 2)
        np.testing.assert_array_equal(src.read(), array)
    if name == 'wkt':
        assert CRS.from_user_input(crs).to_epsg() is None
        assert not crs_to_string(crs).startswith('EPSG:')
    else:
        assert crs_to_string(crs) == crs
    assert CRS.from_user_input(crs_to_string(crs)) == CRS.from_user_input(crs)


def test_crs_to_string_pyproj() -> None:
    import pyproj

    assert crs_to_string(pyproj.CRS.from_epsg(32633)) == 'EPSG:32633'
    with pytest.raises(ValueError, match='not a CRS'):
        crs_to_string('EPSG:999999')


def test_transform_helpers() -> None:
    t = from_origin(500000.25, 5000000.75, 10, 10)
    nine = torch.tensor(list(t), dtype=torch.float64)
    assert to_affine(nine) == t
    assert to_affine(nine[:6].numpy()) == t
    assert transform_to_tuple(t) == (10.0, 0.0, 500000.25, 0.0, -10.0, 5000000.75)
    with pytest.raises(ValueError, match='6 or 9'):
        to_affine([1.0, 2.0])


def test_cog_layout_metadata(tmp_path: Path) -> None:
    mask = torch.zeros(600, 520, dtype=torch.int64)
    mask[100:200, 50:80] = 3
    path = write_raster(
        tmp_path / 'mask.tif',
        mask.to(torch.uint8),
        crs='EPSG:32633',
        transform=from_origin(0, 6000, 10, 10),
        nodata=255,
        band_names=['class'],
        tags={'class_names': ['a', 'b', 'c', 'd'], 'model': 'x'},
    )
    with rasterio.open(path) as src:
        assert src.dtypes == ('uint8',)
        assert src.nodata == 255
        assert src.descriptions == ('class',)
        assert src.tags()['class_names'] == '["a", "b", "c", "d"]'
        assert src.tags()['model'] == 'x'
        assert src.block_shapes == [(256, 256)]
        assert src.compression is not None
        assert src.compression.value == 'DEFLATE'
        assert src.overviews(1)  # a COG has internal overviews
        assert src.tags(ns='IMAGE_STRUCTURE').get('LAYOUT') == 'COG'
        np.testing.assert_array_equal(src.read(1), mask.numpy())
    assert files(tmp_path) == ['mask.tif']


def test_write_raster_shapes(tmp_path: Path) -> None:
    t = from_origin(0, 10, 1, 1)
    with pytest.raises(ValueError, match='array'):
        write_raster(
            tmp_path / 'x.tif', np.zeros((1, 2, 3, 4)), crs='EPSG:4326', transform=t
        )
    with pytest.raises(ValueError, match='nodata'):
        write_raster(
            tmp_path / 'x.tif',
            np.zeros((3, 4), np.uint8),
            crs='EPSG:4326',
            transform=t,
            nodata=-1,
        )
    with pytest.raises(ValueError, match='band names'):
        write_raster(
            tmp_path / 'x.tif',
            np.zeros((3, 4)),
            crs='EPSG:4326',
            transform=t,
            band_names=['a', 'b'],
        )
    assert files(tmp_path) == []


class Boom(RuntimeError):
    pass


def _write_then_fail(out: Path) -> None:
    with RasterWriter(
        out, width=300, height=300, count=1, dtype='float32', crs='EPSG:4326',
        transform=from_origin(0, 1, 0.01, 0.01),
    ) as dst:  # fmt: skip
        dst.write(Window(0, 0, 300, 100), np.ones((1, 100, 300), np.float32))
        raise Boom


def test_atomic_raster_failure_mid_write(tmp_path: Path) -> None:
    with pytest.raises(Boom):
        _write_then_fail(tmp_path / 'out.tif')
    assert files(tmp_path) == []


def _half_write(out: Path) -> None:
    with atomic_output(out) as tmp:
        tmp.write_bytes(b'half')
        (tmp.parent / (tmp.name + '.aux.xml')).write_text('side file')
        raise Boom


def _enter(path: Path) -> None:
    with atomic_output(path):
        pass


def test_atomic_failure_keeps_previous_file(tmp_path: Path) -> None:
    out = tmp_path / 'out.tif'
    out.write_bytes(b'old')
    with pytest.raises(Boom):
        _half_write(out)
    assert files(tmp_path) == ['out.tif']
    assert out.read_bytes() == b'old'
    with atomic_output(out) as tmp:
        assert tmp.parent == out.parent
        assert tmp.suffix == '.tif'
        assert not tmp.exists()
        tmp.write_bytes(b'new')
    assert out.read_bytes() == b'new'
    assert files(tmp_path) == ['out.tif']


def test_atomic_unwritable(tmp_path: Path) -> None:
    blocker = tmp_path / 'file'
    blocker.write_text('x')
    with pytest.raises(InvalidInputError, match='cannot write'):
        _enter(blocker / 'out.tif')
    with pytest.raises(InvalidInputError, match='folder'):
        _enter(tmp_path)
    with pytest.raises(InvalidInputError, match='no file'):
        _enter(tmp_path / 'never.tif')
    assert files(tmp_path) == ['file']


def _raster(
    path: Path,
    data: np.ndarray,
    crs: str | None = 'EPSG:32633',
    transform: Affine | None = None,
    nodata: float | None = None,
) -> Path:
    profile = {
        'driver': 'GTiff', 'width': data.shape[2], 'height': data.shape[1], 'count': data.shape[0],
        'dtype': data.dtype.name, 'transform': transform or from_origin(500000, 5000000, 10, 10),
        'nodata': nodata,
    }  # fmt: skip
    if crs is not None:
        profile['crs'] = crs
    with rasterio.open(path, 'w', **profile) as dst:
        dst.write(data)
    return path


def test_open_inputs_stack_and_nodata(tmp_path: Path) -> None:
    rgb = np.arange(3 * 8 * 9, dtype=np.uint16).reshape(3, 8, 9)
    ir = np.full((1, 8, 9), 7.0, dtype=np.float32)
    ir[0, 2, 3] = -1
    rgb[1, 5, 5] = 0
    a = _raster(tmp_path / 'rgb.tif', rgb, nodata=0)
    b = _raster(tmp_path / 'ir.tif', ir, nodata=-1)
    with open_inputs([a, b]) as stack:
        assert stack.shape == (4, 8, 9)
        assert stack.modalities == {'rgb': [0, 1, 2], 'ir': [3]}
        data, valid = stack.read(Window(-2, -1, 12, 10))
    assert data.shape == (4, 10, 12)
    assert data.dtype == np.float32
    # outside the raster: zeros, invalid
    assert not valid[0].any()
    assert not valid[:, :2].any()
    assert not valid[:, 11].any()
    assert (data[:, 0] == 0).all()
    inner, ok = data[:, 1:9, 2:11], valid[1:9, 2:11]
    # nodata in any band masks the pixel in all bands; rgb[0, 0, 0] == 0 is nodata too
    assert not ok[2, 3]
    assert not ok[5, 5]
    assert not ok[0, 0]
    assert (inner[:, 2, 3] == 0).all()
    assert (inner[:, 5, 5] == 0).all()
    assert ok.sum() == 8 * 9 - 3
    np.testing.assert_array_equal(inner[3, 0, 1:], 7.0)
    np.testing.assert_array_equal(inner[:3, 4, 4], rgb[:, 4, 4])


def test_open_inputs_errors(tmp_path: Path) -> None:
    data = np.ones((1, 8, 9), dtype=np.float32)
    a = _raster(tmp_path / 'a.tif', data)
    with pytest.raises(MissingInputError, match=r'missing\.tif'):
        open_inputs([a, tmp_path / 'missing.tif'])
    text = tmp_path / 'notes.tif'
    text.write_text('not a raster')
    with pytest.raises(InvalidInputError, match=r'notes\.tif: not a raster'):
        open_inputs(text)
    nocrs = _raster(tmp_path / 'nocrs.tif', data, crs=None)
    with pytest.raises(InvalidInputError, match=r'nocrs\.tif: the raster has no CRS'):
        open_inputs(nocrs)
    utm34 = _raster(tmp_path / 'utm34.tif', data, crs='EPSG:32634')
    with pytest.raises(InvalidInputError, match=r'utm34.tif: its CRS .*a.tif'):
        open_inputs([a, utm34])
    small = _raster(tmp_path / 'small.tif', data[:, :7])
    with pytest.raises(InvalidInputError, match=r'small.tif: its size 9 x 7 .*a.tif'):
        open_inputs([a, small])
    shifted = _raster(
        tmp_path / 'shifted.tif', data, transform=from_origin(500010, 5000000, 10, 10)
    )
    with pytest.raises(InvalidInputError, match=r'shifted.tif: its transform .*a.tif'):
        open_inputs([a, shifted])


def test_open_inputs_closes_on_error(tmp_path: Path) -> None:
    data = np.ones((1, 4, 4), dtype=np.float32)
    a = _raster(tmp_path / 'a.tif', data)
    with pytest.raises(InvalidInputError):
        open_inputs([a, _raster(tmp_path / 'b.tif', data, crs='EPSG:4326')])
    os.remove(
        a
    )  # would fail on some platforms if a handle leaked; at least it must not raise here


def test_gdal_cache_limit_restores() -> None:
    from rasterio.env import get_gdal_config

    from torchgeo_ext.export.raster import gdal_cache_limit

    before = int(get_gdal_config('GDAL_CACHEMAX'))
    with gdal_cache_limit(1):
        assert int(get_gdal_config('GDAL_CACHEMAX')) == min(before, 2**20)
    assert int(get_gdal_config('GDAL_CACHEMAX')) == before
    with gdal_cache_limit(None):
        assert int(get_gdal_config('GDAL_CACHEMAX')) == before
