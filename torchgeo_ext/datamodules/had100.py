"""HAD100 datamodule."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from torchvision.transforms.v2 import Compose

from ..datasets.had100 import HAD100
from .passthrough import PassThroughDataModule

Sample = dict[str, Any]


class RandomCrop:
    """Crop a random ``size`` x ``size`` window from a sample.

    Crops ``image``, ``valid_mask``, ``mask`` and ``prediction`` alike and
    shifts ``transform`` to the window's origin. Scenes smaller than the
    window are zero-padded at the bottom/right, with ``valid_mask`` False
    over the padding.
    """

    def __init__(self, size: int, generator: torch.Generator | None = None) -> None:
        """Initialise a new RandomCrop.

        Args:
            size: Side of the square window in pixels.
            generator: Random generator (None: torch's global one).
        """
        if size < 1:
            raise ValueError(f'size must be positive, got {size}')
        self.size = size
        self.generator = generator

    def __call__(self, sample: Sample) -> Sample:
        """Crop a sample.

        Args:
            sample: A HAD100 sample.

        Returns:
            The cropped sample (a new dict).
        """
        image: Tensor = sample['image']
        height, width = image.shape[-2:]
        size = self.size
        y0 = int(
            torch.randint(0, max(height - size, 0) + 1, (1,), generator=self.generator)
        )
        x0 = int(
            torch.randint(0, max(width - size, 0) + 1, (1,), generator=self.generator)
        )
        out = dict(sample)
        for key in ('image', 'valid_mask', 'mask', 'prediction'):
            if key not in sample:
                continue
            value: Tensor = sample[key]
            window = value[..., y0 : y0 + size, x0 : x0 + size]
            if window.shape[-2:] != (size, size):
                padded = value.new_zeros((*value.shape[:-2], size, size))
                padded[..., : window.shape[-2], : window.shape[-1]] = window
                window = padded
            out[key] = window.clone()
        if 'transform' in sample:
            a, b, c, d, e, f = (float(v) for v in sample['transform'])
            out['transform'] = torch.tensor(
                [a, b, c + a * x0 + b * y0, d, e, f + d * x0 + e * y0],
                dtype=torch.float64,
            )
        return out


class HAD100DataModule(PassThroughDataModule):
    """LightningDataModule for :class:`~torchgeo_ext.datasets.had100.HAD100`.

    Training uses random ``patch_size`` crops of the anomaly-free training
    scenes; validation, test and prediction use the full test scenes (batch
    size 1, scenes differ in size); with ``sensor='aviris'`` they use the
    AVIRIS-NG test scenes, the only ones (pick ``bands`` so counts match). HAD100 has no labelled validation split,
    so validation runs on the test scenes: do not select models on it when
    reporting test numbers. Values are passed through unnormalised (the
    default ``/255`` of TorchGeo data modules does not apply to radiance or
    reflectance); models standardise their own inputs.
    """

    def __init__(
        self,
        batch_size: int = 8,
        patch_size: int = 64,
        num_workers: int = 0,
        **kwargs: Any,
    ) -> None:
        """Initialise a new HAD100DataModule instance.

        Args:
            batch_size: Size of each training mini-batch.
            patch_size: Side of the random training crops.
            num_workers: Number of workers for parallel data loading.
            **kwargs: Additional keyword arguments passed to
                :class:`~torchgeo_ext.datasets.had100.HAD100` (``root``,
                ``sensor``, ``layout``, ``bands``, ...).
        """
        super().__init__(HAD100, batch_size, num_workers, **kwargs)
        self.patch_size = patch_size
        #: Identity: radiance/reflectance go to the task raw; BSDM and STAD
        #: min-max scale each scene themselves (part of the methods, applied
        #: alike in training, scoring and ``torchgeo-ext anomaly``).
        self.normalisation = {'offset': 0.0, 'scale': 1.0}
        self.val_batch_size = 1
        self.test_batch_size = 1
        self.predict_batch_size = 1

    def setup(self, stage: str) -> None:
        """Set up datasets.

        Args:
            stage: Either 'fit', 'validate', 'test', or 'predict'.
        """
        kwargs = dict(self.kwargs)
        user_transforms = kwargs.pop('transforms', None)
        test_kwargs = dict(kwargs)
        if test_kwargs.get('sensor') == 'aviris' and test_kwargs.get('layout') != 'mat':
            test_kwargs['sensor'] = 'aviris_ng'  # the only sensor with test scenes
        if stage == 'fit':
            crop = RandomCrop(self.patch_size)
            transforms = (
                crop if user_transforms is None else Compose([crop, user_transforms])
            )
            self.train_dataset = HAD100(split='train', transforms=transforms, **kwargs)
        if stage in ('fit', 'validate'):
            self.val_dataset = HAD100(
                split='test', transforms=user_transforms, **test_kwargs
            )
        if stage == 'test':
            self.test_dataset = HAD100(
                split='test', transforms=user_transforms, **test_kwargs
            )
        if stage == 'predict':
            self.predict_dataset = HAD100(
                split='test', transforms=user_transforms, **test_kwargs
            )
