from pathlib import Path

import pytest
import torch

from torchgeo_ext.cli import main
from torchgeo_ext.errors import MissingInputError
from torchgeo_ext.models.fusionsam import FusionSAM
from torchgeo_ext.models.sam import sam_tiny
from torchgeo_ext.trainers.base import load_task
from torchgeo_ext.trainers.fusionsam import FusionSAMTask

CONF = Path(__file__).parents[1] / 'conf'


def test_sam_checkpoint_weights_are_used(tmp_path: Path) -> None:
    torch.manual_seed(1)
    sam = sam_tiny()
    path = tmp_path / 'sam_tiny.pth'
    torch.save(sam.state_dict(), path)
    task = FusionSAMTask(model='fusionsam_tiny', sam_checkpoint=str(path))
    model = task.model
    assert isinstance(model, FusionSAM)
    torch.testing.assert_close(
        model.sam.image_encoder.patch_embed.proj.weight,
        sam.image_encoder.patch_embed.proj.weight,
    )
    with pytest.raises(ValueError, match='unknown model'):
        FusionSAMTask(model='dianet_w8')
    with pytest.raises(ValueError, match='class_names has 2 names'):
        FusionSAMTask(model='fusionsam_tiny', num_classes=3, class_names=['a', 'b'])
    assert task.in_channels == 4
    # a SAM file that is missing is an error when the task is used without a
    # task checkpoint that brings SAM's weights
    missing = FusionSAMTask(
        model='fusionsam_tiny', sam_checkpoint=str(tmp_path / 'no.pth')
    )
    with pytest.raises(MissingInputError, match='SAM checkpoint not found'):
        missing(torch.rand(1, 4, 32, 32))


@pytest.mark.slow
def test_cli_fit_test_predict_mfnet(tmp_path: Path) -> None:
    torch.manual_seed(0)
    sam_path = tmp_path / 'sam_tiny.pth'
    torch.save(sam_tiny().state_dict(), sam_path)
    common = [
        '--config',
        str(CONF / 'fusionsam_mfnet.yaml'),
        '--trainer.default_root_dir',
        str(tmp_path),
    ]
    assert (
        main(['fit', *common, '--model.init_args.sam_checkpoint', str(sam_path)]) == 0
    )
    (checkpoint,) = (tmp_path / 'checkpoints').glob('*.ckpt')
    # The checkpoint holds SAM's weights: the SAM file it names is not needed.
    sam_path.unlink()
    assert main(['test', *common, '--ckpt_path', str(checkpoint)]) == 0
    assert main(['validate', *common, '--ckpt_path', str(checkpoint)]) == 0
    task = load_task(checkpoint)
    assert isinstance(task, FusionSAMTask)
    assert task.class_names[5] == 'car stop'
    x = torch.rand(1, 4, 48, 64)
    with torch.no_grad():
        assert task(x).shape == (1, 9, 48, 64)
    assert task.normalisation == {'offset': [0.0], 'scale': [255.0]}


@pytest.mark.slow
def test_fit_fmb_logs_per_class_iou(tmp_path: Path) -> None:
    import lightning

    from torchgeo_ext.datamodules.fmb import FMBDataModule
    from torchgeo_ext.datasets.fmb import FMB

    task = FusionSAMTask(
        model='fusionsam_tiny',
        num_classes=15,
        class_names=FMB.classes,
        ignore_index=0,
        codebook_size=8,
        warmup_epochs=0,
    )
    trainer = lightning.Trainer(
        max_epochs=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        default_root_dir=tmp_path,
    )
    trainer.fit(
        task,
        FMBDataModule(root=Path(__file__).parents[1] / 'data' / 'fmb', batch_size=1),
    )
    metrics = trainer.callback_metrics
    for stage in ('train', 'val'):
        assert f'{stage}_mIoU' in metrics
        assert f'{stage}_IoU_person' in metrics
        assert f'{stage}_IoU_unlabelled' not in metrics
        assert f'{stage}_commitment' in metrics
    ious = torch.stack([metrics[f'val_IoU_{n}'] for n in FMB.classes[1:]])
    torch.testing.assert_close(metrics['val_mIoU'], ious.mean())
    predictions = trainer.predict(
        task, FMBDataModule(root=Path(__file__).parents[1] / 'data' / 'fmb')
    )
    assert predictions is not None
    first = predictions[0]
    assert isinstance(first, dict)
    assert first['prediction'].shape == (2, 60, 80)
    assert int(first['prediction'].min()) >= 1  # never the ignored class


@pytest.mark.slow
def test_segment_command_writes_georeferenced_classes(tmp_path: Path) -> None:
    import lightning
    import numpy as np
    import rasterio
    from rasterio.transform import from_origin

    torch.manual_seed(0)
    task = FusionSAMTask(
        model='fusionsam_tiny', num_classes=3, class_names=['a', 'b', 'c']
    )
    task.record_normalisation({'offset': [0.0], 'scale': [255.0]})
    trainer = lightning.Trainer(logger=False, enable_checkpointing=False)
    trainer.strategy.connect(task)
    checkpoint = tmp_path / 'fusionsam.ckpt'
    trainer.save_checkpoint(checkpoint)
    transform = from_origin(500000.0, 4600000.0, 2.0, 2.0)
    rgb, thermal = tmp_path / 'rgb.tif', tmp_path / 'thermal.tif'
    rng = np.random.default_rng(0)
    for path, count in ((rgb, 3), (thermal, 1)):
        with rasterio.open(
            path,
            'w',
            driver='GTiff',
            width=90,
            height=70,
            count=count,
            dtype='uint8',
            crs='EPSG:32633',
            transform=transform,
        ) as dst:
            dst.write(rng.integers(0, 255, (count, 70, 90), dtype=np.uint8))
    out = tmp_path / 'classes.tif'
    argv = ['segment', str(rgb), str(thermal), '-o', str(out)]
    assert main([*argv, '--checkpoint', str(checkpoint), '--tile-size', '64']) == 0
    with rasterio.open(out) as src:
        assert src.crs.to_epsg() == 32633
        assert src.transform == transform
        assert (src.height, src.width) == (70, 90)
        classes = src.read(1)
    assert set(np.unique(classes)) <= {0, 1, 2}
    # a segmentation checkpoint: the detect command names the mismatch
    from torchgeo_ext.pipelines.checkpoints import task_kind

    assert task_kind('torchgeo_ext.trainers.fusionsam.FusionSAMTask') == 'segmentation'
