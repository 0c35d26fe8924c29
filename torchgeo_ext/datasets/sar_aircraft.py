"""SAR-AIRcraft-1.0: aircraft of seven types in Gaofen-3 SAR images (Pascal VOC)."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import ClassVar, Literal

from torchgeo.datasets import DatasetNotFoundError

from ..errors import InvalidInputError, MissingInputError
from .detection import image_size, warn_annotation_issues
from .sar import Sample, SARDetectionDataset
from .voc import parse_voc

_IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.tif', '.tiff', '.bmp')


class SARAircraft(SARDetectionDataset):
    """SAR-AIRcraft-1.0: aircraft detection and type recognition in SAR images.

    4,368 single-polarisation Gaofen-3 spotlight images (1 m) of airports,
    800 x 800 to 1,500 x 1,500 pixels, with 16,463 aircraft of seven types in
    axis-aligned boxes, and fixed train / val / test lists.

    Dataset format (release ``SAR-AIRcraft-1.0``, Wang et al. 2023,
    https://radars.ac.cn/en/article/doi/10.12000/JR23043), under
    ``root``:

    * ``JPEGImages/<id>.jpg``: 8-bit grey JPEG (three identical channels: the
      first is used), of several sizes.
    * ``Annotations/<id>.xml``: Pascal VOC, one ``<object>`` per aircraft
      with its type in ``<name>`` and a ``<bndbox>`` (``xmin ymin xmax ymax``).
    * ``ImageSets/Main/{train,val,test}.txt``: the ids of each split, one a
      line.

    Boxes are clipped to the image: objects partly outside are kept and
    counted in :attr:`repaired`, objects with nothing inside, without
    geometry or with a name that is not one of :attr:`classes` are dropped
    and counted in :attr:`skipped`, with one warning. Malformed XML, a
    non-numeric coordinate or a listed image without its files is an error
    naming the file.

    Samples:

    * ``image``: float32 1 x H x W raw amplitude, 0-255 (0-65535 for 16-bit
      single-band TIFF/PNG copies); data modules normalise (``/255``, or
      ``/65535`` with ``bit_depth=16``); uint8 with ``dtype='uint8'``.
      Image sizes vary.
    * ``label``: int64 (N,) indices into :attr:`classes`.
    * ``bbox_xyxy``: float32 (N, 4). The dataset has no oriented boxes:
      ``bbox_orientation='oriented'`` adds ``bbox`` (N x 8), the corners of
      the axis-aligned boxes, for oriented detectors.

    Dataset classes:

    0. A220
    1. A320/321
    2. A330
    3. ARJ21
    4. Boeing737
    5. Boeing787
    6. other

    If you use this dataset in your research, please cite:

    * https://doi.org/10.12000/JR23043
    """

    classes: ClassVar[list[str]] = [
        'A220',
        'A320/321',
        'A330',
        'ARJ21',
        'Boeing737',
        'Boeing787',
        'other',
    ]
    splits = ('train', 'val', 'test')

    def __init__(
        self,
        root: str | os.PathLike[str] = 'data',
        split: Literal['train', 'val', 'test'] = 'train',
        bbox_orientation: Literal['horizontal', 'oriented'] = 'horizontal',
        transforms: Callable[[Sample], Sample] | None = None,
        dtype: Literal['float32', 'uint8'] = 'float32',
    ) -> None:
        """Initialise a new SARAircraft dataset.

        Args:
            root: Folder holding ``JPEGImages/``, ``Annotations/`` and
                ``ImageSets/``.
            split: ``'train'``, ``'val'`` or ``'test'``.
            bbox_orientation: ``'horizontal'``, or ``'oriented'`` to add the
                boxes' corners as ``bbox`` (N x 8).
            transforms: A function applied to each sample.
            dtype: Type of ``image``: ``'float32'`` (the sample contract) or
                ``'uint8'`` (the same values in a quarter of the bytes; data
                modules use it to pass batches between worker processes).

        Raises:
            ValueError: If an argument is invalid.
            DatasetNotFoundError: If ``JPEGImages/`` is missing.
            MissingInputError: If the split's list, a listed image or its
                annotation file is missing.
            InvalidInputError: If a list or an annotation file is malformed.
        """
        if split not in self.splits:
            raise ValueError(f'split must be one of {self.splits}, got {split!r}')
        self._init_options(root, bbox_orientation, transforms, dtype)
        self.split = split
        self.image_dir = os.path.join(self.root, 'JPEGImages')
        self.annotation_dir = os.path.join(self.root, 'Annotations')
        if not os.path.isdir(self.image_dir):
            raise DatasetNotFoundError(self)
        #: Image ids of this split, in sample order.
        self.ids = self._read_split()
        for image_id in self.ids:
            path = self._find_image(image_id)
            xml = os.path.join(self.annotation_dir, f'{image_id}.xml')
            if not os.path.isfile(xml):
                raise MissingInputError(xml, f'no annotation file for image {image_id}')
            objects = parse_voc(xml, self.skipped)
            self._paths.append(path)
            self._add_objects(
                xml, objects.names, objects.corners, objects.xyxy, image_size([path])
            )
        warn_annotation_issues('SARAircraft', self.skipped, self.repaired)

    def _read_split(self) -> list[str]:
        """Read ``ImageSets/Main/<split>.txt``."""
        path = os.path.join(self.root, 'ImageSets', 'Main', f'{self.split}.txt')
        if not os.path.isfile(path):
            raise MissingInputError(path, f'no list of the {self.split} images')
        ids: list[str] = []
        with open(path) as f:
            for number, line in enumerate(f, start=1):
                fields = line.split()
                if not fields:
                    continue
                if len(fields) > 1:
                    raise InvalidInputError(
                        path,
                        f'line {number}: expected one image id, got {line.strip()!r}',
                    )
                ids.append(fields[0])
        return ids

    def _find_image(self, image_id: str) -> str:
        """The image file of ``image_id``."""
        for ext in _IMAGE_EXTENSIONS:
            path = os.path.join(self.image_dir, image_id + ext)
            if os.path.isfile(path):
                return path
        raise MissingInputError(
            os.path.join(self.image_dir, f'{image_id}.jpg'),
            f'image {image_id} of the {self.split} list does not exist',
        )
