import math
import os
from pathlib import Path
from typing import Any

import lightning
import pytest
import torch
import torchgeo.main

from torchgeo_ext.cli import main
from torchgeo_ext.datamodules.vedai import VEDAIDataModule
from torchgeo_ext.models.ghost import QuantConv2d
from torchgeo_ext.trainers.base import load_task
from torchgeo_ext.trainers.detection import (
    VEDAI_CLASSES,
    GHOSTTask,
    ModelEMA,
    SuperYOLOTask,
    YOLOv5Loss,
    warmup_cosine,
)

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / 'conf'
DATA = ROOT / 'data' / 'vedai'
ANCHORS = torch.tensor([[10.0, 13.0], [16.0, 30.0], [33.0, 23.0]])


def save(task: lightning.LightningModule, path: Path) -> Path:
    trainer = lightning.Trainer(logger=False, enable_checkpointing=False)
    trainer.strategy.connect(task)
    trainer.save_checkpoint(path)
    return path


def test_target_assignment() -> None:
    loss = YOLOv5Loss(ANCHORS, 4, num_classes=3)
    raw = torch.zeros(1, 3, 8, 8, 8)
    # Centre (9.2, 14.6) px = cell (2.3, 3.65): own cell (2, 3), left (1, 3)
    # because x % 1 < 0.5, and below (2, 4) because (8 - 3.65) % 1 < 0.5.
    box = torch.tensor([[4.2, 8.1, 14.2, 21.1]])  # 10 x 13 px
    b, a, gj, gi, tbox, _anchors, cls = loss.build_targets(
        raw, [box], [torch.tensor([2])]
    )
    cells = {(int(j), int(i)) for j, i in zip(gj, gi)}
    assert cells == {(3, 2), (3, 1), (4, 2)}
    # Every anchor is within the size ratio 4 of a 10 x 13 box.
    assert set(a.tolist()) == {0, 1, 2}
    assert len(b) == 9
    assert (cls == 2).all()
    assert torch.allclose(tbox[:, 2:], torch.tensor([2.5, 3.25]).expand(9, 2))
    # A 200-px box matches no 10-33 px anchor.
    b, *_ = loss.build_targets(
        raw, [torch.tensor([[0.0, 0.0, 200.0, 200.0]])], [torch.tensor([0])]
    )
    assert len(b) == 0


def test_loss_terms() -> None:
    loss = YOLOv5Loss(
        ANCHORS, 4, num_classes=2, box_gain=1.0, obj_gain=1.0, cls_gain=1.0
    )
    box = torch.tensor(
        [[8.0, 8.0, 18.0, 21.0]]
    )  # 10 x 13 = anchor 0, centre cell (3, 3.625)
    raw = torch.full((1, 3, 8, 8, 7), -20.0)
    # A perfect prediction for anchor 0 in every assigned cell.
    _, a, gj, gi, tbox, anchors, _ = loss.build_targets(raw, [box], [torch.tensor([1])])
    for ai, j, i, t, anc in zip(a, gj, gi, tbox, anchors):
        xy = torch.logit((t[:2] + 0.5) / 2)
        wh = torch.logit(torch.sqrt(t[2:] / anc) / 2)
        raw[0, ai, j, i, :4] = torch.cat((xy, wh))
        raw[0, ai, j, i, 4] = 20.0
        raw[0, ai, j, i, 6] = 20.0
    _total, parts = loss(raw, [box], [torch.tensor([1])])
    assert parts['loss_box'] < 1e-4
    assert parts['loss_obj'] < 1e-4
    assert parts['loss_cls'] < 1e-4
    empty, parts = loss(
        torch.zeros(2, 3, 4, 4, 7),
        [torch.zeros(0, 4)] * 2,
        [torch.zeros(0, dtype=torch.long)] * 2,
    )
    # No objects: only objectness, BCE(0 logit, 0 target) = log 2, times the batch size.
    assert empty == pytest.approx(2 * math.log(2))
    assert parts['loss_box'] == 0


def test_warmup_cosine_and_ema() -> None:
    assert warmup_cosine(0, 10, 100, 0.2) == pytest.approx(0.1)
    assert warmup_cosine(50, 10, 100, 0.2) == pytest.approx(0.6)
    assert warmup_cosine(100, 10, 100, 0.2) == pytest.approx(0.2)
    assert warmup_cosine(0, 0, 100, 0.2) == 1.0
    ema_model = torch.nn.Linear(1, 1, bias=False)
    model = torch.nn.Linear(1, 1, bias=False)
    torch.nn.init.zeros_(ema_model.weight)
    torch.nn.init.ones_(model.weight)
    ema = ModelEMA(decay=0.5, tau=1.0)
    ema.update(ema_model, model)
    d = 0.5 * (1 - math.exp(-1))
    assert ema_model.weight.item() == pytest.approx(1 - d)


def test_task_options_and_predict() -> None:
    with pytest.raises(ValueError, match='class_names has 2 names'):
        SuperYOLOTask(num_classes=3, class_names=['a', 'b'])
    task = SuperYOLOTask(super_resolution=False, max_detections=3)
    assert task.class_names == list(VEDAI_CLASSES)
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
        variant='rgb', num_classes=2, super_resolution=False
    ).class_names
    assert names == ['class_0', 'class_1']


def fake_batch() -> dict[str, Any]:
    dm = VEDAIDataModule(root=DATA, batch_size=2, super_resolution=True, augment=False)
    dm.setup('fit')
    batch = next(iter(dm.train_dataloader()))
    return dm.aug(batch)


@pytest.mark.slow
def test_loss_decreases_on_fake_vedai() -> None:
    torch.manual_seed(0)
    batch = fake_batch()
    assert batch['image'].shape[1] == 4
    assert batch['image_hr'].shape[-1] == 2 * batch['image'].shape[-1]
    task = SuperYOLOTask(ema=False)
    optimizer = torch.optim.Adam(task.model.parameters(), lr=1e-3)
    losses = []
    cls_losses = []
    task.train()
    for _ in range(4):
        loss, parts, _ = task.compute_loss(batch, task.model)
        assert 'loss_sr' in parts
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(parts['loss_det'].item())
        cls_losses.append(parts['loss_cls'].item())
    # The detection loss (the objectness targets move with the IoU, so it is
    # not monotonic step by step) and the class loss go down.
    assert losses[-1] < losses[0]
    assert cls_losses[-1] < cls_losses[0]
    # Without image_hr the SR branch is off.
    batch.pop('image_hr')
    _, parts, _ = task.compute_loss(batch, task.model)
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
    teacher = SuperYOLOTask(variant='early', super_resolution=False)
    teacher_ckpt = save(teacher, tmp_path / 'teacher.ckpt')
    task = GHOSTTask(teacher=str(teacher_ckpt), fixed_bits=4)
    student = task.detector
    assert isinstance(student.b1.conv, QuantConv2d)
    assert student.sr is None
    # The student starts from the teacher's EMA weights.
    ema = teacher.ema_model
    assert ema is not None
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
