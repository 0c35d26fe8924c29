import os
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import geopandas as gpd
import lightning
import numpy as np
import pytest
import rasterio
import torch
from rasterio.transform import from_origin
from torch import Tensor, nn

from torchgeo_ext.cli import main
from torchgeo_ext.datasets.vedai import VEDAI
from torchgeo_ext.trainers.base import PluginTask
from torchgeo_ext.trainers.detection import SuperYOLOTask

VEDAI_CLASSES = VEDAI.superyolo_classes

CRS = 'EPSG:32612'


def save(task: PluginTask, path: Path) -> Path:
    trainer = lightning.Trainer(logger=False, enable_checkpointing=False)
    trainer.strategy.connect(task)
    trainer.save_checkpoint(path)
    return path


def write_pair(
    root: Path, size: int = 72, nodata: float | None = None
) -> tuple[Path, Path]:
    rng = np.random.default_rng(0)
    transform = from_origin(420000.0, 4500000.0, 0.125, 0.125)
    paths = []
    for name, count in (('rgb', 3), ('ir', 1)):
        path = root / f'{name}.tif'
        profile = {
            'driver': 'GTiff',
            'width': size,
            'height': size,
            'count': count,
            'dtype': 'uint8',
            'crs': CRS,
            'transform': transform,
            'nodata': nodata,
        }
        pixels = rng.integers(0, 255, (count, size, size), dtype=np.uint8)
        if nodata is not None:
            pixels[:] = nodata
        with rasterio.open(path, 'w', **profile) as dst:
            dst.write(pixels)
        paths.append(path)
    return paths[0], paths[1]


class OrientedDummyTask(PluginTask):
    """Predicts one fixed oriented box per tile."""

    oriented = True

    def __init__(self, class_names: list[str] | None = None) -> None:
        super().__init__()

    def configure_models(self) -> None:
        self.model = nn.Identity()

    def predict_step(
        self, batch: dict[str, Any], batch_idx: int, dataloader_idx: int = 0
    ) -> dict[str, Any]:
        n = len(batch['image'])
        box = torch.tensor([4.0, 4.0, 12.0, 4.0, 12.0, 8.0, 4.0, 8.0])
        return {
            'prediction_bbox': [box[None] for _ in range(n)],
            'prediction_label': [torch.tensor([1]) for _ in range(n)],
            'prediction_score': [torch.tensor([0.9]) for _ in range(n)],
        }


@pytest.fixture(scope='module')
def superyolo_ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    task = SuperYOLOTask(
        class_names=VEDAI_CLASSES, super_resolution=False, ema=False, max_detections=20
    )
    path = tmp_path_factory.mktemp('ckpt') / 'superyolo.ckpt'
    return save(task, path)


def test_detect_superyolo(tmp_path: Path, superyolo_ckpt: Path) -> None:
    rgb, ir = write_pair(tmp_path)
    out = tmp_path / 'out.gpkg'
    argv = [
        'detect',
        str(rgb),
        str(ir),
        '-o',
        str(out),
        '--checkpoint',
        str(superyolo_ckpt),
        '--tile-size',
        '48',
        '--overlap',
        '16',
        '--score-threshold',
        '0',
    ]
    assert main(argv) == 0
    gdf = gpd.read_file(out)
    assert gdf.crs == rasterio.crs.CRS.from_string(CRS)
    assert len(gdf) > 0
    assert set(gdf['class_name']) <= set(VEDAI_CLASSES)
    assert {'class_id', 'score'} <= set(gdf.columns)
    minx, miny, maxx, maxy = gdf.total_bounds
    assert minx >= 420000.0 - 1e-6
    assert maxy <= 4500000.0 + 1e-6
    assert maxx <= 420000.0 + 72 * 0.125 + 1e-6
    assert miny >= 4500000.0 - 72 * 0.125 - 1e-6


def test_detect_missing_modality(
    tmp_path: Path, superyolo_ckpt: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rgb, _ = write_pair(tmp_path)
    argv = ['detect', str(rgb), '-o', str(tmp_path / 'x.gpkg')]
    assert main([*argv, '--checkpoint', str(superyolo_ckpt)]) == 2
    assert 'the model reads 4' in capsys.readouterr().err
    assert not (tmp_path / 'x.gpkg').exists()
    assert main([*argv, '--checkpoint', str(tmp_path / 'none.ckpt')]) == 2
    assert 'checkpoint not found' in capsys.readouterr().err


def test_detect_oriented_task(tmp_path: Path) -> None:
    rgb, ir = write_pair(tmp_path, size=40)
    ckpt = save(OrientedDummyTask(class_names=['a', 'b']), tmp_path / 'obb.ckpt')
    out = tmp_path / 'obb.geojson'
    argv = ['detect', str(rgb), str(ir), '-o', str(out), '--checkpoint', str(ckpt)]
    assert main([*argv, '--tile-size', '40', '--overlap', '8']) == 0
    gdf = gpd.read_file(out)
    assert len(gdf) == 1
    assert gdf['class_name'].tolist() == ['b']
    assert gdf.crs == rasterio.crs.CRS.from_string(CRS)
    # 8 x 4 pixels of 0.125 m.
    assert gdf.geometry.iloc[0].area == pytest.approx(8 * 4 * 0.125**2)


def test_model_output_is_per_image() -> None:
    task = SuperYOLOTask(super_resolution=False, ema=False, max_detections=5)
    task.eval()
    results: list[dict[str, Tensor]] = task.detect_images(
        torch.rand(2, 4, 40, 40), score_threshold=0.0
    )
    assert len(results) == 2
    boxes = results[0]['prediction_bbox_xyxy']
    assert boxes.shape == (5, 4)
    assert boxes.min() >= 0
    assert boxes.max() <= 40


def test_detect_drops_objects_over_an_all_nodata_pair(
    tmp_path: Path, superyolo_ckpt: Path
) -> None:
    # An untrained model at score threshold 0 finds objects anywhere, nodata too.
    argv = ['--tile-size', '48', '--overlap', '16', '--score-threshold', '0']
    argv += ['--checkpoint', str(superyolo_ckpt)]
    rgb, ir = write_pair(tmp_path, nodata=0)
    env = {**os.environ, 'PYTHONPATH': str(Path(__file__).parents[2])}
    command = [sys.executable, '-m', 'torchgeo_ext.cli', 'detect', str(rgb), str(ir)]
    out = tmp_path / 'out.gpkg'
    result = subprocess.run(
        [*command, '-o', str(out), *argv],
        check=False,
        capture_output=True,
        text=True,
        env=env,
    )
    assert result.returncode == 0, result.stderr
    assert len(gpd.read_file(out)) == 0
    count, dropped = result.stdout.split(' objects written')[0], result.stdout
    assert count.strip() == '0'
    assert int(dropped.split('; ')[1].split()[0]) > 0
    kept = tmp_path / 'kept.gpkg'
    result = subprocess.run(
        [*command, '-o', str(kept), *argv, '--max-invalid', '1'],
        check=False,
        capture_output=True,
        text=True,
        env=env,
    )
    assert result.returncode == 0, result.stderr
    assert len(gpd.read_file(kept)) > 0
    assert '; 0 dropped over nodata' in result.stdout


@pytest.mark.parametrize('precision', ['bf16-mixed', '32'])
def test_detect_precision(tmp_path: Path, superyolo_ckpt: Path, precision: str) -> None:
    rgb, ir = write_pair(tmp_path)
    out = tmp_path / 'out.gpkg'
    argv = ['detect', str(rgb), str(ir), '-o', str(out)]
    argv += ['--checkpoint', str(superyolo_ckpt), '--tile-size', '48']
    argv += ['--overlap', '16', '--score-threshold', '0']
    assert main([*argv, '--precision', precision]) == 0
    assert len(gpd.read_file(out)) > 0


def test_task_detection_import_path_is_deprecated() -> None:
    import importlib

    sys.modules.pop('torchgeo_ext.pipelines.task_detection', None)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        old = importlib.import_module('torchgeo_ext.pipelines.task_detection')
    assert any(issubclass(w.category, DeprecationWarning) for w in caught)
    from torchgeo_ext.pipelines.checkpoint_detection import detect_with_checkpoint

    assert old.detect_with_checkpoint is detect_with_checkpoint
