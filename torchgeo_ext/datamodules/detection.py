"""Collation and box-aware batch augmentation shared by the detection data modules."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import kornia.augmentation as K
import torch
import torch.nn.functional as F
from kornia.geometry.transform import warp_perspective
from torch import Tensor, nn
from torch.utils.data import default_collate

from ..datasets.detection import xyxy_to_corners
from ..ops.obb import poly_to_xyxy

Batch = dict[str, Any]

#: Keys kept as per-image lists by :func:`collate_detection`.
LIST_KEYS = (
    'bbox_xyxy',
    'bbox',
    'label',
    'prediction_bbox_xyxy',
    'prediction_bbox',
    'prediction_label',
    'prediction_score',
)


def _share_one_storage(values: list[Any]) -> list[Any]:
    """Per-image tensors as views of one concatenated tensor.

    A DataLoader worker then sends one shared-memory block for the whole batch
    instead of one per image (cheaper to pass between processes).
    """
    if len(values) < 2 or not all(isinstance(v, Tensor) for v in values):
        return values
    tails = {tuple(v.shape[1:]) for v in values}
    if len(tails) != 1 or len({v.dtype for v in values}) != 1 or values[0].ndim == 0:
        return values
    counts = [len(v) for v in values]
    return list(torch.cat(values).split(counts))


def _batch_base(values: Sequence[Tensor]) -> Tensor | None:
    """The B x ... tensor whose consecutive slices ``values`` are, if any.

    Datasets that decode a whole batch into one buffer (``__getitems__``)
    return such views; handing over the buffer saves stacking a copy.
    """
    first = values[0]
    if not first.is_contiguous():
        return None
    storage = first.untyped_storage()
    numel = first.numel()
    for k, value in enumerate(values):
        if (
            not value.is_contiguous()
            or value.dtype != first.dtype
            or value.untyped_storage().data_ptr() != storage.data_ptr()
            or value.storage_offset() != first.storage_offset() + k * numel
        ):
            return None
    if storage.nbytes() != len(values) * numel * first.element_size():
        return None  # the buffer holds more than these samples
    shape = (len(values), *first.shape)
    stride = (numel, *first.stride())
    return first.new_empty(0).set_(storage, first.storage_offset(), shape, stride)


def collate_detection(samples: Sequence[Batch]) -> Batch:
    """Collate detection samples: stack images, keep boxes and labels as lists.

    ``image`` (and any other tensor of equal shape in every sample, such as
    ``image_hr``) is stacked; the keys in :data:`LIST_KEYS` become lists of
    per-image tensors (boxes as float32); anything else becomes a list.

    Args:
        samples: Samples from a detection dataset.

    Returns:
        The batch.
    """
    batch: Batch = {}
    for key in samples[0]:
        values = [sample[key] for sample in samples]
        if key in LIST_KEYS:
            if 'bbox' in key:
                values = [v.float() for v in values]
            batch[key] = _share_one_storage(values)
        elif all(isinstance(v, Tensor) for v in values) and (
            len({tuple(v.shape) for v in values}) == 1
        ):
            base = _batch_base(values)
            # default_collate stacks straight into shared memory in workers
            batch[key] = base if base is not None else default_collate(values)
        else:
            batch[key] = values
    return batch


def _edge_matrix(matrix: Tensor) -> Tensor:
    """Convert B x 3 x 3 pixel-centre transforms to pixel-edge coordinates."""
    shift = torch.eye(3, dtype=matrix.dtype, device=matrix.device)
    unshift = shift.clone()
    shift[:2, 2] = 0.5
    unshift[:2, 2] = -0.5
    return shift @ matrix @ unshift


def transform_corners(corners: Tensor, matrix: Tensor) -> Tensor:
    """Apply a 3 x 3 (projective) transform to N x 8 corners.

    Args:
        corners: N x 8 corners ``x1 y1 ... x4 y4``.
        matrix: 3 x 3 transform.

    Returns:
        N x 8 transformed corners.
    """
    pts = corners.reshape(-1, 2)
    ones = torch.ones_like(pts[:, :1])
    out = torch.cat([pts, ones], dim=1) @ matrix.T.to(pts.dtype)
    out = out[:, :2] / out[:, 2:3]
    return out.reshape(-1, 8)


class DetectionAugmentation(nn.Module):
    """Normalise a detection batch and apply geometric augmentations to it.

    The image (all modalities stacked) goes through a Kornia
    :class:`~kornia.augmentation.AugmentationSequential` of geometric
    augmentations; the per-sample transformation matrices it reports move
    ``bbox`` (corners transformed exactly) and ``bbox_xyxy`` (envelope of the
    transformed ``bbox`` when present, else of the transformed box corners),
    clipped to the image. Kornia reports its transformations in pixel-centre
    coordinates (a horizontal flip maps ``x`` to ``W - 1 - x``); they are
    converted to the boxes' pixel-edge coordinates (``x`` to ``W - x``). All
    modalities are bands of one ``image``, so they move identically. Boxes left with less than ``min_size`` pixels of width
    or height inside the image are removed from every per-image list
    (``bbox_xyxy``, ``bbox``, ``label``). ``image_hr`` (an integer multiple of
    ``image``'s size) is warped with the same transformation rescaled.

    Normalisation is ``(x - mean) / std`` on ``image`` and ``image_hr``, in
    float32 whatever the batch's type (data modules pass uint8 images between
    worker processes: a quarter of the bytes).
    """

    def __init__(
        self,
        *augmentations: K.GeometricAugmentationBase2D,
        mean: float | Sequence[float] = 0.0,
        std: float | Sequence[float] = 255.0,
        min_size: float = 1.0,
    ) -> None:
        """Initialise a new DetectionAugmentation.

        Args:
            *augmentations: Kornia geometric augmentations (flips, rotations,
                affine, ...), applied in this order; none for normalisation only.
            mean: Value(s) subtracted from each band.
            std: Value(s) each band is divided by.
            min_size: Boxes narrower or lower than this (pixels) after the
                augmentation are dropped.
        """
        super().__init__()
        self.register_buffer(
            'mean', torch.as_tensor(mean, dtype=torch.float32).reshape(-1, 1, 1)
        )
        self.register_buffer(
            'std', torch.as_tensor(std, dtype=torch.float32).reshape(-1, 1, 1)
        )
        self.min_size = min_size
        self.augmentation: K.AugmentationSequential | None = None
        if augmentations:
            self.augmentation = K.AugmentationSequential(
                *augmentations, data_keys=['input']
            )

    @property
    def normalisation(self) -> dict[str, list[float]]:
        """What this augmentation normalises with, as per-band offset and scale."""
        return {
            'offset': [float(v) for v in self.get_buffer('mean').reshape(-1).tolist()],
            'scale': [float(v) for v in self.get_buffer('std').reshape(-1).tolist()],
        }

    def forward(self, batch: Batch) -> Batch:
        """Augment and normalise a batch.

        Args:
            batch: A batch from :func:`collate_detection` (``image`` B x C x H x W).

        Returns:
            The batch with ``image`` (and ``image_hr``) normalised and
            transformed, boxes moved accordingly.
        """
        batch = dict(batch)
        source = batch['image']
        image = source.float()
        height, width = image.shape[-2:]
        if self.augmentation is not None:
            image = self.augmentation(image)
            matrix = self.augmentation.transform_matrix
            if matrix is None:  # no geometric augmentation ran
                matrix = torch.eye(3, device=image.device).expand(len(image), 3, 3)
            matrix = _edge_matrix(matrix.to(image.device).float())
            if 'image_hr' in batch:
                batch['image_hr'] = self._warp_hr(
                    batch['image_hr'].float(), matrix, width
                )
            self._move_boxes(batch, matrix, width, height)
        # the module is not moved with the batch: follow the batch's device
        mean = self.mean.to(image.device)
        std = self.std.to(image.device)
        if image is source:  # float input: leave the caller's tensor alone
            batch['image'] = (image - mean) / std
        else:  # a fresh float32 copy (of a uint8 batch): normalise it in place
            batch['image'] = image.sub_(mean).div_(std)
        if 'image_hr' in batch:
            batch['image_hr'] = (batch['image_hr'].float() - mean) / std
        return batch

    @staticmethod
    def _warp_hr(image_hr: Tensor, matrix: Tensor, width: int) -> Tensor:
        """Warp the high-resolution target with the rescaled edge transforms."""
        scale = image_hr.shape[-1] / width
        s = torch.diag(image_hr.new_tensor([scale, scale, 1.0]))
        s_inv = torch.diag(image_hr.new_tensor([1 / scale, 1 / scale, 1.0]))
        edge_hr = s @ matrix @ s_inv
        shift = torch.eye(3, dtype=matrix.dtype, device=matrix.device)
        unshift = shift.clone()
        shift[:2, 2] = -0.5
        unshift[:2, 2] = 0.5
        centre_hr = shift @ edge_hr @ unshift
        return warp_perspective(
            image_hr,
            centre_hr,
            (int(image_hr.shape[-2]), int(image_hr.shape[-1])),
            align_corners=True,
        )

    def _move_boxes(
        self, batch: Batch, matrix: Tensor, width: int, height: int
    ) -> None:
        """Transform, clip and filter the per-image boxes in place."""
        if 'bbox_xyxy' not in batch and 'bbox' not in batch:
            return
        n = len(batch['bbox_xyxy'] if 'bbox_xyxy' in batch else batch['bbox'])
        new_xyxy, new_bbox, new_label = [], [], []
        for i in range(n):
            m = matrix[i]
            if 'bbox' in batch:
                corners = transform_corners(batch['bbox'][i].float(), m)
            else:
                corners = transform_corners(
                    xyxy_to_corners(batch['bbox_xyxy'][i].float()), m
                )
            xyxy = poly_to_xyxy(corners)
            limit = xyxy.new_tensor([width, height, width, height])
            xyxy = torch.minimum(xyxy.clamp(min=0), limit)
            keep = ((xyxy[:, 2] - xyxy[:, 0]) >= self.min_size) & (
                (xyxy[:, 3] - xyxy[:, 1]) >= self.min_size
            )
            new_xyxy.append(xyxy[keep])
            new_bbox.append(corners[keep])
            if 'label' in batch:
                new_label.append(batch['label'][i][keep.to(batch['label'][i].device)])
        if 'bbox_xyxy' in batch:
            batch['bbox_xyxy'] = new_xyxy
        if 'bbox' in batch:
            batch['bbox'] = new_bbox
        if 'label' in batch:
            batch['label'] = new_label


class Downsample:
    """Area-downsample a detection sample's ``image`` by an integer factor.

    The boxes (``bbox_xyxy``, ``bbox``) are divided by the same factor, so they
    stay in the pixel-edge coordinates of the smaller image. A sample transform:
    it runs in the data loader, before collation.
    """

    def __init__(self, factor: int) -> None:
        """Initialise a new Downsample.

        Args:
            factor: Integer factor (2: 1280 x 1024 to 640 x 512).

        Raises:
            ValueError: If *factor* is not a positive integer.
        """
        if int(factor) != factor or factor < 1:
            raise ValueError(f'factor must be a positive integer, got {factor!r}')
        self.factor = int(factor)

    def __call__(self, sample: Batch) -> Batch:
        """Downsample ``image`` and its boxes.

        Args:
            sample: A detection sample with a float ``image`` (C x H x W).

        Returns:
            The sample with ``image`` (C x H / factor x W / factor) and boxes scaled.
        """
        if self.factor == 1:
            return sample
        image = sample['image']
        size = (image.shape[-2] // self.factor, image.shape[-1] // self.factor)
        sample = dict(sample)
        sample['image'] = F.interpolate(image[None].float(), size=size, mode='area')[0]
        for key in ('bbox_xyxy', 'bbox'):
            if key in sample:
                sample[key] = sample[key] / self.factor
        return sample


def default_train_augmentation(
    square: bool, scale: float = 255.0
) -> DetectionAugmentation:
    """Return flips (and, for square images, 90 degree rotations) + /scale.

    Args:
        square: Whether the images are square (rotations by 90 degrees keep
            the size only then).
        scale: What the raw values are divided by (255 for 8-bit images).

    Returns:
        The train augmentation.
    """
    augs: list[K.GeometricAugmentationBase2D] = [
        K.RandomHorizontalFlip(p=0.5),
        K.RandomVerticalFlip(p=0.5),
    ]
    if square:
        augs.append(K.RandomRotation90(times=(0, 3), p=0.5))
    return DetectionAugmentation(*augs, std=scale)


class Letterbox:
    """Resize a sample to fit a square, keeping its aspect, and pad the rest.

    A sample transform for datasets whose images differ in size (SSDD,
    SAR-AIRcraft): every image becomes ``size`` x ``size`` so that batches
    stack. The image is scaled by ``size / max(height, width)`` (bilinear,
    antialiased when shrinking), placed at the top-left and padded with
    ``fill`` on the right and bottom; ``bbox_xyxy`` and ``bbox`` are scaled by
    the same factors (per axis, after rounding the new size). The image keeps
    its dtype (uint8 values are rounded).
    """

    def __init__(self, size: int, fill: float = 0.0) -> None:
        """Initialise a new Letterbox.

        Args:
            size: Side of the output image in pixels.
            fill: Value of the padding (raw, before normalisation).

        Raises:
            ValueError: If ``size`` is not positive.
        """
        if size <= 0:
            raise ValueError(f'size must be positive, got {size}')
        self.size = size
        self.fill = fill

    def __call__(self, sample: Batch) -> Batch:
        """Letterbox ``image`` and its boxes.

        Args:
            sample: A sample with ``image`` C x H x W.

        Returns:
            The sample with ``image`` C x size x size and scaled boxes.
        """
        sample = dict(sample)
        image = sample['image']
        height, width = image.shape[-2:]
        scale = self.size / max(height, width)
        new_h = max(1, min(self.size, round(height * scale)))
        new_w = max(1, min(self.size, round(width * scale)))
        if (new_h, new_w) != (height, width):
            resized = F.interpolate(
                image[None].float(),
                size=(new_h, new_w),
                mode='bilinear',
                align_corners=False,
                antialias=scale < 1,
            )[0]
            if image.dtype == torch.uint8:
                resized = resized.round_().clamp_(0, 255)
        else:
            resized = image
        out = image.new_full((image.shape[0], self.size, self.size), self.fill)
        out[:, :new_h, :new_w] = resized.to(image.dtype)
        sample['image'] = out
        sx, sy = new_w / width, new_h / height
        if 'bbox_xyxy' in sample:
            boxes = sample['bbox_xyxy']
            sample['bbox_xyxy'] = boxes * boxes.new_tensor([sx, sy, sx, sy])
        if 'bbox' in sample:
            sample['bbox'] = sample['bbox'] * sample['bbox'].new_tensor([sx, sy] * 4)
        return sample
