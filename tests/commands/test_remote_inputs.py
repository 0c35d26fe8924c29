"""The raster commands on URLs and STAC items served from 127.0.0.1 (issue 27)."""

import json
import os
from collections.abc import Callable
from pathlib import Path

import geopandas as gpd
import numpy as np
import pyogrio
import pytest
import rasterio
import torch

from tests.commands.test_detect import VEDAI_CLASSES, save
from tests.commands.test_segment import checkpoint, write_scene  # noqa: F401 (fixture)
from torchgeo_ext.cli import main
from torchgeo_ext.export.http_server import LocalRangeServer
from torchgeo_ext.trainers.detection import SuperYOLOTask

DATA = Path(__file__).parents[1] / 'data' / 'remote'
ASSETS = ['--assets', 'red', 'green', 'blue', 'nir']

Serve = Callable[[str | os.PathLike[str]], LocalRangeServer]


@pytest.fixture(scope='module')
def superyolo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    task = SuperYOLOTask(
        class_names=VEDAI_CLASSES, super_resolution=False, ema=False, max_detections=20
    )
    return save(task, tmp_path_factory.mktemp('ckpt') / 'superyolo.ckpt')


def test_detect_stac_item_over_http_equals_local(
    tmp_path: Path, superyolo: Path, serve: Serve
) -> None:
    server = serve(DATA)
    options = [
        '--checkpoint',
        str(superyolo),
        '--tile-size',
        '128',
        '--score-threshold',
        '0',
    ]
    local, remote = tmp_path / 'local.gpkg', tmp_path / 'remote.gpkg'
    item = DATA / 'scene_b' / 'item.json'
    assert main(['detect', str(item), *ASSETS, '-o', str(local), *options]) == 0
    url = server.url('scene_b/item.json')
    assert main(['detect', url, *ASSETS, '-o', str(remote), *options]) == 0
    a, b = gpd.read_file(local), gpd.read_file(remote)
    assert len(a) > 0
    assert a.drop(columns='geometry').equals(b.drop(columns='geometry'))
    assert a.geometry.geom_equals_exact(b.geometry, 1e-9).all()
    meta = pyogrio.read_info(remote)['layer_metadata']
    assert meta['stac_item'] == 'scene_b'
    hrefs = json.loads(meta['stac_assets'])
    assert list(hrefs) == ['B04', 'B03', 'B02', 'B08']
    assert hrefs['B08'] == f'{server.base}/scene_a/B08.tif'
    assert server.bytes_sent > 0


def test_anomaly_on_a_url_equals_local(tmp_path: Path, serve: Serve) -> None:
    served = tmp_path / 'served'
    served.mkdir()
    scene = write_scene(served / 'scene.tif', bands=6, height=70, width=90)
    url = serve(served).url('scene.tif')
    local, remote = tmp_path / 'local.tif', tmp_path / 'remote.tif'
    assert main(['anomaly', str(scene), '-o', str(local), '--tile-size', '32']) == 0
    assert main(['anomaly', url, '-o', str(remote), '--tile-size', '32']) == 0
    with rasterio.open(local) as a, rasterio.open(remote) as b:
        np.testing.assert_array_equal(a.read(), b.read())
        assert (a.crs, a.transform) == (b.crs, b.transform)
    lrx = tmp_path / 'lrx.tif'  # read whole by HyperspectralScene
    assert main(['anomaly', url, '-o', str(lrx), '--method', 'lrx']) == 0


def test_anomaly_on_one_stac_asset_records_it(tmp_path: Path, serve: Serve) -> None:
    server = serve(DATA)
    out = tmp_path / 'scores.tif'
    url = server.url('scene_a/item.json')
    assert main(['anomaly', url, '--assets', 'nir', '-o', str(out)]) == 0
    with rasterio.open(out) as src:
        tags = src.tags()
        assert src.crs.to_epsg() == 32632  # the asset's own grid
    assert tags['stac_item'] == 'scene_a'
    assert json.loads(tags['stac_assets']) == {'B08': f'{server.base}/scene_a/B08.tif'}


def test_segment_on_a_url_equals_local(
    tmp_path: Path,
    checkpoint: Path,  # noqa: F811 (the fixture imported above)
    serve: Serve,
) -> None:
    served = tmp_path / 'served'
    served.mkdir()
    scene = write_scene(served / 'scene.tif')
    url = serve(served).url('scene.tif')
    local, remote = tmp_path / 'local.tif', tmp_path / 'remote.tif'
    assert (
        main(['segment', str(scene), '-o', str(local), '--checkpoint', str(checkpoint)])
        == 0
    )
    assert (
        main(['segment', url, '-o', str(remote), '--checkpoint', str(checkpoint)]) == 0
    )
    with rasterio.open(local) as a, rasterio.open(remote) as b:
        np.testing.assert_array_equal(a.read(), b.read())


def test_bad_remote_inputs_are_one_line(
    tmp_path: Path, serve: Serve, capsys: pytest.CaptureFixture[str]
) -> None:
    server = serve(DATA)
    missing = server.url('scene_a/B99.tif')
    assert main(['anomaly', missing, '-o', str(tmp_path / 'x.tif')]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f'torchgeo-ext anomaly: error: {missing}: not found (')
    assert '404' in err
    assert len(err.splitlines()) == 1
    item = server.url('scene_a/item.json')
    assert main(['anomaly', item, '-o', str(tmp_path / 'x.tif')]) == 2
    assert 'choose one with --assets' in capsys.readouterr().err
    assert (
        main(['anomaly', item, '--assets', 'swir', '-o', str(tmp_path / 'x.tif')]) == 2
    )
    assert "has no asset 'swir'" in capsys.readouterr().err
