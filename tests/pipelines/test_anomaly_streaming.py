"""The streamed anomaly pipeline: strips equal the whole scene, quantiles, masks, tags."""

from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pytest
import rasterio
import torch

from torchgeo_ext.demos.scene import make_demo_scene, synthetic_anomaly_scene
from torchgeo_ext.export.raster import write_raster
from torchgeo_ext.pipelines.anomaly import (
    DETECTORS,
    METHODS,
    anomaly_raster,
    detect_anomalies,
    raster_statistics,
    streamed_quantile,
)

CRS = 'EPSG:32633'
TRANSFORM = (30.0, 0.0, 5e5, 0.0, -30.0, 5e6)


@pytest.fixture(scope='module')
def scene(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, np.ndarray]:
    root = tmp_path_factory.mktemp('streaming')
    cube, _ = synthetic_anomaly_scene(37, 7, seed=4, targets=4)
    cube = cube[:, :, :29]  # not square, not a multiple of the strips
    cube[:, 3, 5] = np.nan  # invalid pixels inside rings and at a border
    cube[:, 20:22, 0:2] = np.nan
    path = write_raster(root / 'scene.tif', cube, crs=CRS, transform=TRANSFORM)
    return path, cube


def read(path: Path) -> np.ndarray:
    with rasterio.open(path) as src:
        return src.read(1)


@pytest.mark.parametrize(
    ('method', 'options'),
    [
        ('rx', {}),
        ('lrx', {'inner': 3, 'outer': 7}),
        ('crd', {'inner': 3, 'outer': 5}),
        ('bsdm', {'iterations': 3, 'batch_size': 64}),
    ],
)
def test_streamed_equals_in_memory(
    method: str, options: dict[str, Any], scene: tuple[Path, np.ndarray], tmp_path: Path
) -> None:
    path, cube = scene
    # Strips of 4 rows: every strip border cuts through the rings.
    out = anomaly_raster(
        path, tmp_path / 's.tif', method=method, tile_size=4, **options
    )
    streamed = read(out.scores)
    whole = detect_anomalies(cube, method, **options).numpy()
    assert np.isnan(streamed[3, 5])
    assert np.isnan(streamed[20:22, 0:2]).all()
    np.testing.assert_array_equal(np.isnan(streamed), np.isnan(whole))
    np.testing.assert_allclose(streamed, whole, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize('method', METHODS)
def test_output_kind_tag(
    method: str, scene: tuple[Path, np.ndarray], tmp_path: Path
) -> None:
    if DETECTORS[method].checkpoint == 'required':
        pytest.skip('needs a checkpoint (tested in tests/commands/test_anomaly.py)')
    path, _ = scene
    options: dict[str, Any] = {'iterations': 1} if method == 'bsdm' else {}
    out = anomaly_raster(path, tmp_path / 'o.tif', method=method, **options).scores
    with rasterio.open(out) as src:
        assert src.tags()['output_kind'] == 'scores'
        assert src.tags()['method'] == method
        assert src.descriptions == (f'{method}_score',)


@pytest.mark.parametrize('outlier', [False, True])
def test_streamed_quantile_equals_numpy(
    outlier: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from torchgeo_ext.pipelines import anomaly

    rng = np.random.default_rng(0)
    values = rng.lognormal(size=(50, 41)).astype(np.float32)
    values[rng.random(values.shape) < 0.1] = np.nan
    values[7, :20] = values[0, 0]  # ties
    if outlier:  # one huge value: the first histogram puts nearly all in one bin
        values[3, 3] = 1e30
    path = write_raster(
        tmp_path / 'scores.tif',
        values[None],
        crs=CRS,
        transform=TRANSFORM,
        nodata=float('nan'),
    )
    finite = values[np.isfinite(values)].astype(np.float64)
    for limit in (10, 1 << 20):  # narrowing passes, or none (all values kept)
        monkeypatch.setattr(anomaly, 'QUANTILE_VALUES', limit)
        for q in (0.001, 0.5, 0.9, 0.999, 0.9999):
            for bins in (4, 1 << 16):
                assert streamed_quantile(path, q, bins) == pytest.approx(
                    np.quantile(finite, q), rel=1e-12
                ), (limit, q, bins)
    with pytest.raises(ValueError, match='quantile'):
        streamed_quantile(path, 1.0)


def test_streamed_quantile_constant(tmp_path: Path) -> None:
    path = write_raster(
        tmp_path / 'flat.tif',
        np.full((1, 9, 9), 2.5, dtype=np.float32),
        crs=CRS,
        transform=TRANSFORM,
    )
    assert streamed_quantile(path, 0.999) == 2.5


def test_polygons_peak_scores(scene: tuple[Path, np.ndarray], tmp_path: Path) -> None:
    path, _ = scene
    vec = tmp_path / 'a.gpkg'
    result = anomaly_raster(path, tmp_path / 'rx.tif', vector=vec, threshold=0.97)
    scores = read(result.scores)
    finite = scores[np.isfinite(scores)]
    assert result.threshold == pytest.approx(np.quantile(finite, 0.97))
    gdf = gpd.read_file(vec)
    assert len(gdf) == result.regions >= 1
    assert (gdf['score'] > result.threshold).all()
    assert gdf['score'].max() == pytest.approx(finite.max())
    assert set(gdf['class_name']) == {'anomaly'}
    assert gdf['score'].dtype == np.float64


def masked_scene(tmp_path: Path) -> tuple[Path, np.ndarray]:
    """A GeoTIFF whose internal mask hides a block with the brightest values."""
    cube, _ = synthetic_anomaly_scene(32, 5, seed=1, targets=0)
    cube[:, 8:12, 8:12] += 50  # a 'sensor gap' full of garbage
    path = tmp_path / 'masked.tif'
    profile = {
        'driver': 'GTiff',
        'width': 32,
        'height': 32,
        'count': 5,
        'dtype': 'float32',
        'crs': CRS,
        'transform': rasterio.Affine(*TRANSFORM),
    }
    with (
        rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True),
        rasterio.open(path, 'w', **profile) as dst,
    ):
        dst.write(cube.astype(np.float32))
        mask = np.full((32, 32), 255, dtype=np.uint8)
        mask[8:12, 8:12] = 0
        dst.write_mask(mask)
    return path, cube


@pytest.mark.parametrize('method', ['rx', 'lrx', 'crd'])
def test_gdal_mask_is_invalid(method: str, tmp_path: Path) -> None:
    path, cube = masked_scene(tmp_path)
    vec = tmp_path / 'v.gpkg'
    options: dict[str, Any] = {} if method == 'rx' else {'inner': 3, 'outer': 5}
    result = anomaly_raster(
        path, tmp_path / 's.tif', method=method, vector=vec, threshold=0.99, **options
    )
    scores = read(result.scores)
    assert np.isnan(scores[8:12, 8:12]).all()
    assert np.isfinite(scores[:8]).all()
    valid = np.ones((32, 32), dtype=bool)
    valid[8:12, 8:12] = False
    expected = detect_anomalies(cube, method, valid_mask=valid, **options).numpy()
    np.testing.assert_allclose(scores, expected, rtol=1e-4, atol=1e-5)
    gap = gpd.GeoSeries.from_xy([5e5 + 30 * 10], [5e6 - 30 * 10], crs=CRS).buffer(
        60, cap_style='square'
    )
    # No polygon covers the gap (touching its edge is allowed).
    assert gpd.read_file(vec).intersection(gap.iloc[0]).area.max() == 0


def stacked_vrt(paths: list[Path], nodata: list[float], size: int) -> str:
    """A VRT stacking one-band files, each band with its own nodata value."""
    bands = ''.join(
        f'<VRTRasterBand dataType="Float32" band="{i + 1}">'
        f'<NoDataValue>{value}</NoDataValue><SimpleSource>'
        f'<SourceFilename relativeToVRT="1">{path.name}</SourceFilename>'
        f'<SourceBand>1</SourceBand></SimpleSource></VRTRasterBand>'
        for i, (path, value) in enumerate(zip(paths, nodata))
    )
    with rasterio.open(paths[0]) as src:
        srs = src.crs.to_wkt()
        geo = ', '.join(str(v) for v in src.transform.to_gdal())
    return (
        f'<VRTDataset rasterXSize="{size}" rasterYSize="{size}"><SRS>{srs}</SRS>'
        f'<GeoTransform>{geo}</GeoTransform>{bands}</VRTDataset>'
    )


def test_per_band_nodata_vrt(tmp_path: Path) -> None:
    cube, _ = synthetic_anomaly_scene(24, 2, seed=5, targets=0)
    cube[0, 2, 3] = -1  # band 1's nodata
    cube[1, 5, 6] = -2  # band 2's nodata
    paths = []
    for band, nodata in ((0, -1.0), (1, -2.0)):
        paths.append(
            write_raster(
                tmp_path / f'b{band}.tif',
                cube[band : band + 1],
                crs=CRS,
                transform=TRANSFORM,
                nodata=nodata,
                cog=False,
            )
        )
    vrt = tmp_path / 'stack.vrt'
    vrt.write_text(stacked_vrt(paths, [-1.0, -2.0], 24))
    stats = raster_statistics(vrt)
    assert stats.count == 24 * 24 - 2
    scores = read(anomaly_raster(vrt, tmp_path / 'rx.tif').scores)
    assert np.isnan(scores[2, 3])
    assert np.isnan(scores[5, 6])
    assert np.isfinite(scores).sum() == 24 * 24 - 2


def test_demo_scene_scores_unchanged(tmp_path: Path) -> None:
    # The streamed pipeline gives the in-memory detectors' scores on the demo scene.
    path, _ = make_demo_scene(tmp_path / 'demo.tif', size=40, bands=12, seed=0)
    with rasterio.open(path) as src:
        cube = src.read()
    for method in ('rx', 'lrx', 'crd'):
        out = anomaly_raster(path, tmp_path / f'{method}.tif', method=method)
        np.testing.assert_allclose(
            read(out.scores),
            detect_anomalies(torch.from_numpy(cube), method).numpy(),
            rtol=1e-4,
            atol=1e-5,
        )
