"""LLVIP data module."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from torchgeo.datamodules import NonGeoDataModule
from torchvision.transforms.v2 import Compose

from ..datasets.llvip import LLVIP
from .detection import (
    DetectionAugmentation,
    Downsample,
    collate_detection,
    default_train_augmentation,
)


class LLVIPDataModule(NonGeoDataModule):
    """LightningDataModule for :class:`~torchgeo_ext.datasets.llvip.LLVIP`.

    Splits: ``train``; LLVIP has no validation split, so ``val``, ``test`` and
    ``predict`` all use ``test`` (as the papers evaluating on LLVIP do).

    Batches (after :func:`collate_detection` and the batch augmentation on the
    device): ``image`` float32 B x C x H x W divided by 255 (RGB bands 0-2, IR
    band 3 by default), ``bbox_xyxy`` and ``label`` as lists of per-image
    tensors. With ``downsample=2`` the 1280 x 1024 frames become 640 x 512
    (area averaging, boxes scaled; the 640 px input of the detectors trained
    on LLVIP). Training applies random horizontal and vertical flips that move
    the boxes with the image and transform both modalities identically.
    """

    def __init__(
        self,
        root: str | os.PathLike[str] = 'data',
        batch_size: int = 8,
        num_workers: int = 0,
        modalities: Sequence[str] = ('rgb', 'ir'),
        downsample: int = 1,
        augment: bool = True,
        **kwargs: Any,
    ) -> None:
        """Initialise a new LLVIPDataModule.

        Args:
            root: Dataset root (see :class:`LLVIP`).
            batch_size: Size of each mini-batch.
            num_workers: Number of workers for parallel data loading.
            modalities: Subset of ``('rgb', 'ir')``, stacked in this order.
            downsample: Integer factor the frames are reduced by (1: full size).
            augment: Apply random flips when training.
            **kwargs: More arguments for :class:`LLVIP` (e.g. ``transforms``,
                applied after the downsampling).
        """
        transforms = kwargs.pop('transforms', None)
        if downsample != 1:
            scale = Downsample(downsample)
            transforms = scale if transforms is None else Compose([scale, transforms])
        # uint8 between worker processes (4x fewer bytes), float32 after the
        # transfer (DetectionAugmentation); sample transforms get float32.
        kwargs.setdefault('dtype', 'uint8' if transforms is None else 'float32')
        super().__init__(
            LLVIP,
            batch_size,
            num_workers,
            root=root,
            modalities=tuple(modalities),
            transforms=transforms,
            **kwargs,
        )
        self.downsample = downsample
        self.collate_fn = collate_detection
        self.aug = DetectionAugmentation()
        self.train_aug = default_train_augmentation(square=False) if augment else None
        #: Per-band offset and scale applied after the transfer (recorded by tasks).
        self.normalisation = self.aug.normalisation

    def setup(self, stage: str) -> None:
        """Set up the datasets of a stage.

        Args:
            stage: ``'fit'``, ``'validate'``, ``'test'`` or ``'predict'``.
        """
        if stage == 'fit':
            self.train_dataset = LLVIP(split='train', **self.kwargs)
        if stage in ('fit', 'validate'):
            self.val_dataset = LLVIP(split='test', **self.kwargs)
        if stage == 'test':
            self.test_dataset = LLVIP(split='test', **self.kwargs)
        if stage == 'predict':
            self.predict_dataset = LLVIP(split='test', **self.kwargs)
