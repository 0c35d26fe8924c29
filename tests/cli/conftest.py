"""Fixtures of the command-line robustness suite: tiny rasters and checkpoints, built once."""

import hashlib
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning
import numpy as np
import pytest
import rasterio
import torch
from rasterio.transform import from_origin
from torch import nn

from torchgeo_ext.demos.scene import make_demo_scene
from torchgeo_ext.trainers.base import PluginTask

REPO = Path(__file__).resolve().parents[2]
CONF = REPO / 'tests' / 'conf'
FYH_RAW = REPO / 'tests' / 'data' / 'fyh' / 'raw'
CRS = 'EPSG:32633'


class BoxTask(PluginTask):
    """A detector that sees the same boxes in every tile, some reaching past it.

    It stands in for a trained detector where only the geometry of the output
    matters (boxes clipped to rasters smaller than a tile).
    """

    def __init__(self, in_channels: int = 4) -> None:
        super().__init__()

    def configure_models(self) -> None:
        self.model = nn.Identity()

    def predict_step(
        self, batch: dict[str, Any], batch_idx: int, dataloader_idx: int = 0
    ) -> dict[str, Any]:
        n = len(batch['image'])
        boxes = torch.tensor([[-6.0, -4.0, 30.0, 40.0], [0.5, 0.5, 2.0, 1.5]])
        return {
            'prediction_bbox_xyxy': [boxes.clone() for _ in range(n)],
            'prediction_label': [torch.tensor([0, 1]) for _ in range(n)],
            'prediction_score': [torch.tensor([0.9, 0.8]) for _ in range(n)],
        }


def save_task(task: PluginTask, path: Path) -> Path:
    """Save a task as Lightning does at the end of training."""
    trainer = lightning.Trainer(logger=False, enable_checkpointing=False)
    trainer.strategy.connect(task)
    trainer.save_checkpoint(path)
    return path


def write_raster(
    path: Path, bands: int, height: int, width: int, dtype: str = 'uint8', seed: int = 0
) -> Path:
    """A random georeferenced raster."""
    rng = np.random.default_rng(seed)
    if dtype == 'uint8':
        data: np.ndarray = rng.integers(0, 255, (bands, height, width), dtype=np.uint8)
    else:
        data = rng.random((bands, height, width), dtype=np.float32)
    with rasterio.open(
        path,
        'w',
        driver='GTiff',
        width=width,
        height=height,
        count=bands,
        dtype=dtype,
        crs=CRS,
        transform=from_origin(400000.0, 5000000.0, 1.0, 1.0),
    ) as dst:
        dst.write(data)
    return path


def tree(root: Path) -> dict[str, str]:
    """Every file under *root* with its SHA-256 (folders as 'dir')."""
    found = {}
    for path in sorted(root.rglob('*')):
        rel = str(path.relative_to(root))
        if path.is_dir() and not path.is_symlink():
            found[rel] = 'dir'
        elif path.is_symlink():
            found[rel] = f'link -> {path.readlink()}'
        else:
            found[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
    return found


@dataclass
class Assets:
    """Inputs shared by every probe (read-only for them)."""

    root: Path
    scene: Path  # 8-band hyperspectral GeoTIFF, 24 x 24
    tiny: Path  # 8-band, 3 x 3 (smaller than the LRX/CRD windows)
    seg: Path  # 14-band float GeoTIFF for the DIAnet checkpoint
    rgb: Path
    ir: Path
    extra: Path  # a third modality
    superyolo: Path
    dianet: Path
    box: Path
    bad_weights: Path  # DIAnet checkpoint with a layer of the wrong shape
    truncated: Path
    not_checkpoint: Path


@pytest.fixture(scope='session')
def assets(tmp_path_factory: pytest.TempPathFactory) -> Assets:
    from torchgeo_ext.trainers.detection import SuperYOLOTask
    from torchgeo_ext.trainers.segmentation import SegmentationTask

    root = tmp_path_factory.mktemp('cli_assets')
    scene, _ = make_demo_scene(root / 'scene.tif', size=24, bands=8, seed=1)
    tiny = write_raster(root / 'tiny.tif', 8, 3, 3, 'float32')
    seg = write_raster(root / 'seg.tif', 14, 40, 40, 'float32')
    rgb = write_raster(root / 'rgb.tif', 3, 40, 40)
    ir = write_raster(root / 'ir.tif', 1, 40, 40, seed=1)
    extra = write_raster(root / 'extra.tif', 1, 40, 40, seed=2)

    torch.manual_seed(0)
    superyolo = save_task(
        SuperYOLOTask(super_resolution=False, ema=False, max_detections=20),
        root / 'superyolo.ckpt',
    )
    task = SegmentationTask(
        model='dianet_w8',
        model_kwargs={'layer1_planes': 4, 'attention_channels': 8},
        in_channels=14,
        num_classes=11,
        tile_size=32,
    )
    dianet = save_task(task, root / 'dianet.ckpt')
    box = save_task(BoxTask(), root / 'box.ckpt')

    checkpoint = torch.load(dianet, map_location='cpu', weights_only=False)
    name = next(k for k, v in checkpoint['state_dict'].items() if v.ndim == 4)
    weight = checkpoint['state_dict'][name]
    checkpoint['state_dict'][name] = torch.zeros(weight.shape[0] + 1, *weight.shape[1:])
    # As LightningCLI records it, so that `validate --ckpt_path` can parse the hparams.
    checkpoint['hyper_parameters']['_class_path'] = (
        'torchgeo_ext.trainers.segmentation.SegmentationTask'
    )
    bad_weights = root / 'bad_weights.ckpt'
    torch.save(checkpoint, bad_weights)

    truncated = root / 'truncated.ckpt'
    data = dianet.read_bytes()
    truncated.write_bytes(data[: len(data) // 2])
    not_checkpoint = root / 'notes.ckpt'
    not_checkpoint.write_text('not a checkpoint\n')
    return Assets(
        root,
        scene,
        tiny,
        seg,
        rgb,
        ir,
        extra,
        superyolo,
        dianet,
        box,
        bad_weights,
        truncated,
        not_checkpoint,
    )


@pytest.fixture
def work(tmp_path: Path, assets: Assets) -> Path:
    """A working folder holding copies of the small rasters (not the checkpoints)."""
    for path in (assets.scene, assets.tiny, assets.seg, assets.rgb, assets.ir):
        shutil.copy(path, tmp_path / path.name)
    shutil.copy(assets.extra, tmp_path / assets.extra.name)
    return tmp_path


def write_vrt(
    path: Path, sources: list[str], *, relative: bool = True, like: Path
) -> Path:
    """A VRT mosaic of *sources* side by side (each shaped like the raster *like*).

    Args:
        path: The VRT to write.
        sources: Source file names as written in the VRT.
        relative: Whether they are relative to the VRT (``relativeToVRT="1"``).
        like: A raster giving the sources' band count, size and data type.
    """
    with rasterio.open(like) as src:
        bands, height, width = src.count, src.height, src.width
        dtype = {'uint8': 'Byte', 'float32': 'Float32'}[src.dtypes[0]]
        left, top = src.transform.c, src.transform.f
    lines = [
        f'<VRTDataset rasterXSize="{width * len(sources)}" rasterYSize="{height}">',
        f'  <SRS>{CRS}</SRS>',
        f'  <GeoTransform>{left}, 1, 0, {top}, 0, -1</GeoTransform>',
    ]
    for band in range(1, bands + 1):
        lines.append(f'  <VRTRasterBand dataType="{dtype}" band="{band}">')
        for i, name in enumerate(sources):
            lines += [
                '    <SimpleSource>',
                f'      <SourceFilename relativeToVRT="{int(relative)}">{name}</SourceFilename>',
                f'      <SourceBand>{band}</SourceBand>',
                f'      <SrcRect xOff="0" yOff="0" xSize="{width}" ySize="{height}"/>',
                f'      <DstRect xOff="{i * width}" yOff="0" xSize="{width}" ySize="{height}"/>',
                '    </SimpleSource>',
            ]
        lines.append('  </VRTRasterBand>')
    lines.append('</VRTDataset>')
    path.write_text('\n'.join(lines) + '\n')
    return path
