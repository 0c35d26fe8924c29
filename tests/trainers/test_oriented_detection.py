"""Tests of the oriented-detection tasks in torchgeo_ext.trainers.oriented_detection."""

from pathlib import Path
from typing import Any

import pytest
import torch

from torchgeo_ext.ops.obb import obb_to_poly
from torchgeo_ext.trainers.base import load_task, task_class_path
from torchgeo_ext.trainers.oriented_detection import E2EMFDTask, OrientedDetectionTask

from .conftest import assert_gradient_step_lowers

ROOT = Path(__file__).parents[1]
LMA_CONFIG = ROOT / 'conf' / 'lma_dronevehicle.yaml'
E2EMFD_CONFIG = ROOT / 'conf' / 'e2emfd_dronevehicle.yaml'


def batch() -> dict[str, object]:
    torch.manual_seed(0)
    return {
        'image': torch.rand(2, 4, 64, 96),
        'bbox': [
            obb_to_poly(
                torch.tensor([[30.0, 30, 24, 10, 0.3], [70, 40, 16, 16, -0.4]])
            ),
            torch.zeros(0, 8),
        ],
        'label': [torch.tensor([1, 4]), torch.zeros(0, dtype=torch.long)],
        'transform': [torch.tensor([1.0, 0, 0, 0, -1, 0], dtype=torch.float64)] * 2,
        'crs': ['EPSG:32633'] * 2,
    }


@pytest.mark.parametrize(
    'model', ['lma_yolov8n_obb', 'two_stream_yolov8n_obb', 'yolov8n_obb']
)
def test_training_and_predict_steps(model: str) -> None:
    names = ['car', 'truck', 'bus', 'van', 'freight car']
    task = OrientedDetectionTask(
        model=model, num_classes=5, class_names=names, width=0.0625
    )
    assert task.oriented is True
    assert task.class_names == names
    b = batch()
    loss = task.training_step(b, 0)
    loss.backward()
    assert torch.isfinite(loss)
    task.eval()
    with torch.no_grad():
        out = task.predict_step(b)
    assert len(out['prediction_bbox']) == 2
    for boxes, labels, scores in zip(
        out['prediction_bbox'],
        out['prediction_label'],
        out['prediction_score'],
        strict=True,
    ):
        assert boxes.shape[1] == 8
        assert labels.shape == scores.shape == boxes.shape[:1]
    assert out['crs'] == ['EPSG:32633'] * 2
    assert 'transform' in out
    # a single tile without batch dimension, as `torchgeo-ext detect` sends it
    with torch.no_grad():
        single = task.predict_step({'image': torch.rand(4, 64, 64)})
    assert len(single['prediction_bbox']) == 1


def test_layouts_and_errors() -> None:
    task = OrientedDetectionTask(
        model='yolov8n_obb', in_channels=3, num_classes=2, width=0.0625
    )
    assert task.modalities == {'image': [0, 1, 2]}
    assert task.class_names == ['class_0', 'class_1']
    task = OrientedDetectionTask(
        model='lma_yolov8n_obb',
        modalities={'ir': [0], 'rgb': [1, 2, 3]},
        class_names=['a'],
        num_classes=1,
        width=0.0625,
    )
    assert task.class_names == ['a']
    with pytest.raises(ValueError, match='unknown model'):
        OrientedDetectionTask(model='yolo')
    with pytest.raises(ValueError, match='unknown model'):
        E2EMFDTask(model='lma_yolov8n_obb')
    with pytest.raises(ValueError, match='unknown model'):
        OrientedDetectionTask(model='e2emfd_yolov8n_obb', width=0.0625)


def test_e2emfd_predicts_fused_image() -> None:
    task = E2EMFDTask(num_classes=5, width=0.0625)
    task.eval()
    with torch.no_grad():
        out = task.predict_step(batch())
    assert out['prediction'].shape == (2, 1, 64, 96)
    assert (out['prediction'] >= 0).all()
    assert (out['prediction'] <= 1).all()
    assert len(out['prediction_bbox']) == 2
    assert out['crs'] == ['EPSG:32633'] * 2


@pytest.mark.slow
def test_cli_lma_fit_test_predict(tmp_path: Path) -> None:
    from torchgeo_ext.cli import main

    common = ['--config', str(LMA_CONFIG), '--trainer.default_root_dir', str(tmp_path)]
    assert main(['fit', *common]) == 0
    (checkpoint,) = (tmp_path / 'checkpoints').glob('*.ckpt')
    assert task_class_path(checkpoint) == (
        'torchgeo_ext.trainers.oriented_detection.OrientedDetectionTask'
    )
    task = load_task(checkpoint)
    assert isinstance(task, OrientedDetectionTask)
    assert task.class_names[4] == 'freight car'
    # ranks were reallocated to the target average and survive the checkpoint
    ranks = task.final_ranks()
    assert sum(ranks.values()) / len(ranks) == pytest.approx(2.0, abs=0.05)
    assert main(['test', *common, '--ckpt_path', str(checkpoint)]) == 0
    assert main(['predict', *common, '--ckpt_path', str(checkpoint)]) == 0


@pytest.mark.slow
def test_cli_e2emfd_torchgeo_fit_then_predict(tmp_path: Path) -> None:
    from torchgeo.main import main as torchgeo_main

    from torchgeo_ext.cli import main

    common = [
        '--config',
        str(E2EMFD_CONFIG),
        '--trainer.default_root_dir',
        str(tmp_path),
    ]
    torchgeo_main(['fit', *common])
    (checkpoint,) = (tmp_path / 'checkpoints').glob('*.ckpt')
    task = load_task(checkpoint)
    assert isinstance(task, E2EMFDTask)
    assert task.hparams['gmta'] is True
    assert main(['predict', *common, '--ckpt_path', str(checkpoint)]) == 0


def test_paper_configs_build() -> None:
    import yaml

    for name, cls in (
        ('lma_dronevehicle.yaml', OrientedDetectionTask),
        ('e2emfd_dronevehicle.yaml', E2EMFDTask),
    ):
        config = yaml.safe_load((ROOT.parent / 'configs' / name).read_text())
        model = config['model']
        assert model['class_path'] == f'{cls.__module__}.{cls.__qualname__}'
        task = cls(**model['init_args'])
        assert task.hparams['width'] == 0.25
        assert task.class_names == ['car', 'truck', 'bus', 'van', 'freight car']
        data = config['data']['class_path']
        assert data == 'torchgeo_ext.datamodules.dronevehicle.DroneVehicleDataModule'


@pytest.mark.slow
def test_loss_trains_on_fake_dronevehicle() -> None:
    from torchgeo_ext.datamodules.dronevehicle import DroneVehicleDataModule

    torch.manual_seed(0)
    datamodule = DroneVehicleDataModule(
        root=ROOT / 'data' / 'dronevehicle', batch_size=2
    )
    with pytest.warns(UserWarning, match='skipped'):
        datamodule.setup('fit')
    raw = next(iter(datamodule.train_dataloader()))
    b = datamodule.aug(raw)
    assert b['image'].shape[1] == 4
    assert sum(len(x) for x in b['bbox']) > 0
    task = OrientedDetectionTask(
        model='lma_yolov8n_obb', width=0.0625, adaptive_rank=False
    )
    task.train()
    assert_gradient_step_lowers(
        lambda: task.compute_loss(task.detection_output(b['image']), b)['loss'],
        list(task.parameters()),
    )


def test_detect_protocol() -> None:
    # `torchgeo-ext detect` reads `oriented`, `detector.bands` and lowers
    # hparams['score_threshold'] to its --score-threshold
    task = OrientedDetectionTask(model='lma_yolov8n_obb', width=0.0625)
    assert task.detector.bands == [0, 1, 2, 3]
    task.hparams['score_threshold'] = 0.0
    task.eval()
    with torch.no_grad():
        out = task.predict_step({'image': torch.rand(1, 4, 64, 64)}, 0)
    # no score threshold: the candidates survive (up to max_detections after NMS)
    assert out['prediction_bbox'][0].shape[0] > 0
    e2e = E2EMFDTask(width=0.0625, fusion_channels=[4, 8])
    assert e2e.detector.bands == [0, 1, 2, 3]


def test_sarnet_oriented_on_fake_rssdd(monkeypatch: pytest.MonkeyPatch) -> None:
    from torchgeo_ext.datamodules.ssdd import SSDDDataModule

    torch.manual_seed(0)
    dm = SSDDDataModule(
        root=ROOT / 'data' / 'ssdd',
        batch_size=2,
        patch_size=128,
        augment=False,
        bbox_orientation='oriented',
    )
    dm.setup('fit')
    b = dm.aug(next(iter(dm.train_dataloader())))
    assert b['image'].shape[1] == 1
    assert sum(len(x) for x in b['bbox']) > 0
    task = OrientedDetectionTask(
        model='sarnet_n_obb', num_classes=1, in_channels=1, max_detections=5
    )
    assert task.modalities == {'image': [0]}
    assert task.detector.bands == [0]
    task.train()
    # The task-aligned targets (which anchors, how confident) are computed from
    # the detached predictions and move with every step: with few small ships
    # a step can reassign anchors and raise the loss, for YOLOv8-OBB as well.
    # With the first call's targets held fixed, the loss is a smooth function
    # of the parameters and its gradient must point downhill.
    assign = task.criterion.assign
    targets: list[Any] = []

    def first_targets(*args: Any) -> Any:
        if not targets:
            targets.append(assign(*args))
        return targets[0]

    monkeypatch.setattr(task.criterion, 'assign', first_targets)
    assert_gradient_step_lowers(
        lambda: task.compute_loss(task.detection_output(b['image']), b)['loss'],
        list(task.parameters()),
    )
    assert targets[0][2].any()  # some anchors are assigned to ships
    task.hparams['score_threshold'] = 0.0
    task.eval()
    with torch.no_grad():
        out = task.predict_step(b, 0)
    assert all(p.shape[1] == 8 and len(p) <= 5 for p in out['prediction_bbox'])
