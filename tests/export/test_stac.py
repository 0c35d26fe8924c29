"""STAC items as inputs: reading, asset choice, warping to the first asset."""

import json
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.enums import Resampling
from rasterio.warp import reproject
from rasterio.windows import Window

from torchgeo_ext.errors import InvalidInputError, MissingInputError
from torchgeo_ext.export.http_server import LocalRangeServer
from torchgeo_ext.export.raster import open_inputs
from torchgeo_ext.export.sources import AssetPath
from torchgeo_ext.export.stac import (
    is_stac,
    read_items,
    resolve_inputs,
    select_assets,
    stac_assets,
)

DATA = Path(__file__).parents[1] / 'data' / 'remote'
ITEM = DATA / 'scene_a' / 'item.json'

Serve = Callable[[str | os.PathLike[str]], LocalRangeServer]


def test_is_stac() -> None:
    assert is_stac('item.json')
    assert is_stac('https://h/items.json?sig=1')
    assert not is_stac('B04.tif')
    assert not is_stac('/vsicurl/https://h/B04.tif')


def test_assets_by_key_and_common_name() -> None:
    [item] = read_items(ITEM)
    assert item.id == 'scene_a'
    by_name = select_assets(item, ['red', 'green', 'blue', 'nir'])
    assert [a.key for a in by_name] == ['B04', 'B03', 'B02', 'B08']
    assert by_name[0] == os.fspath(DATA / 'scene_a' / 'B04.tif')
    assert {a.item_id for a in by_name} == {'scene_a'}
    assert [a.key for a in select_assets(item, ['B08', 'red'])] == ['B08', 'B04']
    assert [a.key for a in select_assets(item)] == ['B02', 'B03', 'B04', 'B08']
    with pytest.raises(
        InvalidInputError, match=r"no asset 'swir16' .*band names: blue"
    ):
        select_assets(item, ['swir16'])


def test_item_collection_resolves_hrefs_next_to_it() -> None:
    items = stac_assets(DATA / 'items.json', ['red', 'nir'])
    assert [[a.item_id for a in pair] for pair in items] == [
        ['scene_a', 'scene_a'],
        ['scene_b', 'scene_b'],
    ]
    assert items[1][0] == os.fspath(DATA / 'scene_b' / 'B04.tif')
    assert items[1][1] == os.fspath(DATA / 'scene_a' / 'B08.tif')


def test_bad_documents(tmp_path: Path) -> None:
    with pytest.raises(MissingInputError, match=r'gone\.json: no such STAC document'):
        read_items(tmp_path / 'gone.json')
    other = tmp_path / 'catalog.json'
    other.write_text(json.dumps({'type': 'Catalog', 'id': 'c'}))
    with pytest.raises(
        InvalidInputError, match=r"not a STAC Item or ItemCollection \(type 'Catalog'\)"
    ):
        read_items(other)


def test_resolve_inputs_rules() -> None:
    assert resolve_inputs(['a.tif', 'b.tif']) == ['a.tif', 'b.tif']
    [nir] = resolve_inputs([ITEM], ['nir'])
    assert isinstance(nir, AssetPath)
    assert nir.key == 'B08'
    with pytest.raises(
        InvalidInputError, match='--assets chooses assets of a STAC item'
    ):
        resolve_inputs(['a.tif'], ['red'])
    with pytest.raises(InvalidInputError, match='give it alone'):
        resolve_inputs([ITEM, 'a.tif'])
    with pytest.raises(InvalidInputError, match='holds 2 items; run them with'):
        resolve_inputs([DATA / 'items.json'])


def test_assets_on_other_grids_are_warped_to_the_first() -> None:
    inputs = stac_assets(ITEM, ['red', 'nir'])[0]
    with open_inputs(inputs) as stack:
        assert stack.shape == (2, 512, 512)
        assert stack.modalities == {'B04': [0], 'B08': [1]}
        data, _ = stack.read(Window(0, 0, 512, 512))
        crs, transform = stack.crs, stack.transform
    with rasterio.open(DATA / 'scene_a' / 'B04.tif') as red:
        np.testing.assert_array_equal(data[0], red.read(1))
        assert (red.crs, red.transform) == (crs, transform)
    # The 10 cm EPSG:32632 band resampled as GDAL's warper does it (bilinear).
    expected = np.zeros((512, 512), np.uint8)
    with rasterio.open(DATA / 'scene_a' / 'B08.tif') as nir:
        reproject(
            nir.read(1),
            expected,
            src_transform=nir.transform,
            src_crs=nir.crs,
            dst_transform=transform,
            dst_crs=crs,
            resampling=Resampling.bilinear,
        )
    assert np.abs(data[1] - expected.astype(np.float32)).max() <= 1


def test_remote_item_reads_like_the_local_one(serve: Serve) -> None:
    server = serve(DATA)
    remote = stac_assets(
        server.url('scene_a/item.json'), ['red', 'green', 'blue', 'nir']
    )
    assert remote[0][0] == f'/vsicurl/{server.base}/scene_a/B04.tif'
    assert remote[0][3].href == f'{server.base}/scene_a/B08.tif'
    local = stac_assets(ITEM, ['red', 'green', 'blue', 'nir'])
    window = Window(0, 0, 512, 512)
    with open_inputs(remote[0]) as r, open_inputs(local[0]) as loc:
        np.testing.assert_array_equal(r.read(window)[0], loc.read(window)[0])
    assert server.bytes_sent > 0
    collection = stac_assets(server.url('items.json'), ['nir'])
    assert collection[1][0] == f'/vsicurl/{server.base}/scene_a/B08.tif'
