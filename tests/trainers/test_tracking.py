"""Tests for the HyA-T tracking task."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from torch.utils.data import DataLoader

from torchgeo_ext.cli import main
from torchgeo_ext.datasets.hotc import HOTC
from torchgeo_ext.metrics.tracking import OTBMetric, success_auc
from torchgeo_ext.trainers.tracking import TrackingTask

from .conftest import assert_gradient_step_lowers

ROOT = 'tests/data/hotc/hotc2020'
CONFIG = 'tests/conf/hyat_hotc.yaml'
MODALITY = ('falsecolor', 'hsi')


def _task(**kwargs: object) -> TrackingTask:
    torch.manual_seed(0)
    return TrackingTask(template_size=16, search_size=32, **kwargs)  # type: ignore[arg-type]


def test_unknown_model() -> None:
    with pytest.raises(ValueError, match='model'):
        TrackingTask(model='nope')


def test_loss_trains_on_pairs(hotc_pair_batch: Callable[[], dict[str, Any]]) -> None:
    task = _task(freeze_backbone=True, lr=3e-3)
    batch = hotc_pair_batch()
    trainable = [p for p in task.parameters() if p.requires_grad]
    target = batch['search_bbox_xyxy'].reshape(-1, 4)
    task.train()
    assert_gradient_step_lowers(
        lambda: task.compute_loss(task(batch['template'], batch['search']), target)[
            'loss'
        ],
        trainable,
    )


def test_track_sequence() -> None:
    task = _task()
    view = HOTC(ROOT, split='test', modality=MODALITY).sequence(0)
    boxes = task.track(view)
    assert boxes.shape == (len(view), 4)
    assert torch.equal(boxes[0], view.boxes[0])
    assert torch.isfinite(boxes).all()
    assert (boxes[:, 2:] > 0).all()
    # Boxes stay inside the 16 x 12 frames.
    assert (boxes[:, 0] >= 0).all()
    assert (boxes[:, 0] + boxes[:, 2] <= 16).all()
    assert task.training


def test_stream_matches_track() -> None:
    task = _task().eval()
    dataset = HOTC(ROOT, split='test', modality=MODALITY)
    expected = task.track(dataset.sequence(0))
    loader = DataLoader(dataset, batch_size=1)
    task.on_predict_epoch_start()
    outputs = [task.predict_step(batch, i) for i, batch in enumerate(loader)]
    got = torch.cat([o['prediction_bbox_xyxy'][0] for o in outputs])
    assert got.shape == (len(dataset), 4)
    torch.testing.assert_close(got[:, 2:] - got[:, :2], expected[:, 2:])
    torch.testing.assert_close(got[:, :2], expected[:, :2])


def test_cli_fit_and_test(tmp_path: Path) -> None:
    args = ['--config', CONFIG, f'--trainer.default_root_dir={tmp_path}']
    assert main(['fit', *args, '--trainer.max_steps=2']) == 0
    assert main(['test', *args]) == 0


def test_test_step_scores_sequences() -> None:
    task = _task().eval()
    dataset = HOTC(ROOT, split='test', modality=MODALITY)
    view = dataset.sequence(0)
    pred = task.track(view)
    task.on_test_epoch_start()
    for i, batch in enumerate(DataLoader(dataset, batch_size=1)):
        task.test_step(batch, i)
    task._finish_sequence()
    result = task.test_metrics.compute()
    otb = task.test_metrics['otb']
    assert isinstance(otb, OTBMetric)
    assert float(otb.num_sequences) == 1
    torch.testing.assert_close(
        result['test_success_auc'].float(),
        torch.tensor(success_auc(pred, view.boxes), dtype=torch.float32),
    )
