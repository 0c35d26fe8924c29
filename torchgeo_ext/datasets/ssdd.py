"""SSDD: the SAR Ship Detection Dataset (official release), axis-aligned or rotated boxes."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import ClassVar, Literal

from torchgeo.datasets import DatasetNotFoundError

from ..errors import MissingInputError
from .detection import image_size, warn_annotation_issues
from .sar import Sample, SARDetectionDataset
from .voc import parse_voc

_IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.bmp', '.tif', '.tiff')


class SSDD(SARDetectionDataset):
    """SSDD: ships in single-band SAR amplitude images.

    The SAR Ship Detection Dataset has 1,160 images (RadarSat-2, TerraSAR-X and
    Sentinel-1; 1-15 m resolution; about 190 to 670 px a side) with 2,456 ships.
    The official release fixes the split: images whose number ends in 1 or 9
    are the 232 test images (the others the 928 training images), and the test
    images are also divided into inshore and offshore scenes.

    Dataset format (official release, ``Official-SSDD-OPEN``, Zhang et al. 2021,
    https://github.com/TianwenZhang0825/Official-SSDD), under ``root``:

    * ``BBox_SSDD/voc_style/JPEGImages_{split}/<number>.jpg``: 8-bit grey
      images (stored with three identical channels: the first is used), with
      ``split`` one of ``train``, ``test``, ``test_inshore``, ``test_offshore``.
    * ``BBox_SSDD/voc_style/Annotations_{split}/<number>.xml``: Pascal VOC,
      one ``<object>`` per ship with ``<name>ship</name>`` and a ``<bndbox>``
      (``xmin ymin xmax ymax``).
    * ``RBox_SSDD/voc_style/{JPEGImages,Annotations}_{split}/``: the same
      images; each ``<object>`` has a ``<rotated_bndbox>`` with
      ``rotated_bbox_cx/cy/w/h/theta`` and the corners ``x1 y1 .. x4 y4``
      (the corners are read).

    ``bbox_orientation='horizontal'`` reads ``BBox_SSDD`` (the axis-aligned
    annotation); ``'oriented'`` reads ``RBox_SSDD``: ``bbox`` holds its corners
    and ``bbox_xyxy`` their envelope. The polygon annotation (``PSeg_SSDD``,
    COCO) and the ``coco_style`` copies are not read.

    Boxes are clipped to the image: objects partly outside are kept and
    counted in :attr:`repaired`, objects with nothing left inside are dropped
    and counted in :attr:`skipped`, as are objects without geometry and names
    other than ``ship``, with one warning summarising the counts. Malformed
    XML or a non-numeric coordinate is an error naming the file.

    Samples:

    * ``image``: float32 1 x H x W raw amplitude, 0-255 for the 8-bit release
      (0-65535 for 16-bit single-band TIFF/PNG copies); data modules normalise
      (``/255``, or ``/65535`` with ``bit_depth=16``). uint8 with
      ``dtype='uint8'`` (8-bit images only). Image sizes vary.
    * ``label``: int64 (N,), all 0 (``ship``).
    * ``bbox_xyxy``: float32 (N, 4); ``bbox``: float32 (N, 8) corners when
      ``bbox_orientation='oriented'``.

    If you use this dataset in your research, please cite:

    * https://doi.org/10.3390/rs13183690
    """

    classes: ClassVar[list[str]] = ['ship']
    splits = ('train', 'test', 'test_inshore', 'test_offshore')
    #: Annotation variant read for each box orientation.
    variants: ClassVar[dict[str, str]] = {
        'horizontal': 'BBox_SSDD',
        'oriented': 'RBox_SSDD',
    }

    def __init__(
        self,
        root: str | os.PathLike[str] = 'data',
        split: Literal['train', 'test', 'test_inshore', 'test_offshore'] = 'train',
        bbox_orientation: Literal['horizontal', 'oriented'] = 'horizontal',
        transforms: Callable[[Sample], Sample] | None = None,
        dtype: Literal['float32', 'uint8'] = 'float32',
    ) -> None:
        """Initialise a new SSDD dataset.

        Args:
            root: Folder holding ``BBox_SSDD/`` and ``RBox_SSDD/``.
            split: ``'train'``, ``'test'``, ``'test_inshore'`` or
                ``'test_offshore'``.
            bbox_orientation: ``'horizontal'`` (``BBox_SSDD``) or
                ``'oriented'`` (``RBox_SSDD``; adds ``bbox``, N x 8).
            transforms: A function applied to each sample.
            dtype: Type of ``image``: ``'float32'`` (the sample contract) or
                ``'uint8'`` (the same values in a quarter of the bytes; data
                modules use it to pass batches between worker processes).

        Raises:
            ValueError: If an argument is invalid.
            DatasetNotFoundError: If the split's image folder is missing or empty.
            MissingInputError: If an image's annotation file is missing.
            InvalidInputError: If an annotation file is malformed.
        """
        if split not in self.splits:
            raise ValueError(f'split must be one of {self.splits}, got {split!r}')
        self._init_options(root, bbox_orientation, transforms, dtype)
        self.split = split
        base = os.path.join(self.root, self.variants[bbox_orientation], 'voc_style')
        self.image_dir = os.path.join(base, f'JPEGImages_{split}')
        self.annotation_dir = os.path.join(base, f'Annotations_{split}')
        names = []
        if os.path.isdir(self.image_dir):
            names = sorted(
                f
                for f in os.listdir(self.image_dir)
                if f.lower().endswith(_IMAGE_EXTENSIONS)
            )
        if not names:
            raise DatasetNotFoundError(self)
        #: File stems of the images, in sample order.
        self.stems = [os.path.splitext(name)[0] for name in names]
        self._paths = [os.path.join(self.image_dir, name) for name in names]
        for stem, path in zip(self.stems, self._paths, strict=True):
            self._load(stem, path)
        warn_annotation_issues('SSDD', self.skipped, self.repaired)

    def _load(self, stem: str, image_path: str) -> None:
        """Read one image's annotation file and keep its boxes."""
        xml = os.path.join(self.annotation_dir, f'{stem}.xml')
        if not os.path.isfile(xml):
            raise MissingInputError(xml, f'no annotation file for image {stem}')
        objects = parse_voc(xml, self.skipped)
        size = image_size([image_path])
        self._add_objects(xml, objects.names, objects.corners, objects.xyxy, size)
