"""SAR-AIRcraft-1.0 data module."""

from __future__ import annotations

import os
from typing import Any, Literal

from ..datasets.sar_aircraft import SARAircraft
from .sar import SARDetectionDataModule


class SARAircraftDataModule(SARDetectionDataModule):
    """LightningDataModule for :class:`~torchgeo_ext.datasets.sar_aircraft.SARAircraft`.

    Splits: ``train``, ``val`` and ``test`` from ``ImageSets/Main``;
    ``predict`` uses ``test``.

    Batches (after :func:`~torchgeo_ext.datamodules.detection.collate_detection`
    and the batch augmentation on the device): ``image`` float32 B x 1 x P x P
    (``P = patch_size``, 800 by default: the images are 800 to 1,500 pixels
    a side and are letterboxed, so the larger ones are shrunk) divided by 255
    (65535 with ``bit_depth=16``), ``bbox_xyxy``, ``label`` (and ``bbox``
    when oriented) as lists of per-image tensors, in the letterboxed pixels.
    See :class:`~torchgeo_ext.datamodules.sar.SARDetectionDataModule`.
    """

    def __init__(
        self,
        root: str | os.PathLike[str] = 'data',
        batch_size: int = 8,
        num_workers: int = 0,
        bbox_orientation: Literal['horizontal', 'oriented'] = 'horizontal',
        patch_size: int | None = 800,
        bit_depth: Literal[8, 16] = 8,
        augment: bool = True,
        **kwargs: Any,
    ) -> None:
        """Initialise a new SARAircraftDataModule.

        Args:
            root: Dataset root (see :class:`SARAircraft`).
            batch_size: Size of each mini-batch.
            num_workers: Number of workers for parallel data loading.
            bbox_orientation: ``'horizontal'``, or ``'oriented'`` to add the
                boxes' corners as ``bbox``.
            patch_size: Side of the letterboxed samples; None keeps the images'
                sizes (batch size 1).
            bit_depth: 8 (the release) or 16 (own 16-bit copies).
            augment: Apply random flips and rotations when training.
            **kwargs: More arguments for :class:`SARAircraft` (e.g. ``transforms``).
        """
        super().__init__(
            SARAircraft,
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
            self.train_dataset = SARAircraft(split='train', **self.kwargs)
        if stage in ('fit', 'validate'):
            self.val_dataset = SARAircraft(split='val', **self.kwargs)
        if stage == 'test':
            self.test_dataset = SARAircraft(split='test', **self.kwargs)
        if stage == 'predict':
            self.predict_dataset = SARAircraft(split='test', **self.kwargs)
