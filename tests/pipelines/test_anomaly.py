from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch

from torchgeo_ext.demos.scene import make_demo_scene, synthetic_anomaly_scene
from torchgeo_ext.errors import InvalidInputError, MissingInputError
from torchgeo_ext.export.raster import write_raster
from torchgeo_ext.metrics.anomaly import auc_d_f
from torchgeo_ext.models.rx import rx_scores
from torchgeo_ext.pipelines.anomaly import raster_statistics, rx_raster


def test_raster_statistics_windows_and_nodata(tmp_path: Path) -> None:
    cube, _ = synthetic_anomaly_scene(40, 6, seed=3)
    cube[:, 5, 7] = -9999
    path = write_raster(
        tmp_path / 'scene.tif',
        cube,
        crs='EPSG:32633',
        transform=(30, 0, 5e5, 0, -30, 5e6),
        nodata=-9999,
    )
    stats = raster_statistics(path, window_size=16)  # 9 windows, ragged edges
    valid = np.ones((40, 40), dtype=bool)
    valid[5, 7] = False
    pixels = torch.from_numpy(cube[:, valid].T).double()
    assert stats.count == 40 * 40 - 1
    torch.testing.assert_close(stats.mean, pixels.mean(0))
    torch.testing.assert_close(stats.covariance, torch.cov(pixels.T))


def test_rx_raster_equals_in_memory(tmp_path: Path) -> None:
    path, truth = make_demo_scene(tmp_path / 'scene.tif', size=48, bands=12)
    out = rx_raster(path, tmp_path / 'rx.tif', tile_size=20)
    with rasterio.open(path) as src, rasterio.open(out) as dst:
        assert dst.crs == src.crs
        assert dst.transform == src.transform
        assert (dst.width, dst.height, dst.count) == (48, 48, 1)
        scores = dst.read(1)
        cube = src.read()
    expected = rx_scores(cube).numpy()
    np.testing.assert_allclose(scores, expected, rtol=1e-3, atol=1e-3)
    assert auc_d_f(torch.from_numpy(scores), torch.from_numpy(truth)) > 0.9


def test_rx_raster_nodata(tmp_path: Path) -> None:
    cube, _ = synthetic_anomaly_scene(32, 5)
    cube[:, 0:3, 0:4] = np.nan
    path = write_raster(
        tmp_path / 'scene.tif',
        cube,
        crs='EPSG:4326',
        transform=(0.1, 0, 10, 0, -0.1, 50),
    )
    with rasterio.open(rx_raster(path, tmp_path / 'rx.tif', tile_size=16)) as dst:
        scores = dst.read(1)
    assert np.isnan(scores[0:3, 0:4]).all()
    assert np.isfinite(scores[3:]).all()


@pytest.mark.filterwarnings('ignore::rasterio.errors.NotGeoreferencedWarning')
def test_raster_statistics_bad_inputs(tmp_path: Path) -> None:
    with pytest.raises(MissingInputError):
        raster_statistics(tmp_path / 'missing.tif')
    text = tmp_path / 'text.tif'
    text.write_text('not a raster')
    with pytest.raises(InvalidInputError, match=r'text\.tif'):
        raster_statistics(text)
    plain = tmp_path / 'plain.tif'
    with rasterio.open(
        plain, 'w', driver='GTiff', width=4, height=4, count=2, dtype='float32'
    ) as dst:
        dst.write(np.random.rand(2, 4, 4).astype('float32'))
    with pytest.raises(InvalidInputError, match='CRS'):
        raster_statistics(plain)
