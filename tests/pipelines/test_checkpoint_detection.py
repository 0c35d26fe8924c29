"""Tests of detect_with_checkpoint (the pipeline of ``torchgeo-ext detect``)."""

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio
import torch
from rasterio.transform import from_origin

from torchgeo_ext.errors import InvalidInputError
from torchgeo_ext.pipelines.checkpoint_detection import detect_with_checkpoint
from torchgeo_ext.trainers.detection import SuperYOLOTask

from ..commands.test_detect import VEDAI_CLASSES, save

PIXEL = 0.125
ORIGIN = (420000.0, 4500000.0)


@pytest.fixture(scope='module')
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    task = SuperYOLOTask(
        class_names=VEDAI_CLASSES,
        width=0.25,
        super_resolution=False,
        ema=False,
        max_detections=30,
    )
    return save(task, tmp_path_factory.mktemp('ckpt') / 'tiny.ckpt')


def half_nodata_pair(root: Path, size: int = 96) -> list[Path]:
    """RGB and IR rasters whose right half is nodata (0) in the IR band only."""
    rng = np.random.default_rng(0)
    paths = []
    for name, count in (('rgb', 3), ('ir', 1)):
        pixels = rng.integers(1, 255, (count, size, size), dtype=np.uint8)
        if name == 'ir':
            pixels[:, :, size // 2 :] = 0
        path = root / f'{name}.tif'
        profile = {'driver': 'GTiff', 'width': size, 'height': size, 'count': count}
        profile |= {'dtype': 'uint8', 'crs': 'EPSG:32612', 'nodata': 0}
        profile['transform'] = from_origin(*ORIGIN, PIXEL, PIXEL)
        with rasterio.open(path, 'w', **profile) as dst:
            dst.write(pixels)
        paths.append(path)
    return paths


def test_objects_mostly_over_nodata_are_dropped_and_counted(
    tmp_path: Path, checkpoint: Path
) -> None:
    inputs = half_nodata_pair(tmp_path)
    options: dict[str, Any] = {'tile_size': 48, 'overlap': 16, 'score_threshold': 0.0}
    everything = detect_with_checkpoint(
        inputs, tmp_path / 'all.gpkg', checkpoint, max_invalid=None, **options
    )
    gdf = detect_with_checkpoint(inputs, tmp_path / 'out.gpkg', checkpoint, **options)
    assert (tmp_path / 'out.gpkg').exists()
    assert 0 < len(gdf) < len(everything)
    assert gdf.attrs['dropped_invalid'] == len(everything) - len(gdf)
    assert everything.attrs['dropped_invalid'] == 0
    # a band nodata in the right half (x >= 48 px): kept boxes lie mostly left of it
    for minx, _, maxx, _ in gdf.geometry.bounds.itertuples(index=False):
        x0, x1 = (minx - ORIGIN[0]) / PIXEL, (maxx - ORIGIN[0]) / PIXEL
        assert max(0.0, x1 - max(x0, 48)) <= 0.5 * (x1 - x0) + 1  # +1: pixel edges


def test_precision_and_scale_options(tmp_path: Path, checkpoint: Path) -> None:
    inputs = half_nodata_pair(tmp_path)
    options: dict[str, Any] = {'tile_size': 48, 'overlap': 16, 'score_threshold': 0.0}
    gdf = detect_with_checkpoint(
        inputs, tmp_path / 'bf16.gpkg', checkpoint, precision='bf16-mixed', **options
    )
    assert len(gdf) > 0
    with pytest.raises(InvalidInputError, match='precision'):
        detect_with_checkpoint(
            inputs, tmp_path / 'x.gpkg', checkpoint, precision='16', **options
        )
