"""Streamed BSDM, STAD and SAP: samples, spools, equality with memory, bounded reads."""

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio
import torch

from torchgeo_ext.demos.scene import synthetic_anomaly_scene
from torchgeo_ext.export.raster import write_raster
from torchgeo_ext.pipelines import anomaly
from torchgeo_ext.pipelines.anomaly import anomaly_raster, detect_anomalies
from torchgeo_ext.pipelines.anomaly_fitted import PixelSample, Spool, pixel_keys

CRS = 'EPSG:32633'
TRANSFORM = (30.0, 0.0, 5e5, 0.0, -30.0, 5e6)


@pytest.fixture(scope='module')
def scene(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, np.ndarray]:
    root = tmp_path_factory.mktemp('fitted')
    cube, _ = synthetic_anomaly_scene(30, 6, seed=3, targets=3)
    cube = cube[:, :, :23]
    cube[:, 4, 6] = np.nan
    cube[:, 17:19, 0:2] = np.nan
    path = write_raster(root / 'scene.tif', cube, crs=CRS, transform=TRANSFORM)
    return path, cube


def read(path: Path) -> np.ndarray:
    with rasterio.open(path) as src:
        return src.read(1)


def test_pixel_sample_is_independent_of_strips() -> None:
    rng = np.random.default_rng(0)
    values = rng.normal(size=(500, 3)).astype(np.float32)
    index = np.arange(500, dtype=np.int64)
    whole = PixelSample(40, seed=2)
    whole.update(index, values)
    strips = PixelSample(40, seed=2)
    for start in range(0, 500, 7):
        strips.update(index[start : start + 7], values[start : start + 7])
    np.testing.assert_array_equal(strips.pixels(), whole.pixels())
    assert whole.pixels().shape == (40, 3)
    # The sample is the pixels of the 40 smallest keys, in raster order.
    chosen = np.sort(np.argsort(pixel_keys(index, 2))[:40])
    np.testing.assert_array_equal(whole.pixels(), values[chosen])
    # Another seed, another sample; a budget above the count keeps everything.
    other = PixelSample(40, seed=3)
    other.update(index, values)
    assert not np.array_equal(other.pixels(), whole.pixels())
    everything = PixelSample(1000, seed=2)
    everything.update(index[::-1].copy(), values[::-1].copy())
    np.testing.assert_array_equal(everything.pixels(), values)


def test_pixel_keys_spread_over_the_scene() -> None:
    # A bottom-k sample of a 100 x 100 scene falls in every quarter about equally.
    index = np.arange(10_000, dtype=np.int64)
    chosen = np.argsort(pixel_keys(index, 0))[:2000]
    quarters = np.bincount((chosen // 100 >= 50) * 2 + (chosen % 100 >= 50))
    assert quarters.min() > 400


def test_spool_round_trip(tmp_path: Path) -> None:
    values = torch.arange(5 * 4 * 3, dtype=torch.float32).reshape(5, 4, 3)
    spool = Spool(tmp_path / 'x.raw', width=4, channels=3, dtype=np.float32)
    spool.write(values[:2])
    spool.write(values[2:].reshape(-1, 3))
    spool.close()
    assert spool.rows == 5
    torch.testing.assert_close(spool.read(1, 4), values[1:4])
    spool.unlink()
    assert not spool.path.exists()


class Reads:
    """Every strip the pipeline reads (``Scene.strips``); reading the whole cube fails."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.rows: list[int] = []
        strips = anomaly.Scene.strips

        def counted(
            scene: anomaly.Scene, *args: Any, **kwargs: Any
        ) -> Iterator[tuple[int, int, torch.Tensor, torch.Tensor]]:
            for row0, row1, pixels, valid in strips(scene, *args, **kwargs):
                self.rows.append(pixels.shape[1])
                yield row0, row1, pixels, valid

        def whole(scene: anomaly.Scene) -> None:
            raise AssertionError('the whole scene was read')

        monkeypatch.setattr(anomaly.Scene, 'strips', counted)
        monkeypatch.setattr(anomaly.Scene, 'cube', whole)


def test_bsdm_streamed_equals_in_memory(
    scene: tuple[Path, np.ndarray], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path, cube = scene
    options: dict[str, Any] = {'iterations': 3, 'batch_size': 32, 'seed': 1}
    reads = Reads(monkeypatch)
    out = anomaly_raster(
        path, tmp_path / 'b.tif', method='bsdm', tile_size=4, **options
    )
    streamed = read(out.scores)
    whole = detect_anomalies(cube, 'bsdm', **options).numpy()
    np.testing.assert_array_equal(np.isnan(streamed), np.isnan(whole))
    np.testing.assert_allclose(streamed, whole, rtol=1e-4, atol=1e-5)
    # Three passes (range and sample, suppression; RX reads the spool), 4 rows at a time.
    assert max(reads.rows) == 4
    assert sum(reads.rows) == 2 * cube.shape[1]


def test_bsdm_fits_on_the_sample(
    scene: tuple[Path, np.ndarray], tmp_path: Path
) -> None:
    # With a budget below the scene, the model is fitted on the seeded sample only.
    from torchgeo_ext.models.bsdm import (
        band_groups,
        fit_on_scene,
        normalise_pixels,
        suppress_groups,
    )
    from torchgeo_ext.models.rx import rx_scores

    path, cube = scene
    out = anomaly_raster(
        path,
        tmp_path / 'b.tif',
        method='bsdm',
        tile_size=8,
        iterations=2,
        fit_pixels=100,
        seed=4,
    )
    x = torch.from_numpy(cube)
    valid = torch.isfinite(x).all(dim=0)
    pixels = x.masked_fill(~valid[None], 0).reshape(x.shape[0], -1).T
    good = pixels[valid.reshape(-1)]
    low, high = good.min(), good.max()
    sample = PixelSample(100, seed=4)
    sample.update(np.flatnonzero(valid.numpy()), good.numpy())
    train = normalise_pixels(torch.from_numpy(sample.pixels()), low, high)
    assert train.shape == (100, x.shape[0])
    groups = band_groups(x.shape[0], None, 4, torch.device('cpu'))
    model = fit_on_scene(train, groups, None, iterations=2, seed=4)
    suppressed = suppress_groups(model, normalise_pixels(pixels, low, high), groups)
    expected = rx_scores(suppressed.T.reshape(-1, *valid.shape), valid).numpy()
    np.testing.assert_allclose(read(out.scores), expected, rtol=1e-4, atol=1e-5)


def test_fit_pixels_is_streamed_only(scene: tuple[Path, np.ndarray]) -> None:
    _, cube = scene
    with pytest.raises(ValueError, match='fit_pixels applies to streamed scoring'):
        detect_anomalies(cube, 'bsdm', iterations=1, fit_pixels=10)
