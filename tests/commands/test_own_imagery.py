"""Your own imagery end to end: configs, fit -> checkpoint -> detect / segment via the CLI."""

from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pytest
import rasterio
import torch
from rasterio.warp import Resampling, reproject

from torchgeo_ext.cli import main
from torchgeo_ext.datamodules.geo import compute_normalisation
from torchgeo_ext.trainers.base import load_task

ROOT = Path(__file__).parents[2]
OWN = ROOT / 'tests' / 'data' / 'own'
RGB, IR, LABELS = OWN / 'rgb.tif', OWN / 'ir.tif', OWN / 'labels.gpkg'
PAPER_CONFIGS = sorted((ROOT / 'configs' / 'own').glob('*.yaml'))
TINY_CONFIGS = sorted((ROOT / 'tests' / 'conf').glob('own_*.yaml'))
DATA = ['--data.init_args.images', f'[{RGB}, {IR}]', '--data.init_args.labels']


def test_configs_exist() -> None:
    assert {p.stem for p in PAPER_CONFIGS} >= {'superyolo', 'lma', 'dianet'}
    assert {p.stem for p in TINY_CONFIGS} >= {'own_superyolo', 'own_lma', 'own_dianet'}


@pytest.mark.parametrize(
    'config', PAPER_CONFIGS + TINY_CONFIGS, ids=lambda p: f'{p.parent.name}/{p.stem}'
)
def test_config_parses(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # the command of docs/own_imagery.md: the config plus images and labels
    with pytest.raises(SystemExit) as info:
        main(['fit', '--config', str(config), *DATA, str(LABELS), '--print_config'])
    assert info.value.code in (0, None)
    printed = capsys.readouterr().out
    assert 'torchgeo_ext.datamodules.geo.Geo' in printed
    assert str(LABELS) in printed


def fit(config: str, root: Path, *extra: str) -> Path:
    argv = ['fit', '--config', str(ROOT / 'tests' / 'conf' / config)]
    argv += ['--trainer.default_root_dir', str(root), *extra]
    assert main(argv) == 0
    (checkpoint,) = sorted(root.rglob('*.ckpt'))
    return checkpoint


def co_registered_ir(path: Path) -> Path:
    """The IR raster (10 cm, UTM 32N) warped onto the RGB grid (5 cm, UTM 33N)."""
    with rasterio.open(RGB) as rgb, rasterio.open(IR) as ir:
        out = np.zeros((1, rgb.height, rgb.width), dtype=np.uint8)
        reproject(
            ir.read(),
            out,
            src_transform=ir.transform,
            src_crs=ir.crs,
            dst_transform=rgb.transform,
            dst_crs=rgb.crs,
            resampling=Resampling.bilinear,
        )
        profile = rgb.profile | {'count': 1}
    with rasterio.open(path, 'w', **profile) as dst:
        dst.write(out)
    return path


@pytest.mark.slow
def test_fit_checkpoint_detect_via_cli(tmp_path: Path) -> None:
    # num_classes 1 in the config: the task adopts the labels' 2 classes
    checkpoint = fit(
        'own_superyolo.yaml', tmp_path / 'run', '--model.init_args.num_classes', '1'
    )
    task: Any = load_task(checkpoint)
    assert task.hparams['num_classes'] == 2
    assert task.class_names == ['car', 'truck']
    expected = compute_normalisation([[str(RGB)], [str(IR)]], 'auto').as_dict()
    assert task.normalisation == expected

    ir = co_registered_ir(tmp_path / 'ir_on_rgb.tif')
    out = tmp_path / 'found.gpkg'
    argv = [
        'detect',
        str(RGB),
        str(ir),
        '-o',
        str(out),
        '--checkpoint',
        str(checkpoint),
    ]
    assert main([*argv, '--tile-size', '256', '--score-threshold', '1e-6']) == 0
    found = gpd.read_file(out)
    with rasterio.open(RGB) as src:
        crs, bounds = src.crs, src.bounds
    assert found.crs == crs  # the raster's CRS (UTM 33N), not the labels' EPSG:4326
    assert len(found) > 0
    assert set(found['class_name']) <= {'car', 'truck'}
    minx, miny, maxx, maxy = found.total_bounds
    assert minx >= bounds.left - 1e-6
    assert maxx <= bounds.right + 1e-6
    assert miny >= bounds.bottom - 1e-6
    assert maxy <= bounds.top + 1e-6
    # a recorded normalisation leaves no room for --scale
    assert main([*argv, '--scale', '255']) == 2


@pytest.mark.slow
def test_lma_fits_from_own_imagery(tmp_path: Path) -> None:
    checkpoint = fit('own_lma.yaml', tmp_path / 'run')
    task: Any = load_task(checkpoint)
    assert task.class_names == ['car', 'truck']
    assert task.normalisation is not None
    out = task.predict_step({'image': task.normalise(torch.zeros(1, 4, 64, 64))})
    assert out['prediction_bbox'][0].shape[-1] == 8


@pytest.mark.slow
def test_dianet_fit_checkpoint_segment_via_cli(tmp_path: Path) -> None:
    # in_channels 3 and num_classes 2 in the config: adopted from the data (4, 3)
    checkpoint = fit(
        'own_dianet.yaml',
        tmp_path / 'run',
        '--model.init_args.in_channels',
        '3',
        '--model.init_args.num_classes',
        '2',
    )
    task: Any = load_task(checkpoint)
    assert (task.hparams['in_channels'], task.hparams['num_classes']) == (4, 3)
    assert task.class_names == ['background', 'car', 'truck']
    ir = co_registered_ir(tmp_path / 'ir_on_rgb.tif')
    out = tmp_path / 'classes.tif'
    argv = [
        'segment',
        str(RGB),
        str(ir),
        '-o',
        str(out),
        '--checkpoint',
        str(checkpoint),
    ]
    assert main(argv) == 0
    with rasterio.open(out) as dst, rasterio.open(RGB) as src:
        assert dst.crs == src.crs
        assert dst.transform == src.transform
        assert int(dst.read(1).max()) <= 2
