"""Tests of the HRSID data module in torchgeo_ext.datamodules.hrsid."""

import os

import pytest
import torch

from torchgeo_ext.datamodules.hrsid import HRSIDDataModule

DATA = os.path.join(os.path.dirname(os.path.dirname(__file__)), 'data', 'hrsid')

pytestmark = pytest.mark.filterwarnings('ignore:HRSID. :UserWarning')


def test_batches() -> None:
    dm = HRSIDDataModule(DATA, batch_size=2, bbox_orientation='oriented')
    dm.setup('fit')
    batch = next(iter(dm.train_dataloader()))
    # the tiles share one size: stacked as they are, uint8 until the transfer
    assert batch['image'].shape == (2, 1, 96, 96)
    assert batch['image'].dtype == torch.uint8
    assert [b.shape[1] for b in batch['bbox']] == [8, 8]
    torch.manual_seed(0)
    out = dm.train_aug(batch)  # type: ignore[misc]
    assert out['image'].dtype == torch.float32
    assert 0 <= out['image'].min() <= out['image'].max() <= 1
    # flips and 90 degree rotations keep every ship of a square tile
    assert [len(b) for b in out['bbox']] == [len(b) for b in batch['bbox']]
    assert dm.normalisation == {'offset': [0.0], 'scale': [255.0]}
    assert len(dm.val_dataset) == 2  # type: ignore[arg-type]
    dm.setup('predict')
    batch = next(iter(dm.predict_dataloader()))
    assert batch['image'].shape == (2, 1, 96, 96)


def test_patch_size_letterboxes() -> None:
    dm = HRSIDDataModule(DATA, batch_size=2, patch_size=48, augment=False)
    dm.setup('test')
    batch = next(iter(dm.test_dataloader()))
    assert batch['image'].shape == (2, 1, 48, 48)
    raw = HRSIDDataModule(DATA, batch_size=2, augment=False)
    raw.setup('test')
    full = next(iter(raw.test_dataloader()))
    for small, large in zip(batch['bbox_xyxy'], full['bbox_xyxy'], strict=True):
        torch.testing.assert_close(small, large / 2)
