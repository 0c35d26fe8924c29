"""FMB data module."""

from __future__ import annotations

import math
import os
from typing import Any

import torch
from torch.utils.data import Subset

from ..datasets.fmb import FMB
from .rgbt import RGBTDataModule

__all__ = ['FMBDataModule']


class FMBDataModule(RGBTDataModule):
    """LightningDataModule for :class:`~torchgeo_ext.datasets.fmb.FMB`.

    FMB releases ``train`` and ``test`` only: validation holds out
    *val_split_pct* of the training images (a seeded permutation, so the
    split is deterministic), or uses ``test`` when *val_split_pct* is 0 (the
    papers' practice). Batches carry ``image`` float32 (B, 4, 600, 800)
    divided by 255 (RGB bands 0-2, infrared band 3) and ``mask`` int64.
    Training adds random horizontal flips.
    """

    def __init__(
        self,
        root: str | os.PathLike[str] = 'data',
        batch_size: int = 4,
        num_workers: int = 0,
        val_split_pct: float = 0.0,
        seed: int = 0,
        augment: bool = True,
        **kwargs: Any,
    ) -> None:
        """Initialise a new FMBDataModule.

        Args:
            root: Dataset root (see :class:`FMB`).
            batch_size: Size of each mini-batch.
            num_workers: Number of workers for parallel data loading.
            val_split_pct: Fraction of the training images held out for
                validation (0: validate on ``test``).
            seed: Seed of the hold-out permutation.
            augment: Random horizontal flips when training.
            **kwargs: More arguments for :class:`FMB`.

        Raises:
            ValueError: If *val_split_pct* is not in [0, 1).
        """
        if not 0 <= val_split_pct < 1:
            raise ValueError(f'val_split_pct must be in [0, 1), got {val_split_pct}')
        super().__init__(FMB, root, batch_size, num_workers, augment, **kwargs)
        self.val_split_pct = val_split_pct
        self.seed = seed

    def setup(self, stage: str) -> None:
        """Set up the datasets of a stage.

        Args:
            stage: ``'fit'``, ``'validate'``, ``'test'`` or ``'predict'``.
        """
        if stage in ('fit', 'validate'):
            train = FMB(split='train', **self.kwargs)
            if self.val_split_pct > 0:
                n_val = max(1, math.floor(len(train) * self.val_split_pct))
                order = torch.randperm(
                    len(train), generator=torch.Generator().manual_seed(self.seed)
                ).tolist()
                self.val_dataset = Subset(train, sorted(order[:n_val]))
                self.train_dataset = Subset(train, sorted(order[n_val:]))
            else:
                self.train_dataset = train
                self.val_dataset = FMB(split='test', **self.kwargs)
        if stage == 'test':
            self.test_dataset = FMB(split='test', **self.kwargs)
        if stage == 'predict':
            self.predict_dataset = FMB(split='test', **self.kwargs)
