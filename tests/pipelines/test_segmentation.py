"""segment_raster's steps: precision, statistics and polygons from the run's own rows."""

from pathlib import Path
from typing import Any

import geopandas as gpd
import lightning
import numpy as np
import pytest
import rasterio
import torch

from torchgeo_ext.cli import main
from torchgeo_ext.datasets.fyh import FYH, grid_transform
from torchgeo_ext.errors import InvalidInputError
from torchgeo_ext.pipelines import segmentation
from torchgeo_ext.pipelines.segmentation import NODATA, segment_raster


@pytest.fixture(scope='module')
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from torchgeo_ext.trainers.segmentation import SegmentationTask

    torch.manual_seed(0)
    task = SegmentationTask(
        model='dianet_w8',
        model_kwargs={'layer1_planes': 4, 'attention_channels': 8},
        class_names=list(FYH.classes),
        tile_size=32,
    )
    trainer = lightning.Trainer(logger=False, enable_checkpointing=False)
    trainer.strategy.connect(task)
    path = tmp_path_factory.mktemp('ckpt') / 'dianet.ckpt'
    trainer.save_checkpoint(path)
    return path


def write_scene(path: Path, height: int = 40, width: int = 50) -> tuple[Path, Any]:
    """A 14-band FYH-like scene with a nodata corner and an internal mask stripe."""
    data = np.random.default_rng(0).random((14, height, width), dtype=np.float32)
    data[:, :3, :5] = -1
    mask = np.full((height, width), 255, dtype=np.uint8)
    mask[20:24] = 0  # a sensor gap only the GDAL mask knows
    profile: dict[str, Any] = {
        'driver': 'GTiff', 'width': width, 'height': height, 'count': 14,
        'dtype': 'float32', 'crs': 'EPSG:4326', 'transform': grid_transform(),
        'nodata': -1,
    }  # fmt: skip
    with (
        rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True),
        rasterio.open(path, 'w', **profile) as dst,
    ):
        dst.write(data)
        dst.write_mask(mask)
    invalid = np.zeros((height, width), dtype=bool)
    invalid[:3, :5] = True
    invalid[20:24] = True
    return path, invalid


def test_counts_and_polygons_from_the_run_itself(
    tmp_path: Path, checkpoint: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    scene, invalid = write_scene(tmp_path / 'scene.tif')
    out, vector = tmp_path / 'classes.tif', tmp_path / 'classes.gpkg'
    opened: list[str] = []
    original = rasterio.open

    def watch(path: Any, *args: Any, **kwargs: Any) -> Any:
        opened.append(str(path))
        return original(path, *args, **kwargs)

    monkeypatch.setattr(rasterio, 'open', watch)
    result = segment_raster(scene, out, checkpoint, vector=vector, overlap=8)
    monkeypatch.undo()
    # a concurrent run may replace the output at any time: it is never read back
    assert str(out) not in opened
    with rasterio.open(out) as src:
        classes = src.read(1)
    assert (classes[invalid] == NODATA).all()
    assert (classes[~invalid] != NODATA).all()
    ids, pixels = np.unique(classes[~invalid], return_counts=True)
    assert result.counts == dict(zip(ids.tolist(), pixels.tolist(), strict=True))
    gdf = gpd.read_file(vector)
    assert len(gdf) == result.polygons > 0
    assert ((gdf['score'] > 0) & (gdf['score'] <= 1)).all()
    assert set(gdf['class_id']) == set(result.counts)


@pytest.mark.parametrize('precision', ['bf16-mixed', '16-mixed'])
def test_mixed_precision_agrees_with_float32(
    tmp_path: Path, checkpoint: Path, precision: str
) -> None:
    scene, invalid = write_scene(tmp_path / 'scene.tif')
    full = segment_raster(scene, tmp_path / 'a.tif', checkpoint, overlap=8)
    mixed = segment_raster(
        scene, tmp_path / 'b.tif', checkpoint, overlap=8, precision=precision
    )
    with rasterio.open(full.output) as a, rasterio.open(mixed.output) as b:
        same = a.read(1) == b.read(1)
    assert same[invalid].all()  # nodata stays nodata
    assert same.mean() > 0.9  # low precision may flip near-ties only


def test_precision_option(tmp_path: Path, checkpoint: Path) -> None:
    scene, _ = write_scene(tmp_path / 'scene.tif')
    with pytest.raises(InvalidInputError, match='precision'):
        segment_raster(scene, tmp_path / 'o.tif', checkpoint, precision='64')
    argv = ['segment', str(scene), '-o', str(tmp_path / 'c.tif')]
    argv += ['--checkpoint', str(checkpoint), '--precision', 'bf16-mixed']
    assert main(argv) == 0
    assert (tmp_path / 'c.tif').exists()
    assert not (tmp_path / 'o.tif').exists()


def test_the_one_tiling_check(tmp_path: Path, checkpoint: Path) -> None:
    scene, _ = write_scene(tmp_path / 'scene.tif')
    with pytest.raises(InvalidInputError, match='twice the overlap'):
        segment_raster(scene, tmp_path / 'o.tif', checkpoint, tile_size=32, overlap=20)
    assert segmentation.DEFAULT_TILE_SIZE > 0
