"""HOTC datamodule."""

from __future__ import annotations

from typing import Any

import torch
from torch.utils.data import DataLoader

from ..datasets.hotc import HOTC, HOTCSequenceView
from ..samplers.tracking import TrackingPairDataset, TrackingPairSampler
from .passthrough import PassThroughDataModule

Sample = dict[str, Any]


class HOTCDataModule(PassThroughDataModule):
    """LightningDataModule for :class:`~torchgeo_ext.datasets.hotc.HOTC`.

    * fit: template/search pairs (:class:`TrackingPairSampler` +
      :class:`TrackingPairDataset`) from the ``train`` split with jitter;
      validation pairs from ``val`` (2023/2024) or ``test`` (2020, which has
      no validation split), without jitter and with a fixed seed so every
      validation epoch sees the same pairs.
    * test / predict: the ``test`` split's frames in temporal order, batch
      size 1 (``sequence`` and ``frame`` tell a tracker when a new video
      starts; the first frame carries the initial box). :meth:`test_sequences`
      gives the sequence views for OTB evaluation.

    Frames are already normalised by the dataset; no batch augmentation runs.
    """

    def __init__(
        self,
        batch_size: int = 16,
        num_workers: int = 0,
        template_size: int = 128,
        search_size: int = 256,
        template_factor: float = 2.0,
        search_factor: float = 4.0,
        center_jitter: tuple[float, float] = (0.0, 3.0),
        scale_jitter: tuple[float, float] = (0.0, 0.25),
        max_gap: int = 100,
        samples_per_epoch: int | None = None,
        **kwargs: Any,
    ) -> None:
        """Initialise a new HOTCDataModule instance.

        Args:
            batch_size: Pairs per training/validation mini-batch.
            num_workers: Number of workers for parallel data loading.
            template_size: Side of the template crops.
            search_size: Side of the search crops.
            template_factor: Template context (window side / sqrt(w h)).
            search_factor: Search context (window side / sqrt(w h)).
            center_jitter: Centre jitter of template and search (training).
            scale_jitter: Log-scale jitter of template and search (training).
            max_gap: Largest frame gap between template and search.
            samples_per_epoch: Training pairs per epoch (default: one per
                annotated frame).
            **kwargs: Passed to :class:`~torchgeo_ext.datasets.hotc.HOTC`
                (``root``, ``year``, ``camera``, ``modality``, ...).
        """
        # The per-frame peak scaling is frame-level (it must precede the
        # template/search crops), so the dataset applies it when reading; the
        # data module is what asks for it.
        kwargs.setdefault('normalize', True)
        super().__init__(HOTC, batch_size, num_workers, **kwargs)
        self.crop_kwargs: dict[str, Any] = {
            'template_size': template_size,
            'search_size': search_size,
            'template_factor': template_factor,
            'search_factor': search_factor,
        }
        self.center_jitter = center_jitter
        self.scale_jitter = scale_jitter
        self.max_gap = max_gap
        self.samples_per_epoch = samples_per_epoch
        self.test_batch_size = 1
        self.predict_batch_size = 1
        #: Identity after the transfer: HOTC scales each frame when reading it
        #: (``normalize``, by the frame's own peak: it must precede cropping).
        self.normalisation = {'offset': 0.0, 'scale': 1.0}

    def setup(self, stage: str) -> None:
        """Set up datasets.

        Args:
            stage: Either 'fit', 'validate', 'test', or 'predict'.
        """
        year = self.kwargs.get('year', 2020)
        if stage == 'fit':
            self.train_frames = HOTC(split='train', **self.kwargs)
            self.train_pairs = TrackingPairDataset(
                self.train_frames,
                center_jitter=self.center_jitter,
                scale_jitter=self.scale_jitter,
                **self.crop_kwargs,
            )
            self.train_dataset = self.train_pairs
        if stage in ('fit', 'validate'):
            val_split = 'test' if year == 2020 else 'val'
            self.val_frames = HOTC(split=val_split, **self.kwargs)
            self.val_pairs = TrackingPairDataset(
                self.val_frames,
                center_jitter=(0.0, 0.0),
                scale_jitter=(0.0, 0.0),
                **self.crop_kwargs,
            )
            self.val_dataset = self.val_pairs
        if stage in ('test', 'predict'):
            self.test_dataset = HOTC(split='test', **self.kwargs)
            self.predict_dataset = self.test_dataset

    def train_dataloader(self) -> DataLoader[Sample]:
        """Training pairs with random jitter.

        Returns:
            The data loader.
        """
        sampler = TrackingPairSampler(
            self.train_frames, max_gap=self.max_gap, length=self.samples_per_epoch
        )
        return DataLoader(
            self.train_pairs,
            batch_size=self.batch_size,
            sampler=sampler,
            num_workers=self.num_workers,
            drop_last=True,
            persistent_workers=self.num_workers > 0,
        )

    def val_dataloader(self) -> DataLoader[Sample]:
        """Validation pairs, the same every epoch.

        Returns:
            The data loader.
        """
        sampler = TrackingPairSampler(
            self.val_frames,
            max_gap=self.max_gap,
            generator=torch.Generator().manual_seed(0),
        )
        return DataLoader(
            self.val_pairs,
            batch_size=self.batch_size,
            sampler=sampler,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
        )

    def test_sequences(self) -> list[HOTCSequenceView]:
        """The test split's videos (call :meth:`setup` with ``'test'`` first).

        Returns:
            One view per sequence.
        """
        dataset = self.test_dataset
        assert isinstance(dataset, HOTC)
        return [dataset.sequence(i) for i in range(len(dataset.sequences))]

    def _dataloader_factory(self, split: str) -> DataLoader[Sample]:
        dataset = self._valid_attribute(f'{split}_dataset', 'dataset')
        return DataLoader(
            dataset,
            batch_size=1,
            shuffle=False,
            num_workers=self.num_workers,
            collate_fn=self.collate_fn,
        )
