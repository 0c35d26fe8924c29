"""DroneVehicle data module."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any, Literal

from torchgeo.datamodules import NonGeoDataModule

from ..datasets.dronevehicle import DroneVehicle
from .detection import (
    DetectionAugmentation,
    collate_detection,
    default_train_augmentation,
)


class DroneVehicleDataModule(NonGeoDataModule):
    """LightningDataModule for :class:`~torchgeo_ext.datasets.dronevehicle.DroneVehicle`.

    Splits ``train``, ``val`` (or ``val_split``), ``test``; ``predict`` uses
    ``test``.

    Batches (after :func:`collate_detection` and the batch augmentation on the
    device): ``image`` float32 B x C x 512 x 640 divided by 255 (RGB bands 0-2,
    IR band 3 by default; passed between worker processes as uint8 and
    converted after the transfer unless sample transforms are given), ``bbox_xyxy``, ``label`` and (oriented) ``bbox`` as
    lists of per-image tensors. Training applies random horizontal and vertical
    flips (together: 180 degree rotations; the frames are not square) that
    move the boxes with the image and transform all modalities identically.
    """

    def __init__(
        self,
        root: str | os.PathLike[str] = 'data',
        batch_size: int = 8,
        num_workers: int = 0,
        modalities: Sequence[str] = ('rgb', 'ir'),
        label_source: Literal['ir', 'rgb'] = 'ir',
        crop_border: bool = True,
        bbox_orientation: Literal['oriented', 'horizontal'] = 'oriented',
        augment: bool = True,
        val_split: Literal['val', 'test'] = 'val',
        **kwargs: Any,
    ) -> None:
        """Initialise a new DroneVehicleDataModule.

        Args:
            root: Dataset root (see :class:`DroneVehicle`).
            batch_size: Size of each mini-batch.
            num_workers: Number of workers for parallel data loading.
            modalities: Subset of ``('rgb', 'ir')``, stacked in this order.
            label_source: ``'ir'`` or ``'rgb'`` annotations.
            crop_border: Remove the 100 px white border.
            bbox_orientation: ``'oriented'`` (adds ``bbox``) or ``'horizontal'``.
            augment: Apply random flips when training.
            val_split: Split used for validation: ``'test'`` for copies
                without a validation split (the DOTA-style layout of E2E-MFD).
            **kwargs: More arguments for :class:`DroneVehicle`.
        """
        # uint8 between worker processes (4x fewer bytes), float32 after the
        # transfer (DetectionAugmentation); sample transforms get float32.
        kwargs.setdefault(
            'dtype', 'uint8' if kwargs.get('transforms') is None else 'float32'
        )
        super().__init__(
            DroneVehicle,
            batch_size,
            num_workers,
            root=root,
            modalities=tuple(modalities),
            label_source=label_source,
            crop_border=crop_border,
            bbox_orientation=bbox_orientation,
            **kwargs,
        )
        self.val_split = val_split
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
            self.train_dataset = DroneVehicle(split='train', **self.kwargs)
        if stage in ('fit', 'validate'):
            self.val_dataset = DroneVehicle(split=self.val_split, **self.kwargs)
        if stage == 'test':
            self.test_dataset = DroneVehicle(split='test', **self.kwargs)
        if stage == 'predict':
            self.predict_dataset = DroneVehicle(split='test', **self.kwargs)
