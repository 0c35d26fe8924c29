"""What the SAR detection data modules (SSDD, HRSID, SAR-AIRcraft) share: bit depth, letterbox, augmentation."""

from __future__ import annotations

from typing import Any

from torchgeo.datamodules import NonGeoDataModule
from torchgeo.datasets import NonGeoDataset
from torchvision.transforms.v2 import Compose

from .detection import (
    DetectionAugmentation,
    Letterbox,
    collate_detection,
    default_train_augmentation,
)

#: Raw value range of each supported bit depth: what the images are divided by.
BIT_DEPTH_SCALE = {8: 255.0, 16: 65535.0}


class SARDetectionDataModule(NonGeoDataModule):
    """A data module for single-band SAR amplitude images with boxes.

    Normalisation (after the transfer to the device, recorded by tasks):
    ``image / 255`` for 8-bit images (``bit_depth=8``, the public releases),
    ``image / 65535`` for 16-bit ones (``bit_depth=16``). 8-bit batches cross
    worker processes as uint8 and become float32 after the transfer (float32
    throughout when sample ``transforms`` are given).

    With ``patch_size`` every sample is letterboxed (:class:`Letterbox`) to
    ``patch_size`` x ``patch_size`` (scaled to fit, padded with 0 on the right
    and bottom; boxes scaled alike) before any user ``transforms``, so that
    images of different sizes stack into batches. Training applies random
    horizontal and vertical flips and 90 degree rotations that move the boxes
    with the image (``augment=True``).
    """

    def __init__(
        self,
        dataset_class: type[NonGeoDataset],
        batch_size: int,
        num_workers: int,
        patch_size: int | None,
        bit_depth: int,
        augment: bool,
        **kwargs: Any,
    ) -> None:
        """Initialise a new SARDetectionDataModule.

        Args:
            dataset_class: The dataset.
            batch_size: Size of each mini-batch.
            num_workers: Number of workers for parallel data loading.
            patch_size: Side of the letterboxed samples, or None to keep the
                images' own size (then they must all have one size to batch).
            bit_depth: 8 or 16: the images' raw value range.
            augment: Apply random flips and rotations when training.
            **kwargs: More arguments for the dataset (e.g. ``transforms``).

        Raises:
            ValueError: If ``bit_depth`` or ``patch_size`` is invalid.
        """
        if bit_depth not in BIT_DEPTH_SCALE:
            raise ValueError(f'bit_depth must be 8 or 16, got {bit_depth!r}')
        if patch_size is not None and patch_size <= 0:
            raise ValueError(f'patch_size must be positive, got {patch_size}')
        transforms = kwargs.pop('transforms', None)
        # uint8 between worker processes (4x fewer bytes), float32 after the
        # transfer (DetectionAugmentation); sample transforms get float32.
        dtype = 'uint8' if bit_depth == 8 and transforms is None else 'float32'
        kwargs.setdefault('dtype', dtype)
        if patch_size is not None:
            letterbox = Letterbox(patch_size)
            transforms = (
                letterbox if transforms is None else Compose([letterbox, transforms])
            )
        super().__init__(
            dataset_class, batch_size, num_workers, transforms=transforms, **kwargs
        )
        self.patch_size = patch_size
        self.bit_depth = bit_depth
        scale = BIT_DEPTH_SCALE[bit_depth]
        self.collate_fn = collate_detection
        self.aug = DetectionAugmentation(std=scale)
        self.train_aug = (
            default_train_augmentation(square=True, scale=scale) if augment else None
        )
        #: Per-band offset and scale applied after the transfer (recorded by tasks).
        self.normalisation = self.aug.normalisation
