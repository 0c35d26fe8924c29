"""Tests of the SAR-AIRcraft-1.0 data module in torchgeo_ext.datamodules.sar_aircraft."""

import os

import pytest
import torch

from torchgeo_ext.datamodules.sar_aircraft import SARAircraftDataModule
from torchgeo_ext.datasets.sar_aircraft import SARAircraft

DATA = os.path.join(os.path.dirname(os.path.dirname(__file__)), 'data', 'sar_aircraft')

pytestmark = pytest.mark.filterwarnings('ignore:SARAircraft. :UserWarning')


def test_batches() -> None:
    dm = SARAircraftDataModule(DATA, batch_size=3, patch_size=60)
    dm.setup('fit')
    batch = next(iter(dm.train_dataloader()))
    # images of 80, 100 and 120 px letterboxed to one size
    assert batch['image'].shape == (3, 1, 60, 60)
    assert batch['image'].dtype == torch.uint8
    out = dm.train_aug(batch)  # type: ignore[misc]
    assert 0 <= out['image'].min() <= out['image'].max() <= 1
    assert [len(b) for b in out['bbox_xyxy']] == [len(b) for b in out['label']]
    assert len(dm.val_dataset) == 2  # type: ignore[arg-type]
    dm.setup('test')
    assert len(dm.test_dataset) == 3  # type: ignore[arg-type]
    dm.setup('predict')
    batch = next(iter(dm.predict_dataloader()))
    # the test images (80, 100, 120 px) scaled to 60 px: boxes scaled alike
    raw = SARAircraft(DATA, split='test')
    for boxes, k in zip(batch['bbox_xyxy'], range(3), strict=True):
        scale = 60 / raw[k]['image'].shape[-1]
        torch.testing.assert_close(boxes, raw[k]['bbox_xyxy'] * scale)


def test_oriented() -> None:
    dm = SARAircraftDataModule(
        DATA, batch_size=2, patch_size=64, bbox_orientation='oriented', augment=False
    )
    dm.setup('validate')
    batch = next(iter(dm.val_dataloader()))
    assert [b.shape[1] for b in batch['bbox']] == [8, 8]
