from pathlib import Path
from typing import Any

import lightning
import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from torchgeo_ext.trainers.base import load_task
from torchgeo_ext.trainers.segmentation import SegmentationTask

from .conftest import assert_gradient_step_lowers

ROOT = Path(__file__).parents[1]
FYH_ROOT = ROOT / 'data' / 'fyh'
CONFIG = ROOT / 'conf' / 'dianet_fyh.yaml'


# ----------------------------------------------------------------- losses


# ----------------------------------------------------------------- task


class SyntheticFYH(Dataset[dict[str, Any]]):
    """Learnable fake FYH tiles: the class is given by the brightest band."""

    def __init__(self, n: int = 4, size: int = 24) -> None:
        g = torch.Generator().manual_seed(0)
        self.masks = torch.randint(0, 11, (n, size, size), generator=g)
        noise = torch.rand(n, 14, size, size, generator=g) * 0.2
        self.images = (
            noise + F.one_hot(self.masks.clamp(max=9), 14).movedim(-1, 1) * 0.8
        )

    def __len__(self) -> int:
        return len(self.masks)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return {
            'image': self.images[i],
            'mask': self.masks[i],
            'crs': 'EPSG:4326',
            'transform': torch.tensor(
                [0.05, 0, 85 + i, 0, -0.05, 50], dtype=torch.float64
            ),
            'id': f'tile_{i}',
        }


def collate(samples: list[dict[str, Any]]) -> dict[str, Any]:
    batch: dict[str, Any] = {}
    for key in samples[0]:
        values = [s[key] for s in samples]
        batch[key] = (
            torch.stack(values) if isinstance(values[0], torch.Tensor) else values
        )
    return batch


def tiny_task(**kwargs: Any) -> SegmentationTask:
    options: dict[str, Any] = {'model': 'dianet_w8', 'lr': 0.05}
    options.update(kwargs)
    return SegmentationTask(**options)


def test_forward_and_predict_step() -> None:
    task = tiny_task().eval()
    batch = collate([SyntheticFYH()[i] for i in range(2)])
    assert task(batch['image']).shape == (2, 11, 24, 24)
    out = task.predict_step(batch, 0)
    assert out['prediction'].shape == (2, 24, 24)
    assert out['prediction'].dtype == torch.int64
    assert out['crs'] == ['EPSG:4326'] * 2
    assert out['id'] == ['tile_0', 'tile_1']
    assert torch.equal(out['transform'], batch['transform'])


def test_invalid_arguments() -> None:
    with pytest.raises(ValueError, match='unknown model'):
        SegmentationTask(model='unet9000')
    with pytest.raises(ValueError, match='class_names has 2 names'):
        SegmentationTask(model='dianet_w8', class_names=['a', 'b'])
    with pytest.raises(ValueError, match='unknown loss'):
        SegmentationTask(model='dianet_w8', loss='hinge')  # type: ignore[arg-type]


@pytest.mark.parametrize('loss', ['dal', 'ohem'])
def test_loss_trains_on_fake_fyh(loss: str) -> None:
    from torchgeo_ext.datasets.fyh import FYH

    dataset = FYH(FYH_ROOT, 'train')
    # 24 x 24 crops of the fake tiles keep this fast on a CPU.
    x = torch.stack([dataset[i]['image'][:, 40:64, 40:64] for i in range(len(dataset))])
    y = torch.stack([dataset[i]['mask'][40:64, 40:64] for i in range(len(dataset))])
    assert (y == 10).any()  # fill pixels present, ignored
    torch.manual_seed(0)
    task = tiny_task(loss=loss, ohem_min_kept=100)
    assert_gradient_step_lowers(
        lambda: task.compute_loss(x, y)[1]['loss'], list(task.parameters())
    )


def test_fit_logs_iou_and_checkpoints(tmp_path: Path) -> None:
    names = [f'c{k}' for k in range(11)]
    task = tiny_task(class_names=names)
    loader = DataLoader(SyntheticFYH(), batch_size=2, collate_fn=collate)
    trainer = lightning.Trainer(
        max_epochs=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        default_root_dir=tmp_path,
    )
    trainer.fit(task, loader, loader)
    metrics = trainer.callback_metrics
    for stage in ('train', 'val'):
        assert f'{stage}_mIoU' in metrics
        assert f'{stage}_IoU_c0' in metrics
        assert f'{stage}_IoU_c10' not in metrics  # the ignore index
        assert 0 <= metrics[f'{stage}_mIoU'] <= 1
    ious = torch.stack([metrics[f'val_IoU_c{k}'] for k in range(10)])
    torch.testing.assert_close(metrics['val_mIoU'], ious.mean())
    # poly schedule: the learning rate decays per step
    assert trainer.optimizers[0].param_groups[0]['lr'] < 0.05
    path = tmp_path / 'task.ckpt'
    trainer.save_checkpoint(path)
    loaded = load_task(path)
    assert isinstance(loaded, SegmentationTask)
    assert loaded.class_names == names
    x = SyntheticFYH()[0]['image'][None]
    task.eval()
    torch.testing.assert_close(loaded(x), task(x))


# ----------------------------------------------------------------- CLI and export


def write_predict_config(
    tmp_path: Path, output_dir: Path, root: Path | None = None
) -> Path:
    names = '[Clear, Cirrus, Cirrostratus, Deep convection, Altocumulus, Altostratus, Nimbostratus, Cumulus, Stratocumulus, Stratus, Fill]'
    text = f"""trainer:
  callbacks:
    - class_path: torchgeo_ext.export.writer.GeoPredictionWriter
      init_args:
        output_dir: {output_dir}
        class_names: {names}
"""
    if root is not None:
        text += f"""data:
  init_args:
    root: {root}
"""
    path = tmp_path / 'predict.yaml'
    path.write_text(text)
    return path


@pytest.mark.slow
def test_cli_fit_test_predict(tmp_path: Path) -> None:
    import rasterio

    from torchgeo_ext.cli import main
    from torchgeo_ext.datasets.fyh import tile_transform

    common = ['--config', str(CONFIG), '--trainer.default_root_dir', str(tmp_path)]
    assert main(['fit', *common]) == 0
    (checkpoint,) = (tmp_path / 'checkpoints').glob('*.ckpt')
    task = load_task(checkpoint)
    assert isinstance(task, SegmentationTask)
    assert task.class_names[3] == 'Deep convection'
    assert main(['test', *common, '--ckpt_path', str(checkpoint)]) == 0
    out = tmp_path / 'predictions'
    predict = write_predict_config(tmp_path, out)
    assert (
        main(
            [
                'predict',
                *common,
                '--config',
                str(predict),
                '--ckpt_path',
                str(checkpoint),
            ]
        )
        == 0
    )
    rasters = sorted(out.glob('*.tif'))
    stems = sorted(p.stem for p in (FYH_ROOT / 'mattest').glob('*.mat'))
    assert [p.stem for p in rasters] == stems
    for path in rasters:
        k = int(path.stem.rsplit('_', 1)[1])
        with rasterio.open(path) as src:
            assert src.crs.to_epsg() == 4326
            assert src.transform.almost_equals(tile_transform(k), precision=1e-12)
            assert (src.width, src.height) == (100, 100)
            assert src.dtypes[0] == 'uint8'
            assert src.read(1).max() <= 10


@pytest.mark.slow
def test_torchgeo_main_fit(tmp_path: Path) -> None:
    from torchgeo.main import main

    from torchgeo_ext.trainers.base import task_class_path

    main(['fit', '--config', str(CONFIG), '--trainer.default_root_dir', str(tmp_path)])
    (checkpoint,) = (tmp_path / 'checkpoints').glob('*.ckpt')
    assert task_class_path(checkpoint) == (
        'torchgeo_ext.trainers.segmentation.SegmentationTask'
    )


def test_paper_config_parses() -> None:
    import yaml
    from jsonargparse import ArgumentParser

    from torchgeo_ext.datasets.fyh import FYH

    config = yaml.safe_load((ROOT.parent / 'configs' / 'dianet_fyh.yaml').read_text())
    args = config['model']['init_args']
    assert args['model'] == 'dianet_w48'
    assert (args['lr'], args['momentum'], args['weight_decay']) == (0.01, 0.9, 0.0005)
    assert config['trainer']['max_epochs'] == 100
    assert args['class_names'] == list(FYH.classes)
    parser = ArgumentParser()
    parser.add_class_arguments(SegmentationTask, 'model')
    parser.parse_object({'model': args})


def test_predicted_tiles_mosaic_seamlessly(tmp_path: Path) -> None:
    import shutil

    import numpy as np
    import rasterio
    from rasterio.merge import merge

    from torchgeo_ext.datamodules.fyh import FYHDataModule
    from torchgeo_ext.datasets.fyh import FYH, grid_transform
    from torchgeo_ext.export.writer import GeoPredictionWriter

    # Four neighbouring tiles (k = 0, 1, 10, 11) of one scene.
    (source,) = sorted((FYH_ROOT / 'mattest').glob('*_84.mat'))[:1]
    mask = FYH_ROOT / 'matmasktest' / source.name
    stem = source.name.rsplit('_', 1)[0]
    for split in ('mattest', 'matmasktest'):
        (tmp_path / 'fyh' / split).mkdir(parents=True)
    for k in (0, 1, 10, 11):
        shutil.copy(source, tmp_path / 'fyh' / 'mattest' / f'{stem}_{k}.mat')
        shutil.copy(mask, tmp_path / 'fyh' / 'matmasktest' / f'{stem}_{k}.mat')
    datamodule = FYHDataModule(root=str(tmp_path / 'fyh'), batch_size=2)
    writer = GeoPredictionWriter(tmp_path / 'out', class_names=FYH.classes)
    trainer = lightning.Trainer(
        logger=False, enable_progress_bar=False, callbacks=[writer], accelerator='cpu'
    )
    task = SegmentationTask(
        model='dianet_w8', model_kwargs={'layer1_planes': 4, 'attention_channels': 8}
    )
    predictions = trainer.predict(task, datamodule=datamodule)
    assert predictions is not None
    paths = sorted(writer.raster_paths)
    assert len(paths) == 4
    datasets = [rasterio.open(p) for p in paths]
    try:
        mosaic, transform = merge(datasets)
    finally:
        for ds in datasets:
            ds.close()
    assert mosaic.shape == (1, 200, 200)
    assert transform.almost_equals(grid_transform(), precision=1e-12)
    expected = np.zeros((200, 200), dtype=np.uint8)
    by_id = {}
    for batch in predictions:
        assert isinstance(batch, dict)
        for name, pred in zip(batch['id'], batch['prediction'], strict=True):
            by_id[int(name.rsplit('_', 1)[1])] = pred.numpy()
    for k, pred in by_id.items():
        i, j = divmod(k, 10)
        expected[100 * i : 100 * i + 100, 100 * j : 100 * j + 100] = pred
    np.testing.assert_array_equal(mosaic[0], expected)
