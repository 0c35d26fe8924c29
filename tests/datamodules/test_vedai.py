"""Tests of the VEDAI data module in torchgeo_ext.datamodules.vedai."""

from pathlib import Path
from typing import Any

from torchvision.transforms.v2 import Compose

from torchgeo_ext.datamodules.vedai import VEDAIDataModule

DATA = Path(__file__).resolve().parents[1] / 'data' / 'vedai'


def mark(sample: dict[str, Any]) -> dict[str, Any]:
    # Runs after the super-resolution pair: sees both images.
    sample['sizes'] = (sample['image'].shape[-1], sample['image_hr'].shape[-1])
    return sample


def test_user_transforms_run_after_the_super_resolution_pair() -> None:
    dm = VEDAIDataModule(
        root=DATA, batch_size=1, super_resolution=True, augment=False, transforms=mark
    )
    dm.setup('fit')
    dataset: Any = dm.train_dataset
    assert isinstance(dataset.transforms, Compose)
    sample = dataset[0]
    low, high = sample['sizes']
    assert high == 2 * low
