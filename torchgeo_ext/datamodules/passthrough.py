"""A NonGeoDataModule whose batches reach the model exactly as the dataset returns them."""

from __future__ import annotations

from torchgeo.datamodules import NonGeoDataModule
from torchgeo.datasets.utils import Sample


class PassThroughDataModule(NonGeoDataModule):
    """NonGeoDataModule without TorchGeo's on-device normalisation and augmentation.

    For datasets that normalise their samples themselves, or whose models
    need the raw values (TorchGeo's default would divide by 255).
    """

    def on_after_batch_transfer(self, batch: Sample, dataloader_idx: int) -> Sample:
        """Return the batch unchanged.

        Args:
            batch: A batch of data.
            dataloader_idx: The index of the dataloader to which the batch belongs.

        Returns:
            The same batch.
        """
        return batch
