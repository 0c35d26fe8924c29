"""Remote inputs: GDAL paths, checks with a GDAL open, reads over local HTTP."""

import json
import os
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import rasterio
import rasterio.shutil
from rasterio.env import get_gdal_config
from rasterio.windows import Window

from torchgeo_ext.errors import InvalidInputError, MissingInputError
from torchgeo_ext.export.http_server import LocalRangeServer
from torchgeo_ext.export.raster import open_inputs, write_raster
from torchgeo_ext.export.sources import (
    CLOUD_READ_OPTIONS,
    AssetPath,
    block_windows,
    check_source,
    gdal_path,
    is_network,
    is_virtual,
    recording_sources,
    source_name,
)
from torchgeo_ext.export.vector import write_vector

OWN = Path(__file__).parents[1] / 'data' / 'own'

Serve = Callable[[str | os.PathLike[str]], LocalRangeServer]


@pytest.fixture
def cog(tmp_path: Path) -> Path:
    """A Cloud-Optimized GeoTIFF (256 x 256 blocks) of the own-imagery fake scene.

    The 512 x 512 scene is repeated 4 x 4 times (2048 x 2048): a window is then
    a small part of the file, as in real scenes.
    """
    with rasterio.open(OWN / 'rgb.tif') as src:
        data, profile = src.read(), src.profile
    tiled = tmp_path / 'tiled.tif'
    profile.update(width=2048, height=2048, tiled=True, blockxsize=256, blockysize=256)
    with rasterio.open(tiled, 'w', **profile) as dst:
        dst.write(np.tile(data, (1, 4, 4)))
    out = tmp_path / 'served' / 'rgb.tif'
    out.parent.mkdir()
    rasterio.shutil.copy(tiled, out, driver='COG', blocksize=256, compress='DEFLATE')
    return out


@pytest.mark.parametrize(
    ('given', 'expected'),
    [
        ('https://host/a/b.tif', '/vsicurl/https://host/a/b.tif'),
        ('http://host/b.tif?x=1', '/vsicurl/http://host/b.tif?x=1'),
        ('s3://bucket/key/b.tif', '/vsis3/bucket/key/b.tif'),
        ('gs://bucket/b.tif', '/vsigs/bucket/b.tif'),
        ('az://container/b.tif', '/vsiaz/container/b.tif'),
        ('/vsizip/data.zip/b.tif', '/vsizip/data.zip/b.tif'),
        ('file:///data/b.tif', '/data/b.tif'),
        ('scene.vrt', 'scene.vrt'),
    ],
)
def test_gdal_path(given: str, expected: str) -> None:
    assert gdal_path(given) == expected


def test_kinds_of_paths() -> None:
    assert is_virtual('https://h/x.tif')
    assert is_network('https://h/x.tif')
    assert is_virtual('/vsizip/a.zip/x.tif')
    assert not is_network('/vsizip/a.zip/x.tif')
    assert is_network('/vsizip//vsicurl/https://h/a.zip/x.tif')
    assert not is_virtual('data/x.tif')
    assert not is_network(Path('data/x.tif'))
    assert source_name('https://h/x/B04.tif?sig=a.b') == 'B04'
    assert source_name('/vsizip/a.zip/dir/ir.tif') == 'ir'
    asset = AssetPath('https://h/x/B04.tif', item_id='s2', key='red')
    assert asset == '/vsicurl/https://h/x/B04.tif'
    assert source_name(asset) == 'red'


def test_remote_read_equals_local_and_fetches_only_the_window(
    cog: Path, serve: Serve
) -> None:
    server = serve(cog.parent)
    url = server.url('rgb.tif')
    window = Window(0, 0, 256, 256)
    with open_inputs(url) as remote, open_inputs(cog) as local:
        assert remote.paths == [url]
        assert (remote.crs, remote.transform, remote.shape) == (
            local.crs,
            local.transform,
            local.shape,
        )
        assert remote.modalities == local.modalities == {'rgb': [0, 1, 2]}
        assert remote.block_shape == (256, 256)
        data, valid = remote.read(window)
        fetched = server.bytes_sent
        expected, expected_valid = local.read(window)
        np.testing.assert_array_equal(data, expected)
        np.testing.assert_array_equal(valid, expected_valid)
        # One block of 64 (and the header): a small part of the file.
        assert 0 < fetched < cog.stat().st_size / 4
        whole = Window(0, 0, local.width, local.height)
        np.testing.assert_array_equal(remote.read(whole)[0], local.read(whole)[0])


def test_cloud_options_only_while_a_remote_stack_is_open(
    cog: Path, serve: Serve
) -> None:
    url = serve(cog.parent).url('rgb.tif')
    before = get_gdal_config('GDAL_DISABLE_READDIR_ON_OPEN')
    with open_inputs(cog):
        assert get_gdal_config('GDAL_DISABLE_READDIR_ON_OPEN') == before
    with open_inputs(url):
        for key, value in CLOUD_READ_OPTIONS.items():
            assert str(get_gdal_config(key, normalize=False)) == str(value), key
    assert get_gdal_config('GDAL_DISABLE_READDIR_ON_OPEN') == before


def test_remote_errors_name_the_path_and_gdal_reason(
    cog: Path, tmp_path: Path, serve: Serve
) -> None:
    (cog.parent / 'notes.tif').write_text('not a raster')
    server = serve(cog.parent)
    missing = server.url('missing.tif')
    with pytest.raises(MissingInputError, match=rf'^{missing}: not found \(.*404'):
        open_inputs([server.url('rgb.tif'), missing])
    with pytest.raises(InvalidInputError, match=r'notes\.tif: GDAL cannot open it \('):
        check_source(server.url('notes.tif'))
    with pytest.raises(MissingInputError, match=r'gone\.zip/rgb\.tif: not found'):
        check_source(f'/vsizip/{tmp_path}/gone.zip/rgb.tif')
    with pytest.raises(MissingInputError, match=r'nothing\.tif: no such file'):
        check_source(tmp_path / 'nothing.tif')


def test_vsizip_and_vrt_inputs(cog: Path, tmp_path: Path, serve: Serve) -> None:
    archive = tmp_path / 'served' / 'scenes.zip'
    with zipfile.ZipFile(archive, 'w') as zf:
        zf.write(cog, 'dir/rgb.tif')
    vrt = tmp_path / 'rgb.vrt'
    with rasterio.open(cog) as src:
        w, h = src.width, src.height
        bands = ''.join(
            f'<VRTRasterBand dataType="Byte" band="{b}"><SimpleSource>'
            f'<SourceFilename relativeToVRT="0">{cog}</SourceFilename>'
            f'<SourceBand>{b}</SourceBand></SimpleSource></VRTRasterBand>'
            for b in (1, 2, 3)
        )
        vrt.write_text(
            f'<VRTDataset rasterXSize="{w}" rasterYSize="{h}">'
            f'<SRS>{src.crs.to_wkt()}</SRS>'
            f'<GeoTransform>{", ".join(map(str, src.transform.to_gdal()))}'
            f'</GeoTransform>{bands}</VRTDataset>'
        )
    url = serve(archive.parent).url('scenes.zip')
    window = Window(100, 50, 200, 300)
    with open_inputs(cog) as local:
        expected = local.read(window)[0]
    for path in (
        f'/vsizip/{archive}/dir/rgb.tif',
        f'/vsizip//vsicurl/{url}/dir/rgb.tif',
        vrt,
    ):
        with open_inputs(path) as stack:
            np.testing.assert_array_equal(stack.read(window)[0], expected)


def test_recording_sources_tags_rasters_and_vectors(tmp_path: Path) -> None:
    import geopandas as gpd
    import pyogrio
    import shapely

    inputs = [
        AssetPath('https://h/s2/B04.tif', item_id='S2A_1', key='red'),
        AssetPath('https://h/s2/B08.tif', item_id='S2A_1', key='nir'),
    ]
    hrefs = {'red': 'https://h/s2/B04.tif', 'nir': 'https://h/s2/B08.tif'}
    gdf = gpd.GeoDataFrame(
        {'score': [1.0]}, geometry=[shapely.box(0, 0, 1, 1)], crs=32633
    )
    with recording_sources(inputs):
        raster = write_raster(
            tmp_path / 'out.tif',
            np.zeros((1, 4, 4), np.float32),
            crs='EPSG:32633',
            transform=(1, 0, 0, 0, -1, 4),
            tags={'kind': 'test'},
        )
        gpkg = write_vector(tmp_path / 'out.gpkg', gdf)
        geojson = write_vector(tmp_path / 'out.geojson', gdf)
        parquet = write_vector(tmp_path / 'out.parquet', gdf)
    plain = write_raster(
        tmp_path / 'plain.tif',
        np.zeros((1, 4, 4), np.float32),
        crs='EPSG:32633',
        transform=(1, 0, 0, 0, -1, 4),
    )
    with rasterio.open(raster) as src:
        tags = src.tags()
    assert tags['stac_item'] == 'S2A_1'
    assert tags['kind'] == 'test'
    assert json.loads(tags['stac_assets']) == hrefs
    with rasterio.open(plain) as src:
        assert 'stac_item' not in src.tags()
    meta = pyogrio.read_info(gpkg)['layer_metadata']
    assert meta['stac_item'] == 'S2A_1'
    assert json.loads(meta['stac_assets']) == hrefs
    described = json.loads(pyogrio.read_info(geojson)['layer_metadata']['DESCRIPTION'])
    assert described['stac_item'] == 'S2A_1'
    assert gpd.read_parquet(parquet).attrs['stac_item'] == 'S2A_1'


def test_block_windows_cover_the_raster_once_on_block_edges() -> None:
    windows = list(block_windows(700, 530, (256, 256), 300))
    covered = np.zeros((530, 700), dtype=int)
    for w in windows:
        assert w.col_off % 256 == 0
        assert w.row_off % 256 == 0
        covered[w.row_off : w.row_off + w.height, w.col_off : w.col_off + w.width] += 1
    assert (covered == 1).all()
    assert {(w.width, w.height) for w in windows} >= {(512, 512)}
