"""HRSID data module."""

from __future__ import annotations

import os
from typing import Any, Literal

from ..datasets.hrsid import HRSID
from .sar import SARDetectionDataModule


class HRSIDDataModule(SARDetectionDataModule):
    """LightningDataModule for :class:`~torchgeo_ext.datasets.hrsid.HRSID`.

    Splits: ``train`` (``train2017.json``); HRSID has no validation split, so
    ``val``, ``test`` and ``predict`` use ``test2017.json``.

    Batches (after :func:`~torchgeo_ext.datamodules.detection.collate_detection`
    and the batch augmentation on the device): ``image`` float32 B x 1 x 800 x
    800 divided by 255 (65535 with ``bit_depth=16``), ``bbox_xyxy``, ``label``
    and (oriented) ``bbox`` as lists of per-image tensors. The tiles all have
    one size, so they are not letterboxed unless ``patch_size`` is given. See
    :class:`~torchgeo_ext.datamodules.sar.SARDetectionDataModule`.
    """

    def __init__(
        self,
        root: str | os.PathLike[str] = 'data',
        batch_size: int = 8,
        num_workers: int = 0,
        bbox_orientation: Literal['horizontal', 'oriented'] = 'horizontal',
        patch_size: int | None = None,
        bit_depth: Literal[8, 16] = 8,
        augment: bool = True,
        **kwargs: Any,
    ) -> None:
        """Initialise a new HRSIDDataModule.

        Args:
            root: Dataset root (see :class:`HRSID`).
            batch_size: Size of each mini-batch.
            num_workers: Number of workers for parallel data loading.
            bbox_orientation: ``'horizontal'`` or ``'oriented'`` (adds ``bbox``).
            patch_size: Side of letterboxed samples (e.g. 640 to train at a
                lower resolution), or None for the 800 x 800 tiles as they are.
            bit_depth: 8 (the release) or 16 (own 16-bit copies).
            augment: Apply random flips and rotations when training.
            **kwargs: More arguments for :class:`HRSID` (e.g. ``transforms``).
        """
        super().__init__(
            HRSID,
            batch_size,
            num_workers,
            patch_size,
            bit_depth,
            augment,
            root=root,
            bbox_orientation=bbox_orientation,
            **kwargs,
        )

    def setup(self, stage: str) -> None:
        """Set up the datasets of a stage.

        Args:
            stage: ``'fit'``, ``'validate'``, ``'test'`` or ``'predict'``.
        """
        if stage == 'fit':
            self.train_dataset = HRSID(split='train', **self.kwargs)
        if stage in ('fit', 'validate'):
            self.val_dataset = HRSID(split='test', **self.kwargs)
        if stage == 'test':
            self.test_dataset = HRSID(split='test', **self.kwargs)
        if stage == 'predict':
            self.predict_dataset = HRSID(split='test', **self.kwargs)
