"""Base of the RGB-thermal segmentation data modules (FMB, MFNet)."""

from __future__ import annotations

import os
from typing import Any

import kornia.augmentation as K
import torch
from torchgeo.datamodules import NonGeoDataModule

from ..datasets.rgbt import RGBTSegmentationDataset

__all__ = ['RGBTDataModule']


class RGBTDataModule(NonGeoDataModule):
    """Data module of an :class:`~torchgeo_ext.datasets.rgbt.RGBTSegmentationDataset`.

    Batches are divided by 255 (8-bit RGB and thermal); training adds random
    horizontal flips, applied identically to both modalities and the mask.
    """

    mean = torch.tensor(0.0)
    std = torch.tensor(255.0)

    def __init__(
        self,
        dataset_class: type[RGBTSegmentationDataset],
        root: str | os.PathLike[str],
        batch_size: int,
        num_workers: int,
        augment: bool,
        **kwargs: Any,
    ) -> None:
        """Initialise the data module.

        Args:
            dataset_class: The dataset.
            root: Dataset root.
            batch_size: Size of each mini-batch.
            num_workers: Number of workers for parallel data loading.
            augment: Random horizontal flips when training.
            **kwargs: More arguments for the dataset.
        """
        super().__init__(dataset_class, batch_size, num_workers, root=root, **kwargs)
        if augment:
            self.train_aug = K.AugmentationSequential(
                K.Normalize(mean=self.mean, std=self.std),
                K.RandomHorizontalFlip(p=0.5),
                data_keys=None,
                keepdim=True,
            )
