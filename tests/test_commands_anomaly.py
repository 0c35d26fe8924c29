from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import rasterio

from torchgeo_ext.cli import main
from torchgeo_ext.demo_scene import make_demo_scene


@pytest.fixture(scope='module')
def scene(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, np.ndarray]:
    root = tmp_path_factory.mktemp('anomaly')
    return make_demo_scene(root / 'scene.tif', size=40, bands=12, seed=2)


def test_rx_with_vector(
    scene: tuple[Path, np.ndarray], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path, _ = scene
    out, vec = tmp_path / 'scores.tif', tmp_path / 'anomalies.gpkg'
    argv = [str(path), '-o', str(out), '--method', 'rx', '--vector', str(vec)]
    assert main(['anomaly', *argv, '--threshold', '0.99']) == 0
    with rasterio.open(path) as src, rasterio.open(out) as dst:
        assert dst.crs == src.crs
        assert dst.transform == src.transform
        assert dst.shape == src.shape
        scores = dst.read(1)
    gdf = gpd.read_file(vec)
    assert gdf.crs.to_epsg() == 32633
    assert len(gdf) >= 1
    assert {'class_id', 'class_name', 'score'} <= set(gdf.columns)
    assert (gdf['score'] > np.quantile(scores, 0.99)).all()
    assert 'polygons' in capsys.readouterr().out


def test_missing_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / 'missing.tif'
    assert main(['anomaly', str(missing), '-o', str(tmp_path / 'o.tif')]) == 2
    err = capsys.readouterr().err
    assert 'missing.tif' in err
    assert len(err.strip().splitlines()) == 1


def test_not_a_raster(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / 'bad.tif'
    bad.write_bytes(b'garbage')
    assert main(['anomaly', str(bad), '-o', str(tmp_path / 'o.tif')]) == 2
    assert 'bad.tif' in capsys.readouterr().err
    assert not (tmp_path / 'o.tif').exists()


@pytest.mark.filterwarnings('ignore::rasterio.errors.NotGeoreferencedWarning')
def test_no_crs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    plain = tmp_path / 'plain.tif'
    with rasterio.open(
        plain, 'w', driver='GTiff', width=8, height=8, count=3, dtype='float32'
    ) as dst:
        dst.write(np.random.rand(3, 8, 8).astype('float32'))
    for method in ('rx', 'lrx'):
        assert (
            main(
                [
                    'anomaly',
                    str(plain),
                    '-o',
                    str(tmp_path / 'o.tif'),
                    '--method',
                    method,
                ]
            )
            == 2
        )
        err = capsys.readouterr().err
        assert 'plain.tif' in err
        assert 'CRS' in err


def test_unwritable_output(
    scene: tuple[Path, np.ndarray], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path, _ = scene
    assert main(['anomaly', str(path), '-o', str(tmp_path)]) == 2
    assert 'folder' in capsys.readouterr().err


def test_bad_threshold(
    scene: tuple[Path, np.ndarray], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path, _ = scene
    argv = [
        str(path),
        '-o',
        str(tmp_path / 'o.tif'),
        '--vector',
        str(tmp_path / 'v.gpkg'),
    ]
    assert main(['anomaly', *argv, '--threshold', '1.5']) == 2
    assert 'threshold' in capsys.readouterr().err
