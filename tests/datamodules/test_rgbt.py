from collections.abc import Sized
from pathlib import Path
from typing import Any, cast

import pytest
import torch

from torchgeo_ext.datamodules.fmb import FMBDataModule
from torchgeo_ext.datamodules.mfnet import MFNetDataModule

DATA = Path(__file__).parents[1] / 'data'


def size(dataset: Any) -> int:
    return len(cast(Sized, dataset))


def test_mfnet_datamodule_batches() -> None:
    dm = MFNetDataModule(root=DATA / 'mfnet', batch_size=2, test_split='test_night')
    dm.setup('fit')
    assert size(dm.train_dataset) == 4
    assert size(dm.val_dataset) == 2
    batch = next(iter(dm.train_dataloader()))
    assert batch['image'].shape == (2, 4, 48, 64)
    out = dm.aug(batch)  # normalisation (val/test/predict)
    assert float(out['image'].max()) <= 1.0
    assert dm.train_aug is not None
    flipped = dm.train_aug(
        {'image': batch['image'].clone(), 'mask': batch['mask'].clone()}
    )
    assert flipped['image'].shape == (2, 4, 48, 64)
    assert flipped['mask'].shape[-2:] == (48, 64)
    assert float(flipped['image'].max()) <= 1.0
    dm.setup('test')
    assert size(dm.test_dataset) == 1


def test_fmb_datamodule_holdout() -> None:
    dm = FMBDataModule(root=DATA / 'fmb', batch_size=1, val_split_pct=0.34)
    dm.setup('fit')
    assert size(dm.train_dataset) + size(dm.val_dataset) == 3
    assert size(dm.val_dataset) == 1
    again = FMBDataModule(root=DATA / 'fmb', val_split_pct=0.34)
    again.setup('fit')
    assert cast(Any, again.val_dataset).indices == cast(Any, dm.val_dataset).indices
    plain = FMBDataModule(root=DATA / 'fmb')
    plain.setup('fit')
    assert size(plain.val_dataset) == 2  # the test split
    with pytest.raises(ValueError, match='val_split_pct'):
        FMBDataModule(root=DATA / 'fmb', val_split_pct=1.0)
    batch = next(iter(plain.val_dataloader()))
    assert batch['mask'].dtype == torch.int64
