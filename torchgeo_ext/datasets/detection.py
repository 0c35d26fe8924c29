"""Helpers shared by the object-detection datasets (VEDAI, DroneVehicle)."""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, cast

import matplotlib.patches as mpatches
import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.figure import Figure
from PIL import Image, UnidentifiedImageError
from torch import Tensor
from torch.utils.data import get_worker_info
from torchgeo.datasets import NonGeoDataset
from torchgeo.datasets.utils import Sample

from ..errors import InvalidInputError, MissingInputError

#: Per-file counts of skipped or repaired annotations: ``{file: {reason: count}}``.
AnnotationCounts = dict[str, dict[str, int]]


def count_issue(counts: AnnotationCounts, path: str, reason: str, n: int = 1) -> None:
    """Add ``n`` occurrences of ``reason`` for ``path`` to ``counts``.

    Args:
        counts: The per-file counts to update in place.
        path: The annotation file concerned.
        reason: A short key naming what was skipped or repaired.
        n: How many objects.
    """
    if n <= 0:
        return
    per_file = counts.setdefault(path, {})
    per_file[reason] = per_file.get(reason, 0) + n


def total_counts(counts: AnnotationCounts) -> dict[str, int]:
    """Sum per-file counts over all files.

    Args:
        counts: Per-file counts.

    Returns:
        ``{reason: total}`` over all files.
    """
    totals: dict[str, int] = {}
    for per_file in counts.values():
        for reason, n in per_file.items():
            totals[reason] = totals.get(reason, 0) + n
    return dict(sorted(totals.items()))


def warn_annotation_issues(
    name: str, skipped: AnnotationCounts, repaired: AnnotationCounts
) -> None:
    """Emit one warning summarising skipped and repaired annotations.

    Nothing is emitted when both are empty.

    Args:
        name: The dataset's name, for the message.
        skipped: Per-file counts of objects that were dropped.
        repaired: Per-file counts of objects that were kept after a repair.
    """
    parts = []
    for what, counts, attr in (
        ('skipped', skipped, 'skipped'),
        ('repaired', repaired, 'repaired'),
    ):
        totals = total_counts(counts)
        if totals:
            detail = ', '.join(f'{reason}: {n}' for reason, n in totals.items())
            parts.append(
                f'{what} {sum(totals.values())} objects in {len(counts)} files '
                f'({detail}; per file in `.{attr}`)'
            )
    if parts:
        warnings.warn(f'{name}: ' + '; '.join(parts), UserWarning, stacklevel=3)


def keep_clipped(
    xyxy: Tensor,
    changed: Tensor,
    path: str,
    skipped: AnnotationCounts,
    repaired: AnnotationCounts,
) -> Tensor:
    """Which boxes clipped to their image keep an area; count the others.

    Boxes left with no area are counted as ``outside_image`` in *skipped*,
    clipped boxes that keep an area as ``clipped_to_image`` in *repaired*.

    Args:
        xyxy: The clipped boxes (N x 4, or the envelopes of clipped corners).
        changed: Which boxes the clipping changed (N,).
        path: The annotation file the boxes come from.
        skipped: Counts of dropped objects (updated).
        repaired: Counts of repaired objects (updated).

    Returns:
        Boolean mask (N,) of the boxes to keep.
    """
    inside = (xyxy[:, 2] > xyxy[:, 0]) & (xyxy[:, 3] > xyxy[:, 1])
    count_issue(skipped, path, 'outside_image', int((~inside).sum()))
    count_issue(repaired, path, 'clipped_to_image', int((changed & inside).sum()))
    return inside


def check_sample_options(dtype: str, bbox_orientation: str) -> None:
    """Check the ``dtype`` and ``bbox_orientation`` arguments of a detection dataset.

    Args:
        dtype: ``'float32'`` or ``'uint8'``.
        bbox_orientation: ``'horizontal'`` or ``'oriented'``.

    Raises:
        ValueError: If either is another value.
    """
    if dtype not in ('float32', 'uint8'):
        raise ValueError(f"dtype must be 'float32' or 'uint8': {dtype!r}")
    if bbox_orientation not in ('horizontal', 'oriented'):
        raise ValueError(
            f"bbox_orientation must be 'horizontal' or 'oriented': {bbox_orientation!r}"
        )


def stacked_band_indices(
    modalities: Iterable[str], bands: Mapping[str, int]
) -> dict[str, list[int]]:
    """Band indices of each modality in the stacked image, in the given order.

    Args:
        modalities: The modalities to stack.
        bands: Number of bands of each known modality.

    Returns:
        ``{modality: [band indices]}``.

    Raises:
        ValueError: If the modalities are empty, repeated or unknown.
    """
    names = tuple(modalities)
    if not names or len(set(names)) != len(names):
        raise ValueError(f'modalities must be distinct and non-empty: {names}')
    layout: dict[str, list[int]] = {}
    start = 0
    for name in names:
        if name not in bands:
            raise ValueError(f'unknown modality {name!r}, expected {tuple(bands)}')
        layout[name] = list(range(start, start + bands[name]))
        start += bands[name]
    return layout


def image_size(paths: Iterable[str]) -> tuple[int, int]:
    """Read the size of co-registered images from their headers; all must agree.

    Args:
        paths: The image files (one per modality).

    Returns:
        ``(width, height)``.

    Raises:
        InvalidInputError: If a file cannot be read or the sizes differ.
    """
    sizes = {}
    for path in paths:
        try:
            with Image.open(path) as img:
                sizes[path] = img.size
        except OSError as error:
            raise InvalidInputError(path, f'cannot read image ({error})') from error
    if len(set(sizes.values())) > 1:
        raise InvalidInputError(
            next(iter(sizes)), f'modalities differ in size: {sizes}'
        )
    width, height = next(iter(sizes.values()))
    return int(width), int(height)


def xyxy_to_corners(xyxy: Tensor) -> Tensor:
    """Convert axis-aligned boxes to 4 corners (clockwise from top-left).

    Args:
        xyxy: N x 4 boxes.

    Returns:
        N x 8 corners ``x1 y1 ... x4 y4``.
    """
    x0, y0, x1, y1 = xyxy.unbind(dim=-1)
    return torch.stack([x0, y0, x1, y0, x1, y1, x0, y1], dim=-1)


def clip_xyxy(xyxy: Tensor, width: float, height: float) -> tuple[Tensor, Tensor]:
    """Clip axis-aligned boxes to the image.

    Args:
        xyxy: N x 4 boxes.
        width: Image width in pixels.
        height: Image height in pixels.

    Returns:
        The clipped boxes, and a boolean mask of the boxes that changed.
    """
    lo = xyxy.new_tensor([0.0, 0.0, 0.0, 0.0])
    hi = xyxy.new_tensor([width, height, width, height])
    clipped = torch.minimum(torch.maximum(xyxy, lo), hi)
    changed = (clipped != xyxy).any(dim=1)
    return clipped, changed


_CONVERTIBLE_MODES = frozenset(
    {'L', 'LA', 'RGB', 'RGBA', 'RGBX', 'P', 'PA', 'CMYK', 'YCbCr'}
)


def decode_image(path: str, channels: int, border: int = 0) -> Tensor:
    """Decode an 8-bit image file to a uint8 C x H x W tensor view.

    The result is a (possibly non-contiguous, read-only) view of the decoded
    pixels: copy it (e.g. into a float32 tensor with ``Tensor.copy_``), never
    write to it. Copying once is all the conversion costs.

    Args:
        path: PNG or JPEG file.
        channels: 3 for colour (the first three bands of RGB/RGBA images; a
            grey image is repeated), 1 for single-band (the first band of a
            colour image, e.g. IR frames stored as three identical channels).
        border: Pixels removed from every side.

    Returns:
        uint8 tensor C x H x W.

    Raises:
        MissingInputError: If the file does not exist.
        InvalidInputError: If the file cannot be decoded or is not 8-bit.
    """
    if not os.path.exists(path):
        raise MissingInputError(path, 'image file does not exist')
    try:
        with Image.open(path) as opened:
            img: Image.Image = opened
            if img.mode not in _CONVERTIBLE_MODES:
                raise InvalidInputError(
                    path, f'expected an 8-bit image, got mode {img.mode}'
                )
            if channels == 1:
                if img.mode not in ('L', 'RGB', 'RGBA', 'LA'):
                    img = img.convert('RGB')
                if img.mode != 'L':
                    img = img.getchannel(0)
            elif img.mode != 'RGB':
                img = img.convert('RGB')
            array = np.asarray(img)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        if isinstance(error, InvalidInputError):
            raise
        raise InvalidInputError(path, f'cannot decode image ({error})') from error
    if border:
        array = array[border:-border, border:-border]
    with warnings.catch_warnings():
        # the array is read-only; callers only copy from the tensor
        warnings.simplefilter('ignore', UserWarning)
        tensor = torch.from_numpy(array)
    if tensor.ndim == 2:
        return tensor[None]
    return tensor.permute(2, 0, 1)


def stack_modalities_batch(
    paths: Sequence[Sequence[str]],
    channels: Sequence[int],
    borders: Sequence[int],
    dtype: torch.dtype = torch.float32,
) -> list[Tensor]:
    """Decode the images of several samples straight into one batch buffer.

    When all samples have the same size, the returned images are consecutive
    views of one B x C x H x W float32 tensor, allocated in shared memory inside
    DataLoader workers: :func:`~torchgeo_ext.datamodules.detection.collate_detection`
    then hands that tensor over without stacking (a copy of the whole batch
    saved). Otherwise each image is its own tensor.

    Args:
        paths: Per sample, one image file per modality.
        channels: Bands taken from each modality's file.
        borders: Per sample, pixels removed from every side.
        dtype: Type of the images: float32 (the sample contract) or uint8
            (4x fewer bytes between worker processes; data modules convert).

    Returns:
        One C x H x W tensor of ``dtype`` per sample, raw 0-255 values.

    Raises:
        InvalidInputError: If an image cannot be decoded or a sample's images
            differ in size.
    """
    decoded = []
    for sample_paths, border in zip(paths, borders, strict=True):
        views = [
            decode_image(p, c, border)
            for p, c in zip(sample_paths, channels, strict=True)
        ]
        size = views[0].shape[1:]
        for path, view in zip(sample_paths, views, strict=True):
            if view.shape[1:] != size:
                raise InvalidInputError(
                    path,
                    f'size {tuple(view.shape[1:])} differs from its partner '
                    f'modality {tuple(size)}',
                )
        decoded.append(views)
    bands = sum(channels)
    sizes = {tuple(views[0].shape[1:]) for views in decoded}
    if len(sizes) == 1:
        shape = (len(decoded), bands, *next(iter(sizes)))
        if get_worker_info() is not None:
            numel = int(np.prod(shape))
            empty = torch.empty(0, dtype=dtype)
            storage = empty._typed_storage()._new_shared(numel, device='cpu')
            buffer = empty.set_(storage).view(shape)
        else:
            buffer = torch.empty(shape, dtype=dtype)
        images = list(buffer.unbind(0))
    else:
        images = [
            torch.empty((bands, *views[0].shape[1:]), dtype=dtype) for views in decoded
        ]
    for image, views in zip(images, decoded, strict=True):
        start = 0
        for view in views:
            image[start : start + view.shape[0]].copy_(view)
            start += view.shape[0]
    return images


def _display_band(image: Tensor) -> np.ndarray[Any, np.dtype[np.float64]]:
    """Scale an image (C x H x W, C in {1, 3}) to [0, 1] for display."""
    array = image.detach().cpu().double().numpy()
    if array.size and array.max() > 1:
        array = array / 255.0
    array = np.clip(array, 0, 1)
    if array.shape[0] == 1:
        return np.asarray(array[0])
    return np.asarray(array.transpose(1, 2, 0))


def _draw_boxes(
    ax: Any,
    corners: Tensor | None,
    xyxy: Tensor | None,
    labels: Tensor | None,
    scores: Tensor | None,
    classes: Sequence[str],
    color: str,
) -> None:
    """Draw oriented (preferred) or axis-aligned boxes with class names."""
    if corners is not None:
        polys = corners.detach().cpu().reshape(-1, 4, 2).numpy()
    elif xyxy is not None:
        polys = xyxy_to_corners(xyxy.detach().cpu().float()).reshape(-1, 4, 2).numpy()
    else:
        return
    for i, poly in enumerate(polys):
        ax.add_patch(
            mpatches.Polygon(poly, closed=True, fill=False, edgecolor=color, lw=1.2)
        )
        text = ''
        if labels is not None and i < len(labels):
            k = int(labels[i])
            text = classes[k] if 0 <= k < len(classes) else str(k)
        if scores is not None and i < len(scores):
            text = f'{text} {float(scores[i]):.2f}'.strip()
        if text:
            x, y = poly[:, 0].min(), poly[:, 1].min()
            ax.text(
                x,
                y,
                text,
                color='white',
                fontsize=6,
                va='bottom',
                bbox={'facecolor': color, 'alpha': 0.6, 'pad': 0.5, 'lw': 0},
            )


def plot_detection_sample(
    sample: Mapping[str, Any],
    modalities: Mapping[str, Sequence[int]],
    classes: Sequence[str],
    show_titles: bool = True,
    suptitle: str | None = None,
) -> Figure:
    """Plot each modality side by side, ground truth boxes and predictions.

    The first row shows the ground truth, a second row the predictions when the
    sample has ``prediction_bbox`` or ``prediction_bbox_xyxy`` (with
    ``prediction_label`` and ``prediction_score`` when present).

    Args:
        sample: A sample (``image`` C x H x W, boxes, labels).
        modalities: Band indices of each modality in ``image``.
        classes: Class names indexed by label.
        show_titles: Whether to title each panel.
        suptitle: Optional figure title.

    Returns:
        The figure.
    """
    image = sample['image']
    names = list(modalities)
    has_pred = 'prediction_bbox' in sample or 'prediction_bbox_xyxy' in sample
    nrows = 2 if has_pred else 1
    ncols = len(names)
    fig, axs = plt.subplots(nrows, ncols, figsize=(4 * ncols, 4 * nrows), squeeze=False)
    for col, name in enumerate(names):
        bands = list(modalities[name])
        shown = _display_band(image[bands])
        for row in range(nrows):
            ax = axs[row, col]
            ax.imshow(shown, cmap='gray' if shown.ndim == 2 else None)
            ax.axis('off')
            if row == 0:
                _draw_boxes(
                    ax,
                    sample.get('bbox'),
                    sample.get('bbox_xyxy'),
                    sample.get('label'),
                    None,
                    classes,
                    'lime',
                )
                title = f'{name.upper()}: ground truth'
            else:
                _draw_boxes(
                    ax,
                    sample.get('prediction_bbox'),
                    sample.get('prediction_bbox_xyxy'),
                    sample.get('prediction_label'),
                    sample.get('prediction_score'),
                    classes,
                    'red',
                )
                title = f'{name.upper()}: prediction'
            if show_titles:
                ax.set_title(title)
    if suptitle is not None:
        fig.suptitle(suptitle)
    fig.tight_layout()
    return fig


class PairedDetectionDataset(NonGeoDataset):
    """Co-registered image pairs with boxes: the sample assembly and plot of VEDAI and DroneVehicle.

    Subclasses fill, per image, ``_boxes`` (N x 8 corners), ``_xyxy`` (N x 4)
    and ``_labels``, and say where its files are (:meth:`_files`), how many
    bands each modality has (:meth:`_bands`) and what border to crop
    (:meth:`_border`).
    """

    modalities: Mapping[str, Sequence[int]]
    dtype: str
    bbox_orientation: str
    transforms: Any
    _boxes: list[Tensor]
    _xyxy: list[Tensor]
    _labels: list[Tensor]

    def _files(self, index: int) -> list[str]:
        """The image files of sample ``index``, one per modality."""
        raise NotImplementedError

    def _bands(self) -> list[int]:
        """The band count of each modality."""
        raise NotImplementedError

    def _border(self, index: int) -> int:
        """Pixels cropped from each side of sample ``index``'s images."""
        return 0

    def __getitem__(self, index: int) -> Sample:
        """Return one sample.

        Args:
            index: Index of the sample.

        Returns:
            ``image``, ``label``, ``bbox_xyxy`` and (when oriented) ``bbox``.

        Raises:
            InvalidInputError: If an image cannot be decoded or the modalities
                differ in size.
        """
        return self.__getitems__([index])[0]

    def __getitems__(self, indices: Sequence[int]) -> list[Sample]:
        """Return several samples (DataLoader batches), decoded into one buffer.

        Args:
            indices: Indices of the samples.

        Returns:
            The samples, as :meth:`__getitem__` returns them.
        """
        images = stack_modalities_batch(
            [self._files(i) for i in indices],
            self._bands(),
            [self._border(i) for i in indices],
            torch.uint8 if self.dtype == 'uint8' else torch.float32,
        )
        return [
            self._sample(index, image)
            for index, image in zip(indices, images, strict=True)
        ]

    def _sample(self, index: int, image: Tensor) -> Sample:
        """Assemble sample ``index`` around its decoded image."""
        sample: Sample = {
            'image': image,
            'label': self._labels[index].clone(),
            'bbox_xyxy': self._xyxy[index].clone(),
        }
        if self.bbox_orientation == 'oriented':
            sample['bbox'] = self._boxes[index].clone()
        if self.transforms is not None:
            sample = self.transforms(sample)
        return sample

    def plot(
        self, sample: Sample, show_titles: bool = True, suptitle: str | None = None
    ) -> Figure:
        """Plot the modalities side by side with boxes and class names.

        A second row shows predictions when the sample has
        ``prediction_bbox_xyxy`` or ``prediction_bbox`` (with
        ``prediction_label`` and ``prediction_score``).

        Args:
            sample: A sample returned by :meth:`__getitem__` (possibly with
                predictions).
            show_titles: Whether to title each panel.
            suptitle: Optional figure title.

        Returns:
            A matplotlib figure.
        """
        classes = cast(Any, self).classes  # a class or instance attribute
        return plot_detection_sample(
            sample, self.modalities, classes, show_titles, suptitle
        )
