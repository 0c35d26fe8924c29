import os
from pathlib import Path
from typing import Any

import lightning
import pytest
import torch
import torchgeo.main

from torchgeo_ext.cli import main
from torchgeo_ext.datamodules.hrsid import HRSIDDataModule
from torchgeo_ext.datamodules.llvip import LLVIPDataModule
from torchgeo_ext.datamodules.sar_aircraft import SARAircraftDataModule
from torchgeo_ext.datamodules.ssdd import SSDDDataModule
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
    assert isinstance(raw, torch.Tensor)  # one head (SAR-Net's three: a list)
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


def sar_batch() -> dict[str, Any]:
    # One-band SAR-like batch: two bright ships on clutter, one empty image.
    torch.manual_seed(0)
    image = 0.1 * torch.rand(2, 1, 64, 96)
    image[0, :, 20:28, 30:52] += 0.8
    image[0, :, 40:50, 70:76] += 0.8
    return {
        'image': image,
        'bbox_xyxy': [
            torch.tensor([[30.0, 20, 52, 28], [70, 40, 76, 50]]),
            torch.zeros(0, 4),
        ],
        'label': [torch.tensor([0, 0]), torch.zeros(0, dtype=torch.long)],
    }


def sar_datamodule_batch(name: str) -> dict[str, Any]:
    # A normalised batch of a fake SAR dataset (one band, 128 x 128 or HRSID's 96).
    root = ROOT / 'data' / name
    dm: SSDDDataModule | HRSIDDataModule | SARAircraftDataModule
    if name == 'ssdd':
        dm = SSDDDataModule(root=root, batch_size=2, patch_size=128, augment=False)
    elif name == 'hrsid':
        dm = HRSIDDataModule(root=root, batch_size=2, augment=False)
    else:
        dm = SARAircraftDataModule(
            root=root, batch_size=2, patch_size=128, augment=False
        )
    dm.setup('fit')
    batch: dict[str, Any] = dm.aug(next(iter(dm.train_dataloader())))
    return batch


@pytest.mark.parametrize(
    ('dataset', 'num_classes'), [('ssdd', 1), ('hrsid', 1), ('sar_aircraft', 7)]
)
def test_sarnet_learns_on_fake_sar_data(dataset: str, num_classes: int) -> None:
    torch.manual_seed(0)
    task = SuperYOLOTask(
        model='sarnet_n',
        num_classes=num_classes,
        in_channels=1,
        ema=False,
        obj_gain=0.0,
    )
    assert task.detector.bands == [0]
    assert [c.stride for c in task.criteria] == [8, 16, 32]
    batch = sar_datamodule_batch(dataset)
    assert batch['image'].shape[1] == 1
    assert sum(len(b) for b in batch['bbox_xyxy']) > 0
    task.train()
    terms, raw = task.compute_loss(batch, task.model)
    assert isinstance(raw, list)
    assert len(raw) == 3
    assert {'loss', 'loss_box', 'loss_obj', 'loss_cls', 'loss_det'} <= set(terms)
    assert 'loss_sr' not in terms  # SAR-Net has no super-resolution branch
    # The objectness targets are the predicted boxes' IoU (detached): they move
    # with the parameters, so the check is on the box and class terms (obj_gain 0).
    # CIoU's aspect-ratio weight is held constant (as in YOLOv5), so the step is
    # small: at 1e-4 of the loss, 0.9 to 1.06 of the predicted decrease showed
    # over seeds 0-5 on all three data sets (at 1e-3, as little as 0.34).
    assert_gradient_step_lowers(
        lambda: task.compute_loss(batch, task.model)[0]['loss'],
        list(task.model.parameters()),
        fraction=1e-4,
    )


def test_sarnet_objectness_balance() -> None:
    # YOLOv5's objectness balance of the three levels.
    task = SuperYOLOTask(model='sarnet_n', num_classes=1, in_channels=1)
    assert [c.obj_gain for c in task.criteria] == pytest.approx(
        [4.0 * 7.68, 7.68, 0.4 * 7.68]
    )
    assert [c.obj_gain for c in SuperYOLOTask().criteria] == [7.68]


@pytest.mark.slow
@pytest.mark.parametrize('config', ['sarnet_hrsid', 'sarnet_sar_aircraft'])
def test_sarnet_configs_fit_under_torchgeo(tmp_path: Path, config: str) -> None:
    root = ['--trainer.default_root_dir', str(tmp_path)]
    torchgeo.main.main(['fit', '--config', str(CONF / f'{config}.yaml'), *root])
    (ckpt,) = (tmp_path / 'checkpoints').glob('*.ckpt')
    task = load_task(ckpt)
    assert isinstance(task, SuperYOLOTask)
    assert task.hparams['model'] == 'sarnet_n'
    assert task.normalisation == {'offset': [0.0], 'scale': [255.0]}


def test_sarnet_predicts() -> None:
    task = SuperYOLOTask(
        model='sarnet_n', num_classes=1, in_channels=1, max_detections=4
    )
    # No inference engine: the engines compose SuperYOLO's stem.
    assert task.engines == ()
    task.hparams['score_threshold'] = 0.0
    task.eval()
    batch = sar_batch()
    with torch.no_grad():
        out = task.predict_step(batch, 0)
    boxes = out['prediction_bbox_xyxy']
    assert len(boxes) == 2
    assert all(b.shape[1] == 4 for b in boxes)
    assert all(0 < len(b) <= 4 for b in boxes)
    assert all(b[:, 2].max() <= 96 and b[:, 3].max() <= 64 for b in boxes)


def test_ghost_trains_superyolo_only() -> None:
    with pytest.raises(ValueError, match="unknown model 'sarnet_n'"):
        GHOSTTask(model='sarnet_n')


def test_checkpoints_with_the_single_loss_still_load(tmp_path: Path) -> None:
    task = SuperYOLOTask(super_resolution=False, ema=False)
    path = save(task, tmp_path / 'new.ckpt')
    checkpoint = torch.load(path, weights_only=False)
    state = checkpoint['state_dict']
    state['criterion.anchors'] = state.pop('criteria.0.anchors')
    torch.save(checkpoint, tmp_path / 'old.ckpt')
    loaded = load_task(tmp_path / 'old.ckpt')
    assert isinstance(loaded, SuperYOLOTask)
    torch.testing.assert_close(loaded.criteria[0].anchors, task.criteria[0].anchors)
