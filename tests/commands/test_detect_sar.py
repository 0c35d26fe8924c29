"""``torchgeo-ext detect`` with SAR-Net checkpoints on Sentinel-1 GRD-like GeoTIFFs."""

from pathlib import Path

import geopandas as gpd
import lightning
import numpy as np
import pytest
import rasterio
import torch
import torchgeo.main
from rasterio.transform import from_origin

from torchgeo_ext.cli import main
from torchgeo_ext.pipelines.checkpoint_detection import _input_scaling
from torchgeo_ext.trainers.base import PluginTask
from torchgeo_ext.trainers.detection import SuperYOLOTask

CONF = Path(__file__).parents[1] / 'conf'
CRS = 'EPSG:32631'
#: Upper-left corner of the fake scene (UTM 31N, off the Dutch coast), 10 m pixels.
ORIGIN = (560000.0, 5800000.0)
PIXEL = 10.0


def write_grd(
    path: Path, size: tuple[int, int] = (160, 224), polarisations: int = 1
) -> Path:
    """A terrain-corrected Sentinel-1 GRD-like GeoTIFF: uint16 amplitude DN, UTM.

    Sea clutter is Rayleigh-distributed speckle (mean about 60 DN); ships are
    bright elongated blobs (1500-3000 DN) a few pixels wide; VH (second band)
    is about 5x darker.
    """
    rng = np.random.default_rng(0)
    height, width = size
    sea = rng.rayleigh(50.0, size)
    yy, xx = np.mgrid[0:height, 0:width]
    for cy, cx, length, angle in (
        (40, 60, 12, 0.3),
        (110, 170, 18, -0.9),
        (90, 40, 8, 1.2),
    ):
        u = (xx - cx) * np.cos(angle) + (yy - cy) * np.sin(angle)
        v = -(xx - cx) * np.sin(angle) + (yy - cy) * np.cos(angle)
        ship = np.exp(-((u / length) ** 2 + (v / 2.0) ** 2) * 2)
        sea += ship * rng.uniform(1500, 3000)
    bands = [sea] + [sea / 5.0] * (polarisations - 1)
    pixels = np.clip(np.stack(bands), 0, 65535).astype(np.uint16)
    profile = {
        'driver': 'GTiff',
        'width': width,
        'height': height,
        'count': polarisations,
        'dtype': 'uint16',
        'crs': CRS,
        'transform': from_origin(*ORIGIN, PIXEL, PIXEL),
        'nodata': 0,
        'tiled': True,
        'blockxsize': 64,
        'blockysize': 64,
    }
    with rasterio.open(path, 'w', **profile) as dst:
        dst.write(pixels)
        dst.set_band_description(1, 'VV')
    return path


def save(task: PluginTask, path: Path) -> Path:
    trainer = lightning.Trainer(logger=False, enable_checkpointing=False)
    trainer.strategy.connect(task)
    trainer.save_checkpoint(path)
    return path


@pytest.fixture(scope='module')
def sarnet_ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # An initialised SAR-Net with the SSDD data module's normalisation (/255).
    task = SuperYOLOTask(
        model='sarnet_n', num_classes=1, class_names=['ship'], in_channels=1
    )
    task.record_normalisation({'offset': [0.0], 'scale': [255.0]})
    return save(task, tmp_path_factory.mktemp('sarnet') / 'sarnet.ckpt')


def check_ships(path: Path, grd: Path) -> gpd.GeoDataFrame:
    gdf = gpd.read_file(path)
    assert gdf.crs == CRS
    assert set(gdf.geom_type) <= {'Polygon'}
    with rasterio.open(grd) as src:
        left, bottom, right, top = src.bounds
    if len(gdf):
        x0, y0, x1, y1 = gdf.total_bounds
        assert left - 1 <= x0 <= x1 <= right + 1
        assert bottom - 1 <= y0 <= y1 <= top + 1
        assert set(gdf['class_name']) == {'ship'}
    return gdf


def test_detect_single_band_grd(tmp_path: Path, sarnet_ckpt: Path) -> None:
    grd = write_grd(tmp_path / 's1_grd.tif')
    out = tmp_path / 'ships.gpkg'
    argv = ['detect', str(grd), '-o', str(out), '--checkpoint', str(sarnet_ckpt)]
    # Score threshold 0: the untrained model's candidates reach the file, whose
    # CRS, geometry type and extent are what is checked (not the ships).
    options = ['--tile-size', '128', '--overlap', '32', '--score-threshold', '0']
    assert main([*argv, *options, '--value-range', '0', '2000']) == 0
    gdf = check_ships(out, grd)
    assert len(gdf) > 0
    # The recorded normalisation (/255) is the default.
    assert main([*argv, *options]) == 0
    check_ships(out, grd)


def test_detect_selects_the_vv_band(tmp_path: Path, sarnet_ckpt: Path) -> None:
    grd = write_grd(tmp_path / 's1_vv_vh.tif', polarisations=2)
    out = tmp_path / 'ships.gpkg'
    argv = ['detect', str(grd), '-o', str(out), '--checkpoint', str(sarnet_ckpt)]
    options = ['--tile-size', '128', '--overlap', '32', '--value-range', '0', '2000']
    # Two bands for a one-band model: refused, naming the counts.
    assert main([*argv, *options]) == 2
    assert not out.exists()
    assert main([*argv, *options, '--bands', '3']) == 2
    assert main([*argv, *options, '--bands', '1,2']) == 2
    assert main([*argv, *options, '--bands', '1']) == 0
    check_ships(out, grd)


def test_detect_sar_option_errors(
    tmp_path: Path, sarnet_ckpt: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    grd = write_grd(tmp_path / 's1_grd.tif')
    argv = ['detect', str(grd), '-o', str(tmp_path / 'x.gpkg')]
    argv += ['--checkpoint', str(sarnet_ckpt)]
    assert main([*argv, '--value-range', '5', '1']) == 2
    assert '--value-range needs LOW < HIGH' in capsys.readouterr().err
    assert main([*argv, '--value-range', '0', '1', '--scale', '255']) == 2
    assert 'give one' in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main([*argv, '--bands', '0'])
    assert main([*argv, '--bands', '2']) == 2
    assert 'bands 1 to 1' in capsys.readouterr().err


def test_value_range_maps_raster_units_to_the_unit_interval() -> None:
    task = SuperYOLOTask(model='sarnet_n', num_classes=1, in_channels=1)
    task.record_normalisation({'offset': [0.0], 'scale': [255.0]})
    x = torch.tensor([[[[-30.0, -25.0, -10.0, 5.0, 12.0]]]])
    db = _input_scaling(task, 255.0, (-25.0, 5.0))(x)
    torch.testing.assert_close(db, torch.tensor([[[[0.0, 0.0, 0.5, 1.0, 1.0]]]]))
    recorded = _input_scaling(task, 255.0, None)(torch.full((1, 1, 1, 1), 51.0))
    torch.testing.assert_close(recorded, torch.full((1, 1, 1, 1), 0.2))


@pytest.mark.slow
@pytest.mark.parametrize('config', ['sarnet_ssdd', 'sarnet_rssdd'])
def test_torchgeo_fit_then_detect(tmp_path: Path, config: str) -> None:
    # The tiny config trains under `torchgeo fit` (TorchGeo's own command line);
    # its checkpoint records SSDD's normalisation and detects on a GRD.
    root = tmp_path / 'run'
    torchgeo.main.main(
        [
            'fit',
            '--config',
            str(CONF / f'{config}.yaml'),
            '--trainer.default_root_dir',
            str(root),
        ]
    )
    (ckpt,) = (root / 'checkpoints').glob('*.ckpt')
    grd = write_grd(tmp_path / 's1_grd.tif')
    out = tmp_path / 'ships.gpkg'
    argv = ['detect', str(grd), '-o', str(out), '--checkpoint', str(ckpt)]
    argv += ['--tile-size', '128', '--overlap', '32', '--score-threshold', '0']
    assert main([*argv, '--value-range', '0', '2000']) == 0
    check_ships(out, grd)
