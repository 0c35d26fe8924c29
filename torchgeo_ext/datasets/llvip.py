"""LLVIP: a visible-infrared paired dataset for low-light pedestrian detection."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any, ClassVar, Literal

import torch
from torch import Tensor
from torchgeo.datasets import DatasetNotFoundError

from ..errors import MissingInputError
from .detection import (
    AnnotationCounts,
    PairedDetectionDataset,
    check_sample_options,
    clip_xyxy,
    count_issue,
    image_size,
    keep_clipped,
    stacked_band_indices,
    warn_annotation_issues,
    xyxy_to_corners,
)
from .voc import parse_voc

Sample = dict[str, Any]

_IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png')


class LLVIP(PairedDetectionDataset):
    """LLVIP: pedestrians in paired visible and infrared frames, mostly at night.

    The Low-Light Visible-Infrared Paired dataset has 15,488 co-registered
    visible / infrared frame pairs (12,025 train, 3,463 test) of 1280 x 1024
    pixels, taken by a binocular camera at 26 street scenes, mostly in very low
    light, with axis-aligned boxes of one class, ``person`` (the same boxes
    for both modalities).

    Dataset format, under ``root``:

    * ``visible/{train,test}/<stem>.jpg``: 8-bit RGB frames;
    * ``infrared/{train,test}/<stem>.jpg``: 8-bit infrared frames with the same
      names (stored with three identical channels: the first is used);
    * ``Annotations/<stem>.xml``: Pascal VOC, one ``<object>`` per person with
      ``<name>`` and ``<bndbox>`` (``xmin ymin xmax ymax``), for both splits in
      one folder.

    Box values are taken as pixel-edge coordinates, as LLVIP's own tools and
    the YOLO conversions read them. Boxes are clipped to the image: boxes
    partly outside are kept (``clipped_to_image`` in :attr:`repaired`), boxes
    with nothing inside or no area are dropped (``outside_image``,
    ``empty_box`` in :attr:`skipped`), as are objects without a complete
    ``<bndbox>`` (``no_geometry``, ``incomplete_geometry``) and objects of
    another class (``unknown_name (<name>)``). One warning summarises the
    counts. The ``<difficult>`` flag is not used (LLVIP sets none).

    Samples:

    * ``image``: float32 C x H x W, raw 0-255 values (data modules normalise;
      uint8 with ``dtype='uint8'``), modalities stacked in the order given: RGB
      3 bands, IR 1 band; :attr:`modalities` gives each one's band indices.
    * ``label``: int64 (N,), all 0 (``person``).
    * ``bbox_xyxy``: float32 (N, 4) in pixels.

    Dataset classes:

    0. person

    If you use this dataset in your research, please cite:

    * https://arxiv.org/abs/2108.10831 (ICCV Workshops 2021)
    """

    classes: ClassVar[list[str]] = ['person']
    #: Folder and band count of each modality.
    modality_files: ClassVar[dict[str, tuple[str, int]]] = {
        'rgb': ('visible', 3),
        'ir': ('infrared', 1),
    }
    splits = ('train', 'test')

    def __init__(
        self,
        root: str | os.PathLike[str] = 'data',
        split: Literal['train', 'test'] = 'train',
        modalities: Sequence[str] = ('rgb', 'ir'),
        transforms: Callable[[Sample], Sample] | None = None,
        dtype: Literal['float32', 'uint8'] = 'float32',
    ) -> None:
        """Initialise a new LLVIP dataset.

        Args:
            root: Folder holding ``visible/``, ``infrared/`` and ``Annotations/``.
            split: ``'train'`` or ``'test'``.
            modalities: Subset of ``('rgb', 'ir')``, stacked in this order.
            transforms: A function applied to each sample.
            dtype: Type of ``image``: ``'float32'`` (the sample contract) or
                ``'uint8'`` (the same values in a quarter of the bytes; data
                modules use it between worker processes).

        Raises:
            ValueError: If an argument is invalid.
            DatasetNotFoundError: If the split's image folder is missing or empty.
            MissingInputError: If an image's partner modality or its
                annotation file is missing.
            InvalidInputError: If an annotation file is malformed.
        """
        if split not in self.splits:
            raise ValueError(f'split must be one of {self.splits}, got {split!r}')
        layout = stacked_band_indices(
            modalities,
            {name: bands for name, (_, bands) in self.modality_files.items()},
        )
        check_sample_options(dtype, 'horizontal')
        self.root = os.fspath(root)
        self.split = split
        self.modalities = layout
        self.transforms = transforms
        self.dtype = dtype
        #: LLVIP has axis-aligned boxes only.
        self.bbox_orientation = 'horizontal'
        self.annotation_dir = os.path.join(self.root, 'Annotations')

        first = next(iter(self.modalities))
        folder = self._folder(first)
        names = sorted(
            f
            for f in (os.listdir(folder) if os.path.isdir(folder) else [])
            if f.lower().endswith(_IMAGE_EXTENSIONS)
        )
        if not names:
            raise DatasetNotFoundError(self)

        #: Per-file counts of dropped objects, ``{file: {reason: count}}``.
        self.skipped: AnnotationCounts = {}
        #: Per-file counts of objects kept after a repair (clipped boxes).
        self.repaired: AnnotationCounts = {}
        #: File stems of the frames, in sample order.
        self.stems: list[str] = []
        self._paths: list[list[str]] = []
        self._xyxy: list[Tensor] = []
        self._boxes: list[Tensor] = []
        self._labels: list[Tensor] = []
        for name in names:
            stem = os.path.splitext(name)[0]
            paths = [self._partner(stem, name, m) for m in self.modalities]
            width, height = image_size(paths)
            xyxy = self._load_annotations(stem, name, width, height)
            self.stems.append(stem)
            self._paths.append(paths)
            self._xyxy.append(xyxy)
            self._boxes.append(xyxy_to_corners(xyxy))
            self._labels.append(torch.zeros(len(xyxy), dtype=torch.int64))
        warn_annotation_issues('LLVIP', self.skipped, self.repaired)

    def _folder(self, modality: str) -> str:
        return os.path.join(self.root, self.modality_files[modality][0], self.split)

    def _partner(self, stem: str, name: str, modality: str) -> str:
        """Return the frame of ``modality`` for ``stem``, or raise if absent."""
        folder = self._folder(modality)
        for candidate in (name, *(stem + ext for ext in _IMAGE_EXTENSIONS)):
            path = os.path.join(folder, candidate)
            if os.path.isfile(path):
                return path
        others = [m for m in self.modalities if m != modality]
        raise MissingInputError(
            os.path.join(folder, name),
            f'image {stem} has no {modality} file (partner of its '
            f'{"/".join(others)} image)',
        )

    def _load_annotations(
        self, stem: str, name: str, width: int, height: int
    ) -> Tensor:
        """Read one frame's person boxes, clipped to the image; count the rest."""
        path = os.path.join(self.annotation_dir, stem + '.xml')
        if not os.path.isfile(path):
            raise MissingInputError(path, f'no annotation file for image {name}')
        objects = parse_voc(path, self.skipped)
        keep = []
        for k, raw in enumerate(objects.names):
            if raw.lower() in self.classes:
                keep.append(k)
            else:
                count_issue(self.skipped, path, f'unknown_name ({raw})')
        xyxy = objects.xyxy[keep]
        empty = (xyxy[:, 2] <= xyxy[:, 0]) | (xyxy[:, 3] <= xyxy[:, 1])
        count_issue(self.skipped, path, 'empty_box', int(empty.sum()))
        xyxy, changed = clip_xyxy(xyxy[~empty], width, height)
        inside = keep_clipped(xyxy, changed, path, self.skipped, self.repaired)
        return xyxy[inside]

    def __len__(self) -> int:
        """Return the number of frame pairs in this split.

        Returns:
            Number of samples.
        """
        return len(self.stems)

    def _files(self, index: int) -> list[str]:
        return self._paths[index]

    def _bands(self) -> list[int]:
        return [self.modality_files[m][1] for m in self.modalities]
