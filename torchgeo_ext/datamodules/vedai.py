"""VEDAI data module (with SuperYOLO's super-resolution pairs)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any, Literal

import torch.nn.functional as F
from torchgeo.datamodules import NonGeoDataModule
from torchvision.transforms.v2 import Compose

from ..datasets.vedai import VEDAI
from .detection import (
    DetectionAugmentation,
    collate_detection,
    default_train_augmentation,
)

Sample = dict[str, Any]


class SuperResolutionPair:
    """Make a (detector input, super-resolution target) pair from one sample.

    ``image`` becomes the area-downsampled image (size divided by ``factor``)
    with its boxes scaled to match; the original goes to ``image_hr``.
    """

    def __init__(self, factor: int) -> None:
        """Initialise a new SuperResolutionPair.

        Args:
            factor: Integer downsampling factor (2 for 1024 -> 512).
        """
        self.factor = factor

    def __call__(self, sample: Sample) -> Sample:
        """Downsample ``image`` and its boxes, keep the original as ``image_hr``.

        Args:
            sample: A VEDAI sample at the high resolution.

        Returns:
            The sample with ``image``, ``image_hr`` and rescaled boxes.
        """
        hr = sample['image']
        size = (hr.shape[-2] // self.factor, hr.shape[-1] // self.factor)
        sample = dict(sample)
        sample['image_hr'] = hr
        sample['image'] = F.interpolate(hr[None], size=size, mode='area')[0]
        for key in ('bbox_xyxy', 'bbox'):
            if key in sample:
                sample[key] = sample[key] / self.factor
        return sample


class VEDAIDataModule(NonGeoDataModule):
    """LightningDataModule for :class:`~torchgeo_ext.datasets.vedai.VEDAI`.

    Splits: ``train`` is the fold's ``foldNN.txt``; VEDAI has no validation
    split, so ``val``, ``test`` and ``predict`` all use the fold's
    ``foldNNtest.txt`` (as SuperYOLO does).

    Batches (after :func:`collate_detection` and the batch augmentation on the
    device): ``image`` float32 B x C x H x W divided by 255 (RGB bands 0-2, IR
    band 3 by default; passed between worker processes as uint8 and converted
    after the transfer unless sample transforms are given), ``bbox_xyxy`` / ``label`` (and ``bbox`` when oriented)
    as lists of per-image tensors. Training applies random horizontal and
    vertical flips and 90 degree rotations that move the boxes with the image
    and transform all modalities identically.

    With ``super_resolution=True`` the 1024 folders are read; ``image`` is the
    detector input area-downsampled to ``resolution`` (boxes in its
    coordinates) and ``image_hr`` is the 1024 image (the SuperYOLO
    super-resolution target), augmented identically.
    """

    def __init__(
        self,
        root: str | os.PathLike[str] = 'data',
        fold: int = 1,
        batch_size: int = 8,
        num_workers: int = 0,
        resolution: Literal[512, 1024] = 512,
        super_resolution: bool = False,
        modalities: Sequence[str] = ('rgb', 'ir'),
        classes: Literal['superyolo', 'original'] = 'superyolo',
        bbox_orientation: Literal['horizontal', 'oriented'] = 'horizontal',
        augment: bool = True,
        **kwargs: Any,
    ) -> None:
        """Initialise a new VEDAIDataModule.

        Args:
            root: Dataset root (see :class:`VEDAI`).
            fold: Fold number, 1 to 10.
            batch_size: Size of each mini-batch.
            num_workers: Number of workers for parallel data loading.
            resolution: Resolution of ``image`` (512 or 1024).
            super_resolution: Read the 1024 images and also yield them as
                ``image_hr``; ``image`` is downsampled to ``resolution``.
            modalities: Subset of ``('rgb', 'ir')``, stacked in this order.
            classes: ``'superyolo'`` or ``'original'``.
            bbox_orientation: ``'oriented'`` adds ``bbox`` (N x 8).
            augment: Apply random flips and rotations when training.
            **kwargs: More arguments for :class:`VEDAI` (e.g. ``transforms``).

        Raises:
            ValueError: If ``super_resolution`` is asked for at 1024.
        """
        if super_resolution and resolution >= 1024:
            raise ValueError('super_resolution needs resolution < 1024 (e.g. 512)')
        transforms = kwargs.pop('transforms', None)
        read_resolution = 1024 if super_resolution else resolution
        if super_resolution:
            pair = SuperResolutionPair(1024 // resolution)
            transforms = pair if transforms is None else Compose([pair, transforms])
        # uint8 between worker processes (4x fewer bytes), float32 after the
        # transfer (DetectionAugmentation); sample transforms get float32.
        kwargs.setdefault('dtype', 'uint8' if transforms is None else 'float32')
        super().__init__(
            VEDAI,
            batch_size,
            num_workers,
            root=root,
            fold=fold,
            resolution=read_resolution,
            modalities=tuple(modalities),
            classes=classes,
            bbox_orientation=bbox_orientation,
            transforms=transforms,
            **kwargs,
        )
        self.fold = fold
        self.resolution = resolution
        self.super_resolution = super_resolution
        self.collate_fn = collate_detection
        self.aug = DetectionAugmentation()
        self.train_aug = default_train_augmentation(square=True) if augment else None
        #: Per-band offset and scale applied after the transfer (recorded by tasks).
        self.normalisation = self.aug.normalisation

    def setup(self, stage: str) -> None:
        """Set up the datasets of a stage.

        Args:
            stage: ``'fit'``, ``'validate'``, ``'test'`` or ``'predict'``.
        """
        if stage == 'fit':
            self.train_dataset = VEDAI(split='train', **self.kwargs)
        if stage in ('fit', 'validate'):
            self.val_dataset = VEDAI(split='test', **self.kwargs)
        if stage == 'test':
            self.test_dataset = VEDAI(split='test', **self.kwargs)
        if stage == 'predict':
            self.predict_dataset = VEDAI(split='test', **self.kwargs)
