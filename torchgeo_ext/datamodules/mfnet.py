"""MFNet data module."""

from __future__ import annotations

import os
from typing import Any, Literal

from ..datasets.mfnet import MFNet
from .rgbt import RGBTDataModule

__all__ = ['MFNetDataModule']


class MFNetDataModule(RGBTDataModule):
    """LightningDataModule for :class:`~torchgeo_ext.datasets.mfnet.MFNet`.

    Splits: ``train``, ``val``, and for test and predict ``test`` (or
    ``test_day`` / ``test_night``, see *test_split*). Batches carry ``image``
    float32 (B, 4, 480, 640) divided by 255 (RGB bands 0-2, thermal band 3)
    and ``mask`` int64 (B, 480, 640). Training adds random horizontal flips,
    applied identically to both modalities and the mask.
    """

    def __init__(
        self,
        root: str | os.PathLike[str] = 'data',
        batch_size: int = 4,
        num_workers: int = 0,
        test_split: Literal['test', 'test_day', 'test_night'] = 'test',
        augment: bool = True,
        **kwargs: Any,
    ) -> None:
        """Initialise a new MFNetDataModule.

        Args:
            root: Dataset root (see :class:`MFNet`).
            batch_size: Size of each mini-batch.
            num_workers: Number of workers for parallel data loading.
            test_split: Split used by test and predict.
            augment: Random horizontal flips when training.
            **kwargs: More arguments for :class:`MFNet`.
        """
        super().__init__(MFNet, root, batch_size, num_workers, augment, **kwargs)
        self.test_split = test_split

    def setup(self, stage: str) -> None:
        """Set up the datasets of a stage.

        Args:
            stage: ``'fit'``, ``'validate'``, ``'test'`` or ``'predict'``.
        """
        if stage == 'fit':
            self.train_dataset = MFNet(split='train', **self.kwargs)
        if stage in ('fit', 'validate'):
            self.val_dataset = MFNet(split='val', **self.kwargs)
        if stage == 'test':
            self.test_dataset = MFNet(split=self.test_split, **self.kwargs)
        if stage == 'predict':
            self.predict_dataset = MFNet(split=self.test_split, **self.kwargs)
