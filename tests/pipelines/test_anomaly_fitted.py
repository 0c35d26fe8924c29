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
    """The rows of every strip the pipeline reads (``Scene.strips``, its only reader)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.rows: list[int] = []
        strips = anomaly.Scene.strips

        def counted(
            scene: anomaly.Scene, *args: Any, **kwargs: Any
        ) -> Iterator[tuple[int, int, torch.Tensor, torch.Tensor]]:
            for row0, row1, pixels, valid in strips(scene, *args, **kwargs):
                self.rows.append(pixels.shape[1])
                yield row0, row1, pixels, valid

        monkeypatch.setattr(anomaly.Scene, 'strips', counted)


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


def stad_models() -> dict[str, torch.nn.Module]:
    from torchgeo_ext.models.stad import STADStudent, STADTeacher

    torch.manual_seed(0)
    teacher = STADTeacher(6, stages=2, ffn=16).eval()
    student = STADStudent(6, stages=3, width=4).eval()
    return {'teacher': teacher, 'student': student}


@pytest.mark.parametrize('kind', ['teacher', 'student'])
def test_stad_streamed_equals_in_memory(
    kind: str,
    scene: tuple[Path, np.ndarray],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from torchgeo_ext.trainers import anomaly as trainers

    path, cube = scene
    model = stad_models()[kind]
    monkeypatch.setattr(trainers, 'load_stad', lambda checkpoint: model)
    checkpoint = tmp_path / 'stad.ckpt'
    checkpoint.touch()
    whole = detect_anomalies(cube, 'stad', checkpoint=checkpoint, window=8).numpy()
    reads = Reads(monkeypatch)
    out = anomaly_raster(
        path,
        tmp_path / 's.tif',
        method='stad',
        checkpoint=checkpoint,
        tile_size=4,
        window=8,
    )
    streamed = read(out.scores)
    np.testing.assert_array_equal(np.isnan(streamed), np.isnan(whole))
    np.testing.assert_allclose(streamed, whole, rtol=1e-4, atol=1e-6 * np.nanmax(whole))
    # The teacher reads whole 8 x 8 tiles (8-row strips); the student 4 rows
    # and a halo of twice its convolutions' reach (2 x 2 x 2 rows each side).
    assert max(reads.rows) == (8 if kind == 'teacher' else 4 + 2 * 8)
    # Statistics and RX map in 4-row strips (8 each), then the saliency strips.
    assert len(reads.rows) == 2 * 8 + (4 if kind == 'teacher' else 8)


SAP_OPTIONS: dict[str, Any] = {
    'fit_steps': 2,
    'iterations': 4,
    'clusters': 3,
    'atoms': 5,
    'seed': 1,
}


def test_sap_streamed_equals_in_memory(
    scene: tuple[Path, np.ndarray], tmp_path: Path
) -> None:
    # The scene is under fit_pixels and one window: the in-memory computation.
    path, cube = scene
    out = anomaly_raster(path, tmp_path / 's.tif', method='sap', **SAP_OPTIONS)
    streamed = read(out.scores)
    whole = detect_anomalies(cube, 'sap', **SAP_OPTIONS).numpy()
    np.testing.assert_array_equal(np.isnan(streamed), np.isnan(whole))
    np.testing.assert_allclose(streamed, whole, rtol=1e-4, atol=1e-6)


def test_sap_windows_with_halo(
    scene: tuple[Path, np.ndarray], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # In strips of 8 rows, each strip is one LRR problem with the prior's reach
    # (4 rows) of context on each side, and the background fitted on the scene.
    from torchgeo_ext.models.sap import anomaly_norms, fit_background, scale_scene

    path, cube = scene
    reads = Reads(monkeypatch)
    out = anomaly_raster(
        path, tmp_path / 's.tif', method='sap', tile_size=8, **SAP_OPTIONS
    )
    streamed = read(out.scores)
    # Range and sample in 8-row strips, then 8 rows plus 4 each side.
    assert reads.rows == [8, 8, 8, 6, 16, 16, 16, 14]
    x = torch.from_numpy(cube)
    valid = torch.isfinite(x).all(dim=0)
    good = x[:, valid]
    scaled = scale_scene(x.nan_to_num(0), valid, good.min(), good.max())
    options = {k: v for k, v in SAP_OPTIONS.items() if k != 'iterations'}
    background = fit_background([(scaled, valid)], iterations=4, **options)
    height = cube.shape[1]
    for row0 in range(0, height, 8):
        first, last = max(0, row0 - 4), min(height, row0 + 12)
        mask = valid[first:last]
        expected = torch.full(mask.shape, float('nan'))
        expected[mask] = anomaly_norms(
            scaled[:, first:last], mask, background, 4
        ).float()
        np.testing.assert_allclose(
            streamed[row0 : row0 + 8],
            expected[row0 - first : row0 - first + 8].numpy(),
            rtol=1e-4,
            atol=1e-6,
        )


def test_sap_fits_on_sampled_tiles(
    scene: tuple[Path, np.ndarray], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from torchgeo_ext.models import sap
    from torchgeo_ext.pipelines import anomaly_fitted

    path, cube = scene
    monkeypatch.setattr(anomaly_fitted, 'SAP_TILE', 8)
    boxes = anomaly_fitted.sap_tiles(30, 23, 128, seed=1)
    assert len(boxes) == 2  # 128 pixels: two 8 x 8 tiles of the 4 x 3 grid
    assert all(r0 % 8 == 0 and c0 % 8 == 0 for r0, _, c0, _ in boxes)
    assert anomaly_fitted.sap_tiles(30, 23, 128, seed=2) != boxes
    assert anomaly_fitted.sap_tiles(30, 23, 690, seed=1) == [(0, 30, 0, 23)]
    seen: list[tuple[torch.Tensor, torch.Tensor]] = []
    fit = sap.fit_background

    def recording(tiles: list[tuple[torch.Tensor, torch.Tensor]], **kwargs: Any) -> Any:
        seen.extend(tiles)
        return fit(tiles, **kwargs)

    monkeypatch.setattr(sap, 'fit_background', recording)
    options = {**SAP_OPTIONS, 'fit_pixels': 128}
    anomaly_raster(path, tmp_path / 's.tif', method='sap', **options)
    x = torch.from_numpy(cube)
    valid = torch.isfinite(x).all(dim=0)
    good = x[:, valid]
    scaled = sap.scale_scene(x.nan_to_num(0), valid, good.min(), good.max())
    assert len(seen) == 2
    for (r0, r1, c0, c1), (tile, mask) in zip(boxes, seen, strict=True):
        torch.testing.assert_close(mask, valid[r0:r1, c0:c1])
        torch.testing.assert_close(tile, scaled[:, r0:r1, c0:c1])


def test_fit_pixels_option(
    scene: tuple[Path, np.ndarray], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from torchgeo_ext.cli import main

    path, _ = scene
    argv = ['anomaly', str(path), '-o', str(tmp_path / 'o.tif')]
    assert main([*argv, '--method', 'rx', '--fit-pixels', '10']) == 2
    assert '--fit-pixels applies to bsdm and sap only' in capsys.readouterr().err
    bsdm = ['--method', 'bsdm', '--iterations', '1', '--fit-pixels', '50']
    assert main([*argv, *bsdm]) == 0
    assert np.isfinite(read(tmp_path / 'o.tif')).sum() == 30 * 23 - 5
