"""SAR amplitude images with boxes: the reading and sample assembly of SSDD, HRSID and SAR-AIRcraft."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch import Tensor

from ..errors import InvalidInputError, MissingInputError
from ..ops.obb import poly_to_xyxy
from .detection import (
    _CONVERTIBLE_MODES,
    AnnotationCounts,
    PairedDetectionDataset,
    check_sample_options,
    clip_xyxy,
    count_issue,
    decode_image,
    keep_clipped,
)

Sample = dict[str, Any]

#: PIL modes of 16-bit (or wider integer) single-band images.
_WIDE_MODES = frozenset({'I;16', 'I;16L', 'I;16B', 'I;16N', 'I'})


def read_amplitude(path: str, dtype: str = 'float32') -> Tensor:
    """Read a single-band SAR amplitude image as a 1 x H x W tensor of raw values.

    8-bit images (grey, or grey stored as three identical channels: the first
    band is used) give 0-255; 16-bit single-band TIFF/PNG give 0-65535.

    Args:
        path: The image file (JPEG, PNG, TIFF, BMP).
        dtype: ``'float32'`` or ``'uint8'`` (8-bit images only).

    Returns:
        The image, float32 or uint8.

    Raises:
        MissingInputError: If the file does not exist.
        InvalidInputError: If it cannot be decoded, has an unsupported pixel
            type, or is 16-bit and ``dtype='uint8'``.
    """
    if not os.path.exists(path):
        raise MissingInputError(path, 'image file does not exist')
    try:
        with Image.open(path) as img:
            mode = img.mode
            wide = np.asarray(img) if mode in _WIDE_MODES else None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        raise InvalidInputError(path, f'cannot decode image ({error})') from error
    if wide is None and mode not in _CONVERTIBLE_MODES:
        raise InvalidInputError(
            path, f'expected an 8-bit or 16-bit integer image, got mode {mode}'
        )
    if wide is None:
        view = decode_image(path, 1)
        return view.to(torch.uint8 if dtype == 'uint8' else torch.float32, copy=True)
    if dtype == 'uint8':
        raise InvalidInputError(
            path,
            f'{mode} (16-bit) image cannot be read as uint8; use '
            "dtype='float32' (data modules: bit_depth=16)",
        )
    if wide.ndim != 2:
        raise InvalidInputError(path, f'expected one band, got shape {wide.shape}')
    if wide.dtype.kind == 'i' and (wide.min() < 0 or wide.max() > 65535):
        raise InvalidInputError(path, f'{mode} values outside 0-65535')
    return torch.from_numpy(wide.astype(np.float32))[None]


def clip_objects(
    path: str,
    corners: Tensor,
    xyxy: Tensor,
    size: tuple[int, int],
    counts: tuple[AnnotationCounts, AnnotationCounts],
) -> tuple[Tensor, Tensor, Tensor]:
    """Clip boxes to the image; drop (and count) the ones left without area.

    Args:
        path: The annotation file, for the counts.
        corners: N x 8 corners (clipped point-wise for the kept ones).
        xyxy: N x 4 axis-aligned boxes (for oriented boxes their envelope,
            so that the clipped box is the envelope of the clipped corners).
        size: ``(width, height)`` of the image.
        counts: ``(skipped, repaired)`` per-file counts (updated).

    Returns:
        Clipped corners, clipped boxes, and the boolean mask of kept objects.
    """
    width, height = size
    xs = corners[:, 0::2].clamp(0, width)
    ys = corners[:, 1::2].clamp(0, height)
    clipped_corners = torch.stack([xs, ys], dim=-1).reshape(-1, 8)
    clipped, changed = clip_xyxy(xyxy, width, height)
    changed |= (clipped_corners != corners).any(dim=1)
    keep = keep_clipped(clipped, changed, path, counts[0], counts[1])
    return clipped_corners, clipped, keep


def map_names(
    path: str, names: Sequence[str], classes: Sequence[str], skipped: AnnotationCounts
) -> tuple[list[int], list[int]]:
    """Map object names to labels; unknown names are dropped and counted.

    Args:
        path: The annotation file, for the counts.
        names: Object names from the file.
        classes: Class names, in label order.
        skipped: Per-file counts of dropped objects (updated).

    Returns:
        Indices of the kept objects and their labels.
    """
    keep: list[int] = []
    labels: list[int] = []
    for i, name in enumerate(names):
        if name not in classes:
            count_issue(skipped, path, f'unknown_name ({name})')
            continue
        keep.append(i)
        labels.append(classes.index(name))
    return keep, labels


class SARDetectionDataset(PairedDetectionDataset):
    """Single-band SAR amplitude images with boxes.

    Subclasses fill, per image, ``_paths`` (image files), ``_boxes`` (N x 8
    corners), ``_xyxy`` (N x 4) and ``_labels``; images are read by
    :func:`read_amplitude` (8-bit or 16-bit).
    """

    classes: ClassVar[list[str]]
    _paths: list[str]

    def _init_options(
        self,
        root: str | os.PathLike[str],
        bbox_orientation: str,
        transforms: Callable[[Sample], Sample] | None,
        dtype: str,
    ) -> None:
        """Check and keep the options every SAR dataset takes; start empty.

        Args:
            root: The dataset's root folder.
            bbox_orientation: ``'horizontal'`` or ``'oriented'``.
            transforms: A function applied to each sample.
            dtype: ``'float32'`` or ``'uint8'``.

        Raises:
            ValueError: If ``bbox_orientation`` or ``dtype`` is invalid.
        """
        check_sample_options(dtype, bbox_orientation)
        self.root = os.fspath(root)
        self.bbox_orientation = bbox_orientation
        self.transforms = transforms
        self.dtype = dtype
        #: The one band of ``image``.
        self.modalities = {'sar': [0]}
        #: Per-file counts of dropped objects, ``{file: {reason: count}}``.
        self.skipped: AnnotationCounts = {}
        #: Per-file counts of objects kept after a repair (clipped boxes).
        self.repaired: AnnotationCounts = {}
        self._paths = []
        self._boxes = []
        self._xyxy = []
        self._labels = []

    def _add_objects(
        self,
        source: str,
        names: Sequence[str],
        corners: Tensor,
        xyxy: Tensor,
        size: tuple[int, int],
    ) -> None:
        """Keep one image's objects: labels from names, boxes clipped to the image.

        Args:
            source: The annotation file (for the counts).
            names: Object names.
            corners: N x 8 corners.
            xyxy: N x 4 axis-aligned boxes (replaced by the corners' envelope
                when oriented).
            size: ``(width, height)`` of the image.
        """
        keep, labels = map_names(source, names, self.classes, self.skipped)
        corners = corners[keep]
        xyxy = (
            poly_to_xyxy(corners) if self.bbox_orientation == 'oriented' else xyxy[keep]
        )
        corners, xyxy, inside = clip_objects(
            source, corners, xyxy, size, (self.skipped, self.repaired)
        )
        self._boxes.append(corners[inside])
        self._xyxy.append(xyxy[inside])
        self._labels.append(torch.tensor(labels, dtype=torch.int64)[inside])

    def __len__(self) -> int:
        """Return the number of images in this split.

        Returns:
            Number of samples.
        """
        return len(self._paths)

    def _files(self, index: int) -> list[str]:
        return [self._paths[index]]

    def _bands(self) -> list[int]:
        return [1]

    def __getitems__(self, indices: Sequence[int]) -> list[Sample]:
        """Return several samples (DataLoader batches).

        Args:
            indices: Indices of the samples.

        Returns:
            The samples, as :meth:`__getitem__` returns them.

        Raises:
            InvalidInputError: If an image cannot be decoded.
        """
        return [
            self._sample(i, read_amplitude(self._paths[i], self.dtype)) for i in indices
        ]
