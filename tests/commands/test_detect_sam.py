"""``torchgeo-ext detect --masks sam``: SAM outlines behind tiled detection and export.

The detector is a test double (a task that boxes bright pixels); SAM is the
tiny SAM trained in ``tests/pipelines/test_sam.py``; rasters, windows,
geometry, CRS and the written file are real.
"""

from pathlib import Path
from typing import Any

import geopandas as gpd
import lightning
import pytest
import torch
from torch import nn

from torchgeo_ext.cli import main
from torchgeo_ext.models.sam import sam_tiny
from torchgeo_ext.trainers.base import PluginTask

from ..pipelines.test_sam import iou, trained_sam_state, write_scene


class BrightBoxTask(PluginTask):
    """Detects one object per tile: the bounding box of its bright pixels."""

    def __init__(self, class_names: list[str] | None = None) -> None:
        super().__init__()

    def configure_models(self) -> None:
        self.model = nn.Identity()

    def predict_step(
        self, batch: dict[str, Any], batch_idx: int, dataloader_idx: int = 0
    ) -> dict[str, Any]:
        boxes, labels, scores = [], [], []
        for image in batch['image']:
            bright = image.mean(dim=0) > 0.5
            rows = torch.nonzero(bright.any(dim=1)).flatten()
            cols = torch.nonzero(bright.any(dim=0)).flatten()
            if len(rows) == 0:
                boxes.append(torch.zeros(0, 4))
                labels.append(torch.zeros(0, dtype=torch.long))
                scores.append(torch.zeros(0))
                continue
            box = [cols[0], rows[0], cols[-1] + 1, rows[-1] + 1]
            boxes.append(torch.tensor([[float(v) for v in box]]))
            labels.append(torch.tensor([0]))
            scores.append(torch.tensor([0.9]))
        return {
            'prediction_bbox_xyxy': boxes,
            'prediction_label': labels,
            'prediction_score': scores,
        }


@pytest.fixture(scope='module')
def checkpoints(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp('detect_sam')
    detector = root / 'bright.ckpt'
    task = BrightBoxTask(class_names=['object'])
    trainer = lightning.Trainer(logger=False, enable_checkpointing=False)
    trainer.strategy.connect(task)
    trainer.save_checkpoint(detector)
    sam = root / 'sam_tiny.pth'
    torch.save(trained_sam_state(), sam)
    return detector, sam


@pytest.mark.slow
def test_detect_masks_sam(tmp_path: Path, checkpoints: tuple[Path, Path]) -> None:
    detector, sam = checkpoints
    raster = tmp_path / 'scene.tif'
    truth = write_scene(raster)
    out = tmp_path / 'objects.gpkg'
    argv = ['detect', str(raster), '-o', str(out), '--checkpoint', str(detector)]
    sam_args = ['--masks', 'sam', '--sam-checkpoint', str(sam)]
    assert main([*argv, '--tile-size', '512', *sam_args]) == 0
    gdf = gpd.read_file(out)
    assert len(gdf) == 1
    assert gdf.crs.to_epsg() == 32633
    assert gdf['sam_status'][0] == 'ok'
    assert iou(gdf.geometry[0], truth) >= 0.8
    assert gdf['class_name'][0] == 'object'
    from shapely import wkt

    box = wkt.loads(gdf['box_wkt'][0])
    assert iou(gdf.geometry[0], truth) > iou(box, truth)
    # without --masks the same run writes the box itself
    plain = tmp_path / 'boxes.gpkg'
    argv[3] = str(plain)
    assert main([*argv, '--tile-size', '512']) == 0
    boxes = gpd.read_file(plain)
    assert 'box_wkt' not in boxes
    assert boxes.geometry[0].equals_exact(box, 1e-6)


def test_detect_sam_option_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    raster = tmp_path / 'scene.tif'
    write_scene(raster, bands=4)
    detector = tmp_path / 'bright.ckpt'
    task = BrightBoxTask()
    trainer = lightning.Trainer(logger=False, enable_checkpointing=False)
    trainer.strategy.connect(task)
    trainer.save_checkpoint(detector)
    sam = tmp_path / 'sam_tiny.pth'
    torch.save(sam_tiny().state_dict(), sam)
    argv = ['detect', str(raster), '-o', str(tmp_path / 'o.gpkg')]
    argv += ['--checkpoint', str(detector)]
    assert main([*argv, '--sam-bands', '1,2,3']) == 2
    assert '--sam-bands needs --masks sam' in capsys.readouterr().err
    assert main([*argv, '--masks', 'sam']) == 2
    assert 'needs --sam-checkpoint' in capsys.readouterr().err
    sam_args = ['--masks', 'sam', '--sam-checkpoint']
    assert main([*argv, *sam_args, str(sam), '--sam-model', 'vit_b']) == 2
    assert 'SAM tiny checkpoint, not vit_b' in capsys.readouterr().err
    assert main([*argv, *sam_args, str(detector)]) == 2
    assert 'not a SAM state dict' in capsys.readouterr().err
    assert main([*argv, *sam_args, str(tmp_path / 'none.pth')]) == 2
    assert 'SAM checkpoint not found' in capsys.readouterr().err
    assert main([*argv, *sam_args, str(sam)]) == 2
    assert 'SAM reads 3; choose them with --sam-bands' in capsys.readouterr().err
    assert main([*argv, *sam_args, str(sam), '--sam-bands', '1,2']) == 2
    assert 'three band numbers' in capsys.readouterr().err
    assert not (tmp_path / 'o.gpkg').exists()
