"""Pascal-VOC XML annotation parser shared by the detection datasets.

Reads ``<object>`` elements with an axis-aligned ``<bndbox>`` and/or rotated corners.
"""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from dataclasses import dataclass

import torch
from torch import Tensor

from ..errors import InvalidInputError, MissingInputError
from ..ops.obb import poly_to_xyxy
from .detection import AnnotationCounts, count_issue, xyxy_to_corners

_BOX_KEYS = ('xmin', 'ymin', 'xmax', 'ymax')
_CORNER_KEYS = tuple(f'{a}{i}' for i in range(1, 5) for a in ('x', 'y'))
#: Elements holding ``x1 y1 .. x4 y4`` corners, in the order they are looked for.
_CORNER_TAGS = ('rotated_bndbox', 'polygon', 'robndbox')


@dataclass(frozen=True)
class VOCAnnotation:
    """The objects of one VOC XML file.

    Attributes:
        names: Object names (``<name>``, stripped), one per object.
        xyxy: float32 N x 4 axis-aligned boxes: the ``<bndbox>``, else the
            envelope of the corners.
        corners: float32 N x 8 corners ``x1 y1 .. x4 y4``: the rotated corners,
            else the ``<bndbox>`` rectangle (clockwise from top-left).
        rotated: bool (N,): which objects had rotated corners.
        difficult: bool (N,): the ``<difficult>`` flags (absent: False).
        size: ``(width, height)`` from ``<size>``, or None when absent.
    """

    names: list[str]
    xyxy: Tensor
    corners: Tensor
    rotated: Tensor
    difficult: Tensor
    size: tuple[int, int] | None


def _numbers(
    path: str, k: int, element: ET.Element, keys: tuple[str, ...]
) -> list[float] | None:
    """The numbers under ``keys`` of ``element``; None when one is missing or empty."""
    texts = [element.findtext(key) for key in keys]
    if any(t is None or not t.strip() for t in texts):
        return None
    try:
        return [float(t) for t in texts if t is not None]
    except ValueError as error:
        raise InvalidInputError(
            path, f'object {k}: non-numeric coordinate ({error})'
        ) from error


def _size(path: str, root: ET.Element) -> tuple[int, int] | None:
    """The ``<size>`` of the image, if the file gives one."""
    width, height = root.findtext('size/width'), root.findtext('size/height')
    if width is None or height is None or not width.strip() or not height.strip():
        return None
    try:
        return int(float(width)), int(float(height))
    except ValueError as error:
        raise InvalidInputError(path, f'non-numeric <size> ({error})') from error


def parse_voc(path: str, skipped: AnnotationCounts | None = None) -> VOCAnnotation:
    """Parse a Pascal-VOC XML annotation file.

    Each ``<object>`` needs a ``<bndbox>`` (``xmin ymin xmax ymax``) or rotated
    corners ``x1 y1 .. x4 y4`` under ``<rotated_bndbox>`` (RBox-SSDD),
    ``<polygon>`` (DroneVehicle) or ``<robndbox>``. An object with neither, or
    with an incomplete one, is dropped and counted in ``skipped``
    (``no_geometry``, ``incomplete_geometry``).

    Args:
        path: The XML file.
        skipped: Per-file counts of dropped objects (updated), or None.

    Returns:
        The objects.

    Raises:
        MissingInputError: If the file does not exist.
        InvalidInputError: If the XML is malformed or a coordinate is not a
            number (naming the file and the object).
    """
    if not os.path.isfile(path):
        raise MissingInputError(path, 'annotation file does not exist')
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as error:
        raise InvalidInputError(path, f'malformed XML ({error})') from error
    counts: AnnotationCounts = {} if skipped is None else skipped
    names: list[str] = []
    boxes: list[list[float]] = []
    corners: list[list[float]] = []
    rotated: list[bool] = []
    difficult: list[bool] = []
    for k, obj in enumerate(root.iter('object'), start=1):
        found = [obj.find(tag) for tag in ('bndbox', *_CORNER_TAGS)]
        if all(element is None for element in found):
            count_issue(counts, path, 'no_geometry')
            continue
        box = None if found[0] is None else _numbers(path, k, found[0], _BOX_KEYS)
        quad = next(
            (
                _numbers(path, k, element, _CORNER_KEYS)
                for element in found[1:]
                if element is not None
            ),
            None,
        )
        if box is None and quad is None:
            count_issue(counts, path, 'incomplete_geometry')
            continue
        rotated.append(quad is not None)
        if box is None:
            box = poly_to_xyxy(torch.tensor([quad]))[0].tolist()
        if quad is None:
            quad = xyxy_to_corners(torch.tensor(box)).tolist()
        names.append((obj.findtext('name') or '').strip())
        boxes.append(box)
        corners.append(quad)
        difficult.append((obj.findtext('difficult') or '0').strip() == '1')
    return VOCAnnotation(
        names=names,
        xyxy=torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
        corners=torch.tensor(corners, dtype=torch.float32).reshape(-1, 8),
        rotated=torch.tensor(rotated, dtype=torch.bool),
        difficult=torch.tensor(difficult, dtype=torch.bool),
        size=_size(path, root),
    )
