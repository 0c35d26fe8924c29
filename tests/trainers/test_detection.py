import os
from pathlib import Path
from typing import Any

import lightning
import pytest
import torch
import torchgeo.main

from torchgeo_ext.cli import main
from torchgeo_ext.datamodules.llvip import LLVIPDataModule
from torchgeo_ext.datamodules.vedai import VEDAIDataModule
from torchgeo_ext.models.ghost import QuantConv2d
from torchgeo_ext.models.seadate import SeaDATE
from torchgeo_ext.trainers.base import load_task
from torchgeo_ext.trainers.detection import GHOSTTask, SuperYOLOTask

from .conftest import assert_gradient_step_lowers

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / 'conf'
DATA = ROOT / 'data' / 'vedai'
LLVIP_DATA = ROOT / 'data' / 'llvip'


def save(task: lightning.LightningModule, path: Path) -> Path:
    trainer = lightning.Trainer(logger=False, enable_checkpointing=False)
    trainer.strategy.connect(task)
    trainer.save_checkpoint(path)
    return path


def test_task_options_and_predict() -> None:
    with pytest.raises(ValueError, match='class_names has 2 names'):
        SuperYOLOTask(num_classes=3, class_names=['a', 'b'])
    task = SuperYOLOTask(super_resolution=False, max_detections=3)
    # No names given and no data module: never guessed from the class count.
    assert task.class_names == [f'class_{i}' for i in range(8)]
    assert SuperYOLOTask.oriented is False
    task.eval()
    transform = torch.tensor(
        [[420000.0, 0.125, 0.0, 4.5e6, 0.0, -0.125]], dtype=torch.float64
    )
    batch = {
        'image': torch.rand(1, 4, 36, 40),
        'transform': transform,
        'crs': ['EPSG:32612'],
    }
    task.hparams['score_threshold'] = 0.0
    out = task.predict_step(batch, 0)
    assert out['prediction_bbox_xyxy'][0].shape == (3, 4)
    assert out['prediction_label'][0].dtype == torch.int64
    assert out['prediction_score'][0].shape == (3,)
    assert out['crs'] == ['EPSG:32612']
    assert out['transform'] is transform
    names = SuperYOLOTask(
        model='superyolo_rgb', num_classes=2, super_resolution=False
    ).class_names
    assert names == ['class_0', 'class_1']


def fake_batch() -> dict[str, Any]:
    dm = VEDAIDataModule(root=DATA, batch_size=2, super_resolution=True, augment=False)
    dm.setup('fit')
    batch = next(iter(dm.train_dataloader()))
    return dm.aug(batch)


@pytest.mark.slow
def test_loss_trains_on_fake_vedai() -> None:
    torch.manual_seed(0)
    batch = fake_batch()
    assert batch['image'].shape[1] == 4
    assert batch['image_hr'].shape[-1] == 2 * batch['image'].shape[-1]
    # The objectness targets are the predicted boxes' IoU (detached): they move
    # with the parameters, so the check is on the box, class and SR terms.
    task = SuperYOLOTask(ema=False, obj_gain=0.0)
    task.train()
    parts, _ = task.compute_loss(batch, task.model)
    assert 'loss_sr' in parts
    assert_gradient_step_lowers(
        lambda: task.compute_loss(batch, task.model)[0]['loss'],
        list(task.model.parameters()),
    )
    # Without image_hr the SR branch is off.
    batch.pop('image_hr')
    parts, _ = task.compute_loss(batch, task.model)
    assert 'loss_sr' not in parts


@pytest.mark.slow
@pytest.mark.parametrize('runner', ['torchgeo_ext', 'torchgeo'])
def test_cli_fit_validate_test_predict(tmp_path: Path, runner: str) -> None:
    config = str(CONF / 'superyolo_vedai.yaml')
    root = ['--trainer.default_root_dir', str(tmp_path)]
    if runner == 'torchgeo':
        torchgeo.main.main(['fit', '--config', config, *root])
    else:
        assert main(['fit', '--config', config, *root]) == 0
    ckpts = list((tmp_path / 'checkpoints').glob('*.ckpt'))
    assert len(ckpts) == 1
    task = load_task(ckpts[0])
    assert isinstance(task, SuperYOLOTask)
    assert task.ema_model is not None
    if runner == 'torchgeo':
        return
    for command in ('validate', 'test', 'predict'):
        argv = [command, '--config', config, *root, '--ckpt_path', str(ckpts[0])]
        assert main(argv) == 0


@pytest.mark.slow
def test_ghost_cli_and_teacher(tmp_path: Path) -> None:
    # A full-precision early-fusion teacher checkpoint.
    torch.manual_seed(0)
    teacher = SuperYOLOTask(model='superyolo_early', super_resolution=False)
    teacher_ckpt = save(teacher, tmp_path / 'teacher.ckpt')
    task = GHOSTTask(teacher=str(teacher_ckpt), fixed_bits=4)
    student = task.detector
    assert isinstance(student.b1.conv, QuantConv2d)
    assert student.sr is None
    # The student starts from the teacher's EMA weights.
    assert teacher.ema_model is not None
    ema = teacher.eval_model()
    assert torch.equal(student.b1.conv.weight, ema.b1.conv.weight)  # type: ignore[union-attr,arg-type]
    assert torch.equal(task.teacher.b6.cv1.conv.weight, ema.b6.cv1.conv.weight)  # type: ignore[union-attr,arg-type]
    report = task.report((1, 4, 64, 64))
    assert report['size_mb'] < report['fp32_size_mb']
    assert report['weight_bits']['b1.conv'] == 4

    config = str(CONF / 'ghost_vedai.yaml')
    root = ['--trainer.default_root_dir', str(tmp_path / 'run')]
    assert main(['fit', '--config', config, *root]) == 0
    (ckpt,) = (tmp_path / 'run' / 'checkpoints').glob('*.ckpt')
    loaded = load_task(ckpt)
    assert isinstance(loaded, GHOSTTask)
    assert loaded.hparams['teacher'] is None
    assert loaded.bit_widths == loaded.hparams['bit_widths']
    out = loaded.predict_step({'image': torch.rand(1, 4, 32, 32)}, 0)
    assert len(out['prediction_bbox_xyxy']) == 1
    with pytest.raises(FileNotFoundError, match='weights file not found'):
        GHOSTTask(teacher=os.fspath(tmp_path / 'missing.ckpt'), fixed_bits=4)


def fake_llvip_batch() -> dict[str, Any]:
    dm = LLVIPDataModule(root=LLVIP_DATA, batch_size=2, downsample=4, augment=False)
    dm.setup('fit')
    batch = next(iter(dm.train_dataloader()))
    return dm.aug(batch)


@pytest.mark.slow
@pytest.mark.filterwarnings('ignore:LLVIP. :UserWarning')
@pytest.mark.parametrize('model', ['seadate_yolov5s', 'two_stream_yolov5s'])
def test_seadate_loss_trains_on_fake_llvip(model: str) -> None:
    torch.manual_seed(0)
    batch = fake_llvip_batch()
    assert batch['image'].shape == (2, 4, 256, 320)
    # The objectness targets are the predicted boxes' IoU (detached): they move
    # with the parameters, so the check is on the box and contrastive terms.
    task = SuperYOLOTask(
        model=model,
        num_classes=1,
        width=0.25,
        super_resolution=False,
        ema=False,
        obj_gain=0.0,
    )
    assert task.engines == ()
    task.train()
    parts, raw = task.compute_loss(batch, task.model)
    assert raw.shape == (2, 3, 64, 80, 6)
    assert torch.isfinite(parts['loss'])
    if model == 'seadate_yolov5s':
        # the model's contrastive loss is part of the total
        assert parts['loss_contrast'] > 0
        torch.testing.assert_close(
            parts['loss'].detach(), parts['loss_det'] + parts['loss_contrast']
        )
    else:
        assert 'loss_contrast' not in parts
    assert_gradient_step_lowers(
        lambda: task.compute_loss(batch, task.model)[0]['loss'],
        list(task.model.parameters()),
    )
    # evaluation runs without the auxiliary loss
    task.eval()
    parts, _ = task.compute_loss(batch, task.model)
    assert 'loss_contrast' not in parts


def test_seadate_task_options() -> None:
    task = SuperYOLOTask(
        model='seadate_yolov5s',
        num_classes=2,
        width=0.25,
        model_kwargs={'contrast_weight': 0.5, 'temperature': 0.2},
    )
    model = task.model
    assert isinstance(model, SeaDATE)
    assert model.contrast_weight == 0.5
    assert model.contrast is not None
    assert model.contrast.temperature == 0.2
    with pytest.raises(ValueError, match='engine must be one of'):
        task.set_engine('onnxruntime')
    task.eval()
    out = task.detect_images(torch.rand(1, 4, 40, 52), score_threshold=0.0)
    assert out[0]['prediction_bbox_xyxy'].shape[1] == 4
    assert out[0]['prediction_bbox_xyxy'][:, 2].max() <= 52
    with pytest.raises(ValueError, match="unknown model 'seadate_yolov5s'"):
        GHOSTTask(model='seadate_yolov5s')


@pytest.mark.slow
@pytest.mark.filterwarnings('ignore:LLVIP. :UserWarning')
def test_seadate_cli_fit_and_reload(tmp_path: Path) -> None:
    config = str(CONF / 'seadate_llvip.yaml')
    root = ['--trainer.default_root_dir', str(tmp_path)]
    assert main(['fit', '--config', config, *root]) == 0
    (ckpt,) = (tmp_path / 'checkpoints').glob('*.ckpt')
    task = load_task(ckpt)
    assert isinstance(task, SuperYOLOTask)
    assert isinstance(task.model, SeaDATE)
    assert task.hparams['model_kwargs'] == {'contrast_weight': 0.1}
    argv = ['test', '--config', config, *root, '--ckpt_path', str(ckpt)]
    assert main(argv) == 0
