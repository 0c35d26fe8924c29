"""Shared data module of the HSI + LiDAR land-cover benchmarks."""

from __future__ import annotations

from typing import Any

from ..datasets.hsi_lidar import HSILiDARDataset
from .passthrough import PassThroughDataModule

Sample = dict[str, Any]


class HSILiDARDataModule(PassThroughDataModule):
    """LightningDataModule for an :class:`~torchgeo_ext.datasets.hsi_lidar.HSILiDARDataset`.

    fit: patches around the training pixels; validation, test and predict:
    patches around the test pixels. The benchmarks have no validation split
    and MIViT evaluates on the test pixels during training, as done here: do
    not select models on validation when reporting test numbers. Patches are
    already scaled to [0, 1] per band by the dataset, so no batch
    normalisation runs (TorchGeo's default ``/255`` does not apply); :attr:`normalisation` describes that scaling.
    """

    dataset_class: type[HSILiDARDataset] = HSILiDARDataset

    def __init__(
        self,
        batch_size: int = 64,
        patch_size: int = 11,
        num_workers: int = 0,
        **kwargs: Any,
    ) -> None:
        """Initialise a new data module instance.

        Args:
            batch_size: Patches per mini-batch.
            patch_size: Side of the patches.
            num_workers: Number of workers for parallel data loading.
            **kwargs: Additional keyword arguments passed to the dataset
                (``root``, ``padding``, ``normalize``, ``train_per_class``, ...).
        """
        super().__init__(
            self.dataset_class, batch_size, num_workers, patch_size=patch_size, **kwargs
        )
        self.patch_size = patch_size

    @property
    def normalisation(self) -> dict[str, list[float]] | None:
        """The dataset's per-band scaling of the raw bands (None before setup).

        Tasks record it at fit time, so that raw rasters (e.g. the GeoTIFF
        release of a scene) get the same scaling at prediction time.
        """
        for name in ('train_dataset', 'val_dataset', 'test_dataset', 'predict_dataset'):
            dataset = getattr(self, name, None)
            if isinstance(dataset, HSILiDARDataset):
                return dataset.normalisation
        return None

    def setup(self, stage: str) -> None:
        """Set up datasets.

        Args:
            stage: Either 'fit', 'validate', 'test', or 'predict'.
        """
        if stage == 'fit':
            self.train_dataset = self.dataset_class(split='train', **self.kwargs)
        if stage in ('fit', 'validate'):
            self.val_dataset = self.dataset_class(split='test', **self.kwargs)
        if stage == 'test':
            self.test_dataset = self.dataset_class(split='test', **self.kwargs)
        if stage == 'predict':
            self.predict_dataset = self.dataset_class(split='test', **self.kwargs)
