"""FYH cloud recognition data module."""

from __future__ import annotations

import math
from typing import Any, ClassVar

import torch
from torch.utils.data import Subset
from torchgeo.datamodules import NonGeoDataModule

from ..datasets.fyh import FYH


class FYHDataModule(NonGeoDataModule):
    """LightningDataModule for the FYH tiles (:class:`~torchgeo_ext.datasets.fyh.FYH`).

    * fit: ``train`` tiles, minus a validation subset of whole scenes (tiles of
      one scan never end up on both sides; chosen by a seeded permutation of
      the scene names, so the split is deterministic)
    * test and predict: the ``test`` tiles

    Images are already min-max normalised to [0, 1] per scene, so the default
    augmentation is the identity normalisation (mean 0, std 1). Batches carry
    ``image`` (B, 14, 100, 100), ``mask`` (B, 100, 100, ignore index 10) and
    per-sample ``transform`` (B, 6) and ``crs``.
    """

    mean = torch.tensor(0.0)
    std = torch.tensor(1.0)
    #: Identity: the builder stores the tiles normalised (the FYH format, see
    #: :mod:`torchgeo_ext.converters.fyh`); tasks record it as such.
    normalisation: ClassVar[dict[str, float]] = {'offset': 0.0, 'scale': 1.0}

    def __init__(
        self,
        root: str = 'data',
        batch_size: int = 8,
        num_workers: int = 0,
        val_split_pct: float = 0.1,
        seed: int = 0,
        **kwargs: Any,
    ) -> None:
        """Initialise a new FYHDataModule instance.

        Args:
            root: Directory of the FYH ``mat*`` folders.
            batch_size: Size of each mini-batch.
            num_workers: Number of workers for parallel data loading.
            val_split_pct: Fraction of the training scenes held out for
                validation (at least one scene when there are two or more).
            seed: Seed of the scene permutation.
            **kwargs: Additional keyword arguments passed to
                :class:`~torchgeo_ext.datasets.fyh.FYH`.
        """
        super().__init__(FYH, batch_size, num_workers, root=root, **kwargs)
        self.val_split_pct = val_split_pct
        self.seed = seed

    def split_scenes(self, dataset: FYH) -> tuple[list[int], list[int]]:
        """Split the tile indices of *dataset* into training and validation by scene.

        Args:
            dataset: The training tiles.

        Returns:
            ``(train indices, validation indices)``.
        """
        scenes = sorted({stem for stem, _ in dataset.tiles})
        n_val = 0
        if self.val_split_pct > 0 and len(scenes) > 1:
            n_val = min(
                len(scenes) - 1, max(1, math.floor(len(scenes) * self.val_split_pct))
            )
        order = torch.randperm(
            len(scenes), generator=torch.Generator().manual_seed(self.seed)
        )
        val_scenes = {scenes[i] for i in order[:n_val].tolist()}
        train: list[int] = []
        val: list[int] = []
        for index, (stem, _) in enumerate(dataset.tiles):
            (val if stem in val_scenes else train).append(index)
        return train, val

    def setup(self, stage: str) -> None:
        """Set up datasets.

        Args:
            stage: Either 'fit', 'validate', 'test', or 'predict'.
        """
        if stage in ('fit', 'validate'):
            dataset = FYH(split='train', **self.kwargs)
            train, val = self.split_scenes(dataset)
            self.train_dataset = Subset(dataset, train)
            self.val_dataset = Subset(dataset, val)
        if stage == 'test':
            self.test_dataset = FYH(split='test', **self.kwargs)
        if stage == 'predict':
            self.predict_dataset = FYH(split='test', **self.kwargs)
