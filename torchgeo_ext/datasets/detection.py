"""Helpers shared by the object-detection datasets (VEDAI, DroneVehicle).

Box conventions (DESIGN.md): ``bbox_xyxy`` is float32 N x 4 in pixel-edge
coordinates of the sample (``0 <= x <= width``); ``bbox`` is float32 N x 8 with
the four corners ``x1 y1 x2 y2 x3 y3 x4 y4`` of an oriented box (DOTA order).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib.patches as mpatches
import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.figure import Figure
from PIL import Image, UnidentifiedImageError
from torch import Tensor

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


def corners_to_xyxy(corners: Tensor) -> Tensor:
    """Convert oriented boxes to their axis-aligned envelopes.

    Args:
        corners: N x 8 corners ``x1 y1 ... x4 y4``.

    Returns:
        N x 4 boxes ``xmin ymin xmax ymax`` (same dtype).
    """
    pts = corners.reshape(-1, 4, 2)
    if pts.shape[0] == 0:
        return corners.new_zeros((0, 4))
    return torch.cat([pts.amin(dim=1), pts.amax(dim=1)], dim=1)


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


def read_image(path: str, channels: int) -> np.ndarray[Any, np.dtype[np.uint8]]:
    """Decode an 8-bit image file to a C x H x W array.

    Args:
        path: PNG or JPEG file.
        channels: 3 for colour (the first three bands of RGB/RGBA images; a
            grey image is repeated), 1 for single-band (the first band of a
            colour image, e.g. IR frames stored as three identical channels).

    Returns:
        uint8 array C x H x W.

    Raises:
        MissingInputError: If the file does not exist.
        InvalidInputError: If the file cannot be decoded.
    """
    if not os.path.exists(path):
        raise MissingInputError(path, 'image file does not exist')
    try:
        with Image.open(path) as img:
            if img.mode in ('L', 'RGB', 'RGBA', 'LA'):
                array = np.asarray(img)
            else:
                array = np.asarray(img.convert('RGB'))
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        raise InvalidInputError(path, f'cannot decode image ({error})') from error
    if array.dtype != np.uint8:
        raise InvalidInputError(path, f'expected an 8-bit image, got {array.dtype}')
    if array.ndim == 2:
        array = array[None]
    else:
        array = array.transpose(2, 0, 1)
    if channels == 1:
        return np.ascontiguousarray(array[:1])
    if array.shape[0] == 1:
        return np.repeat(array, 3, axis=0)
    return np.ascontiguousarray(array[:3])


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
