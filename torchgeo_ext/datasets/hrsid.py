"""HRSID: the High-Resolution SAR Images Dataset (COCO JSON), ships as boxes or rotated boxes."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from typing import Any, ClassVar, Literal

import shapely
import torch
from torch import Tensor
from torchgeo.datasets import DatasetNotFoundError

from ..errors import InvalidInputError, MissingInputError
from .detection import count_issue, image_size, warn_annotation_issues, xyxy_to_corners
from .sar import Sample, SARDetectionDataset
from .vector import rotated_rectangle_corners


def read_coco(path: str) -> dict[str, Any]:
    """Read a COCO detection JSON file and check its three lists.

    Args:
        path: The JSON file.

    Returns:
        The parsed file.

    Raises:
        MissingInputError: If the file does not exist.
        InvalidInputError: If it is not JSON or lacks ``images``,
            ``annotations`` or ``categories`` lists.
    """
    if not os.path.isfile(path):
        raise MissingInputError(path, 'annotation file does not exist')
    try:
        with open(path) as f:
            coco = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise InvalidInputError(path, f'malformed JSON ({error})') from error
    if not isinstance(coco, dict):
        raise InvalidInputError(path, 'expected a COCO object at the top level')
    for key in ('images', 'annotations', 'categories'):
        if not isinstance(coco.get(key), list):
            raise InvalidInputError(
                path, f'no {key!r} list (not a COCO detection file)'
            )
    return coco


def _numbers(
    path: str, what: str, values: Any, count: int | None = None
) -> list[float]:
    """Check that ``values`` is a list of numbers (of ``count`` items)."""
    if (
        not isinstance(values, list)
        or (count is not None and len(values) != count)
        or not all(
            isinstance(v, int | float) and not isinstance(v, bool) for v in values
        )
    ):
        size = f'{count} numbers' if count is not None else 'a list of numbers'
        raise InvalidInputError(path, f'{what}: expected {size}, got {values!r}')
    return [float(v) for v in values]


class HRSID(SARDetectionDataset):
    """HRSID: ships in 800 x 800 SAR amplitude tiles.

    The High-Resolution SAR Images Dataset has 5,604 tiles of 800 x 800 pixels
    cut from 136 Sentinel-1B, TerraSAR-X and TanDEM-X scenes (0.5, 1 and 3 m),
    with 16,951 ships annotated in the COCO format (boxes and instance
    polygons); 65% of the tiles are for training, 35% for testing.

    Dataset format (release ``HRSID_JPG``, Wei et al. 2020,
    https://github.com/chaozhong2010/HRSID), under ``root``:

    * ``JPEGImages/<scene>_<y0>_<y1>_<x0>_<x1>.jpg``: 8-bit grey JPEG tiles
      (three identical channels: the first is used).
    * ``annotations/train2017.json`` and ``annotations/test2017.json``: COCO
      detection files: ``images`` (``id``, ``file_name``, ``width``,
      ``height``), ``annotations`` (``image_id``, ``category_id``, ``bbox`` as
      ``x y width height``, ``segmentation`` as polygons ``[[x1, y1, ...]]``,
      ``iscrowd``) and ``categories`` (one: ``ship``).
      ``train_test2017.json`` (both) is not read.

    ``bbox_orientation='horizontal'`` gives the COCO ``bbox``;
    ``'oriented'`` adds ``bbox``: the minimum-area rotated rectangle of each
    ship's polygon (:func:`~torchgeo_ext.datasets.vector.rotated_rectangle_corners`;
    the corner order of :mod:`torchgeo_ext.ops.obb`), with ``bbox_xyxy`` its
    envelope. A ship without a polygon gets its ``bbox`` rectangle, counted in
    :attr:`repaired` (``no_polygon``).

    Boxes are clipped to the image (counted in :attr:`repaired`); empty boxes,
    crowd annotations, unknown categories and objects with nothing inside the
    image are dropped and counted in :attr:`skipped`, with one warning.
    Malformed JSON, a missing list or a non-numeric ``bbox`` or polygon is an
    error naming the file; a listed image missing from ``JPEGImages/`` is a
    :class:`~torchgeo_ext.errors.MissingInputError` naming it.

    Samples:

    * ``image``: float32 1 x 800 x 800 raw amplitude, 0-255 (0-65535 for
      16-bit single-band TIFF/PNG copies); data modules normalise (``/255``,
      or ``/65535`` with ``bit_depth=16``); uint8 with ``dtype='uint8'``.
    * ``label``: int64 (N,), all 0 (``ship``).
    * ``bbox_xyxy``: float32 (N, 4); ``bbox``: float32 (N, 8) when
      ``bbox_orientation='oriented'``.

    If you use this dataset in your research, please cite:

    * https://doi.org/10.1109/ACCESS.2020.3005861
    """

    classes: ClassVar[list[str]] = ['ship']
    splits = ('train', 'test')

    def __init__(
        self,
        root: str | os.PathLike[str] = 'data',
        split: Literal['train', 'test'] = 'train',
        bbox_orientation: Literal['horizontal', 'oriented'] = 'horizontal',
        transforms: Callable[[Sample], Sample] | None = None,
        dtype: Literal['float32', 'uint8'] = 'float32',
    ) -> None:
        """Initialise a new HRSID dataset.

        Args:
            root: Folder holding ``JPEGImages/`` and ``annotations/``.
            split: ``'train'`` or ``'test'``.
            bbox_orientation: ``'horizontal'`` or ``'oriented'`` (adds
                ``bbox``, N x 8, from the polygons).
            transforms: A function applied to each sample.
            dtype: Type of ``image``: ``'float32'`` (the sample contract) or
                ``'uint8'`` (the same values in a quarter of the bytes; data
                modules use it to pass batches between worker processes).

        Raises:
            ValueError: If an argument is invalid.
            DatasetNotFoundError: If ``JPEGImages/`` or the split's JSON file
                is missing.
            MissingInputError: If a listed image is missing.
            InvalidInputError: If the JSON file is malformed.
        """
        if split not in self.splits:
            raise ValueError(f'split must be one of {self.splits}, got {split!r}')
        self._init_options(root, bbox_orientation, transforms, dtype)
        self.split = split
        self.image_dir = os.path.join(self.root, 'JPEGImages')
        self.annotation_file = os.path.join(
            self.root, 'annotations', f'{split}2017.json'
        )
        if not os.path.isdir(self.image_dir) or not os.path.isfile(
            self.annotation_file
        ):
            raise DatasetNotFoundError(self)
        coco = read_coco(self.annotation_file)
        names = self._category_names(coco['categories'])
        objects: dict[Any, list[dict[str, Any]]] = {}
        for annotation in coco['annotations']:
            if not isinstance(annotation, dict) or 'image_id' not in annotation:
                raise InvalidInputError(
                    self.annotation_file, f'annotation without image_id: {annotation!r}'
                )
            objects.setdefault(annotation['image_id'], []).append(annotation)
        #: ``file_name`` of the images, in sample order.
        self.file_names: list[str] = []
        for entry in coco['images']:
            if not isinstance(entry, dict) or 'file_name' not in entry:
                raise InvalidInputError(
                    self.annotation_file, f'image without file_name: {entry!r}'
                )
            path = os.path.join(self.image_dir, str(entry['file_name']))
            if not os.path.isfile(path):
                raise MissingInputError(
                    path, f'image listed in {self.annotation_file} does not exist'
                )
            self.file_names.append(str(entry['file_name']))
            self._paths.append(path)
            self._load(path, objects.get(entry.get('id'), []), names)
        warn_annotation_issues('HRSID', self.skipped, self.repaired)

    def _category_names(self, categories: list[Any]) -> dict[Any, str]:
        """Map category ids to names."""
        names: dict[Any, str] = {}
        for category in categories:
            if not isinstance(category, dict) or 'id' not in category:
                raise InvalidInputError(
                    self.annotation_file, f'category without id: {category!r}'
                )
            names[category['id']] = str(category.get('name', '')).strip()
        return names

    def _load(
        self, path: str, annotations: list[dict[str, Any]], names: dict[Any, str]
    ) -> None:
        """Keep one image's objects."""
        source = self.annotation_file
        kept_names: list[str] = []
        boxes: list[list[float]] = []
        polygons: list[list[float] | None] = []
        for annotation in annotations:
            what = f'annotation {annotation.get("id", "?")}'
            x, y, w, h = _numbers(source, f'{what} bbox', annotation.get('bbox'), 4)
            if annotation.get('iscrowd', 0):
                count_issue(self.skipped, source, 'crowd')
                continue
            if w <= 0 or h <= 0:
                count_issue(self.skipped, source, 'empty_box')
                continue
            kept_names.append(names.get(annotation.get('category_id'), '?'))
            boxes.append([x, y, x + w, y + h])
            polygons.append(self._polygon(what, annotation.get('segmentation')))
        xyxy = torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4)
        corners = xyxy_to_corners(xyxy)
        if self.bbox_orientation == 'oriented':
            corners = self._rotated(corners, polygons)
        self._add_objects(source, kept_names, corners, xyxy, image_size([path]))

    def _polygon(self, what: str, segmentation: Any) -> list[float] | None:
        """The points of all of an object's polygons, or None without any."""
        if not isinstance(segmentation, list) or not segmentation:
            return None  # absent, or RLE (a dict)
        points: list[float] = []
        for part in segmentation:
            values = _numbers(self.annotation_file, f'{what} segmentation', part)
            if len(values) % 2:
                raise InvalidInputError(
                    self.annotation_file,
                    f'{what} segmentation: odd number of coordinates ({len(values)})',
                )
            points += values
        return points or None

    def _rotated(
        self, corners: Tensor, polygons: Sequence[list[float] | None]
    ) -> Tensor:
        """Minimum-area rectangles of the polygons; the box for objects without one."""
        have = {i: p for i, p in enumerate(polygons) if p is not None}
        count_issue(
            self.repaired, self.annotation_file, 'no_polygon', len(polygons) - len(have)
        )
        if have:
            geometries = [
                shapely.multipoints([[p[k], p[k + 1]] for k in range(0, len(p), 2)])
                for p in have.values()
            ]
            corners = corners.clone()
            corners[list(have)] = rotated_rectangle_corners(geometries).float()
        return corners
