"""PassThroughDataModule: batches reach the model as the dataset returns them."""

from types import SimpleNamespace

import pytest
import torch
from torchgeo.datamodules import NonGeoDataModule
from torchgeo.datasets import NonGeoDataset

from torchgeo_ext.datamodules.had100 import HAD100DataModule
from torchgeo_ext.datamodules.hotc import HOTCDataModule
from torchgeo_ext.datamodules.hsi_lidar import HSILiDARDataModule
from torchgeo_ext.datamodules.passthrough import PassThroughDataModule


@pytest.mark.parametrize('cls', [HAD100DataModule, HOTCDataModule, HSILiDARDataModule])
def test_datamodules_pass_batches_through(cls: type) -> None:
    assert issubclass(cls, PassThroughDataModule)


def test_batch_unchanged_while_training() -> None:
    dm = PassThroughDataModule(NonGeoDataset, batch_size=1)  # type: ignore[type-abstract]
    # a trainer in the training state: TorchGeo's default would normalise here
    dm.trainer = SimpleNamespace(training=True)  # type: ignore[assignment]
    image = torch.full((1, 3, 4, 4), 200.0)
    batch = {'image': image}
    out = dm.on_after_batch_transfer(batch, 0)
    assert out is batch
    assert torch.equal(out['image'], torch.full((1, 3, 4, 4), 200.0))
    # what the override prevents: TorchGeo's default divides by 255
    default = NonGeoDataModule.on_after_batch_transfer(dm, {'image': image.clone()}, 0)
    assert not torch.equal(default['image'], image)
