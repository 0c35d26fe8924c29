"""SSDD data module."""

from __future__ import annotations

import os
from typing import Any, Literal

from ..datasets.ssdd import SSDD
from .sar import SARDetectionDataModule

SSDDSplit = Literal['train', 'test', 'test_inshore', 'test_offshore']


class SSDDDataModule(SARDetectionDataModule):
    """LightningDataModule for :class:`~torchgeo_ext.datasets.ssdd.SSDD`.

    Splits: ``train``; SSDD has no validation split, so ``val`` uses
    ``val_split`` (``test`` by default, as the SSDD papers report); ``test``
    and ``predict`` use ``test_split`` (``test``, ``test_inshore`` or
    ``test_offshore``).

    Batches (after :func:`~torchgeo_ext.datamodules.detection.collate_detection`
    and the batch augmentation on the device): ``image`` float32 B x 1 x P x P
    (``P = patch_size``, 512 by default: SSDD images differ in size and are
    letterboxed) divided by 255 (65535 with ``bit_depth=16``), ``bbox_xyxy``,
    ``label`` and (oriented) ``bbox`` as lists of per-image tensors, in the
    letterboxed pixels. See
    :class:`~torchgeo_ext.datamodules.sar.SARDetectionDataModule`.
    """

    def __init__(
        self,
        root: str | os.PathLike[str] = 'data',
        batch_size: int = 8,
        num_workers: int = 0,
        bbox_orientation: Literal['horizontal', 'oriented'] = 'horizontal',
        patch_size: int | None = 512,
        bit_depth: Literal[8, 16] = 8,
        augment: bool = True,
        val_split: SSDDSplit = 'test',
        test_split: SSDDSplit = 'test',
        **kwargs: Any,
    ) -> None:
        """Initialise a new SSDDDataModule.

        Args:
            root: Dataset root (see :class:`SSDD`).
            batch_size: Size of each mini-batch.
            num_workers: Number of workers for parallel data loading.
            bbox_orientation: ``'horizontal'`` (BBox-SSDD) or ``'oriented'``
                (RBox-SSDD; adds ``bbox``).
            patch_size: Side of the letterboxed samples; None keeps the images'
                sizes (batch size 1 then).
            bit_depth: 8 (the release) or 16 (own 16-bit copies).
            augment: Apply random flips and rotations when training.
            val_split: Split used for validation.
            test_split: Split used for testing and prediction.
            **kwargs: More arguments for :class:`SSDD` (e.g. ``transforms``).
        """
        super().__init__(
            SSDD,
            batch_size,
            num_workers,
            patch_size,
            bit_depth,
            augment,
            root=root,
            bbox_orientation=bbox_orientation,
            **kwargs,
        )
        self.val_split = val_split
        self.test_split = test_split

    def setup(self, stage: str) -> None:
        """Set up the datasets of a stage.

        Args:
            stage: ``'fit'``, ``'validate'``, ``'test'`` or ``'predict'``.
        """
        if stage == 'fit':
            self.train_dataset = SSDD(split='train', **self.kwargs)
        if stage in ('fit', 'validate'):
            self.val_dataset = SSDD(split=self.val_split, **self.kwargs)
        if stage == 'test':
            self.test_dataset = SSDD(split=self.test_split, **self.kwargs)
        if stage == 'predict':
            self.predict_dataset = SSDD(split=self.test_split, **self.kwargs)
