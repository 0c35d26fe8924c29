"""VEDAI: Vehicle Detection in Aerial Imagery (co-registered RGB and infrared)."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any, ClassVar, Literal

import torch
from torch import Tensor
from torchgeo.datasets import DatasetNotFoundError

from ..errors import InvalidInputError, MissingInputError
from ..ops.obb import poly_to_xyxy
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
)

Sample = dict[str, Any]


class VEDAI(PairedDetectionDataset):
    """VEDAI: small-vehicle detection in aerial RGB and infrared images.

    The Vehicle Detection in Aerial Imagery dataset has 1,246 co-registered
    colour and near-infrared tiles (12.5 cm/px at 1024 x 1024, and a 512 x 512
    version) of Utah, annotated with oriented boxes. Ten folds of train/test
    image ids (1,089/121 each) are the benchmark protocol.

    Dataset format:

    * ``Vehicules{512,1024}/<id>_co.png`` (8-bit RGB) and ``<id>_ir.png``
      (8-bit infrared stored as three identical channels; the first is used).
    * ``Annotations{512,1024}/<id>.txt``: one object per line, 14
      whitespace-separated columns
      ``xc yc theta class contained occluded x1 x2 x3 x4 y1 y2 y3 y4``
      (all four x, then all four y). Trailing spaces/tabs and blank lines are
      tolerated.
    * ``Annotations{512,1024}/annotation{512,1024}.txt``: all objects, 15 columns
      ``id xc yc theta x1 x2 x3 x4 y1 y2 y3 y4 class contained occluded``; used
      for an image whose per-image file is absent.
    * ``Annotations{512,1024}/foldNN.txt`` (train ids) and ``foldNNtest.txt``
      (test ids), one id per line. They are looked for in the annotation folder
      of the chosen resolution, then in the other one, then in ``root``.

    ``resolution`` only picks the folders: image sizes are read from the files,
    so copies of any size work (the test data uses small images).

    Samples:

    * ``image``: float32 C x H x W, raw 0-255 values (TorchGeo convention;
      data modules normalise; uint8 with ``dtype='uint8'``), modalities stacked in the order given, RGB 3
      bands and IR 1 band; :attr:`modalities` gives each one's band indices.
    * ``label``: int64 (N,) class indices into :attr:`classes`.
    * ``bbox_xyxy``: float32 (N, 4), the oriented box's envelope clipped to the
      image (objects crossing the border are kept and counted in
      :attr:`repaired`; objects entirely outside are dropped and counted in
      :attr:`skipped`).
    * ``bbox``: float32 (N, 8) corners ``x1 y1 ... x4 y4`` in the files'
      order, not clipped, only when ``bbox_orientation='oriented'``.

    Dataset classes (original VEDAI ids in brackets):

    * ``classes='original'``: car (1), truck (2), tractor (4), camping car (5),
      motorcycle (7), bus (8), van (9), other (10), pickup (11), boat (23),
      plane (31); labels 0-10 in this order.
    * ``classes='superyolo'`` (the 8-class map of SuperYOLO's 75.09 mAP50):
      car, pickup, camping car, truck, other, tractor, boat, van; motorcycle,
      bus and plane objects are dropped and counted in :attr:`skipped`.

    A class id that is not a VEDAI class is an error naming the file and line.

    If you use this dataset in your research, please cite:

    * https://doi.org/10.1016/j.jvcir.2015.11.002
    """

    #: Original VEDAI class ids and names, in label order for ``'original'``.
    original_ids: ClassVar[tuple[int, ...]] = (1, 2, 4, 5, 7, 8, 9, 10, 11, 23, 31)
    original_classes: ClassVar[tuple[str, ...]] = (
        'car',
        'truck',
        'tractor',
        'camping car',
        'motorcycle',
        'bus',
        'van',
        'other',
        'pickup',
        'boat',
        'plane',
    )
    #: SuperYOLO's map from original ids to its 8 labels.
    superyolo_map: ClassVar[dict[int, int]] = {
        1: 0,
        11: 1,
        5: 2,
        2: 3,
        10: 4,
        4: 5,
        23: 6,
        9: 7,
    }
    superyolo_classes: ClassVar[tuple[str, ...]] = (
        'car',
        'pickup',
        'camping car',
        'truck',
        'other',
        'tractor',
        'boat',
        'van',
    )
    #: File suffix and band count of each modality.
    modality_files: ClassVar[dict[str, tuple[str, int]]] = {
        'rgb': ('co', 3),
        'ir': ('ir', 1),
    }
    splits = ('train', 'test')
    resolutions = (512, 1024)

    def __init__(
        self,
        root: str | os.PathLike[str] = 'data',
        split: Literal['train', 'test'] = 'train',
        fold: int = 1,
        resolution: Literal[512, 1024] = 512,
        modalities: Sequence[str] = ('rgb', 'ir'),
        classes: Literal['superyolo', 'original'] = 'superyolo',
        bbox_orientation: Literal['horizontal', 'oriented'] = 'horizontal',
        transforms: Callable[[Sample], Sample] | None = None,
        dtype: Literal['float32', 'uint8'] = 'float32',
    ) -> None:
        """Initialise a new VEDAI dataset.

        Args:
            root: Folder holding ``Vehicules512/``, ``Annotations512/``, ...
            split: ``'train'`` (``foldNN.txt``) or ``'test'``
                (``foldNNtest.txt``).
            fold: Fold number, 1 to 10.
            resolution: 512 or 1024: which folders to read.
            modalities: Subset of ``('rgb', 'ir')``, stacked in this order.
            classes: ``'superyolo'`` (8 classes) or ``'original'`` (11).
            bbox_orientation: ``'oriented'`` adds ``bbox`` (N x 8) to samples.
            transforms: A function applied to each sample.
            dtype: Type of ``image``: ``'float32'`` (the sample contract) or
                ``'uint8'`` (the same values in a quarter of the bytes; data
                modules use it to pass batches between worker processes
                and convert to float32 after the transfer).

        Raises:
            ValueError: If an argument is invalid.
            DatasetNotFoundError: If the image folder is missing.
            MissingInputError: If a folds file, an image's partner modality
                or an image's annotations are missing.
            InvalidInputError: If a folds file or annotation line is malformed
                or has an unknown class id.
        """
        self._check_options(split, fold, resolution, classes)
        layout = stacked_band_indices(
            modalities,
            {name: bands for name, (_, bands) in self.modality_files.items()},
        )
        check_sample_options(dtype, bbox_orientation)

        self.root = os.fspath(root)
        self.split = split
        self.fold = int(fold)
        self.resolution = resolution
        self.class_set = classes
        self.bbox_orientation = bbox_orientation
        self.transforms = transforms
        self.dtype = dtype
        self.classes: list[str] = list(
            self.superyolo_classes if classes == 'superyolo' else self.original_classes
        )
        self.modalities = layout

        self.image_dir = os.path.join(self.root, f'Vehicules{resolution}')
        self.annotation_dir = os.path.join(self.root, f'Annotations{resolution}')
        if not os.path.isdir(self.image_dir):
            raise DatasetNotFoundError(self)

        #: Per-file counts of dropped objects, ``{file: {reason: count}}``.
        self.skipped: AnnotationCounts = {}
        #: Per-file counts of objects kept after a repair (clipped boxes).
        self.repaired: AnnotationCounts = {}

        self.ids = self._read_fold()
        self._combined: dict[str, list[tuple[str, int, list[str]]]] | None = None
        self._boxes: list[Tensor] = []
        self._labels: list[Tensor] = []
        self._xyxy: list[Tensor] = []
        for image_id in self.ids:
            width, height = self._check_files(image_id)
            corners, labels, xyxy = self._load_annotations(image_id, width, height)
            self._boxes.append(corners)
            self._labels.append(labels)
            self._xyxy.append(xyxy)
        warn_annotation_issues('VEDAI', self.skipped, self.repaired)

    @classmethod
    def _check_options(
        cls, split: str, fold: int, resolution: int, classes: str
    ) -> None:
        """Raise ValueError for an unknown split, fold, resolution or class set."""
        if split not in cls.splits:
            raise ValueError(f'split must be one of {cls.splits}, got {split!r}')
        if not 1 <= int(fold) <= 10:
            raise ValueError(f'fold must be 1 to 10, got {fold!r}')
        if resolution not in cls.resolutions:
            raise ValueError(
                f'resolution must be one of {cls.resolutions}, got {resolution!r}'
            )
        if classes not in ('superyolo', 'original'):
            raise ValueError(f"classes must be 'superyolo' or 'original': {classes!r}")

    def _image_path(self, image_id: str, modality: str) -> str:
        suffix = self.modality_files[modality][0]
        return os.path.join(self.image_dir, f'{image_id}_{suffix}.png')

    def _read_fold(self) -> list[str]:
        """Read the ids of this split and fold."""
        name = f'fold{self.fold:02d}{"test" if self.split == "test" else ""}.txt'
        other = 1024 if self.resolution == 512 else 512
        candidates = [
            os.path.join(self.annotation_dir, name),
            os.path.join(self.root, f'Annotations{other}', name),
            os.path.join(self.root, name),
        ]
        for path in candidates:
            if os.path.isfile(path):
                break
        else:
            raise MissingInputError(
                candidates[0],
                f'folds file {name} not found (also looked in {candidates[1:]})',
            )
        ids = []
        with open(path) as f:
            for number, line in enumerate(f, start=1):
                text = line.strip()
                if not text:
                    continue
                if not text.isdigit():
                    raise InvalidInputError(
                        path, f'line {number}: expected an image id, got {text!r}'
                    )
                ids.append(text.zfill(8))
        return ids

    def _check_files(self, image_id: str) -> tuple[int, int]:
        """Check that all modalities exist with one size; return (width, height)."""
        paths = [self._image_path(image_id, m) for m in self.modalities]
        for modality, path in zip(self.modalities, paths, strict=True):
            if not os.path.isfile(path):
                others = [m for m in self.modalities if m != modality]
                problem = f'image {image_id} has no {modality} file'
                if others:
                    problem += f' (partner of its {"/".join(others)} image)'
                raise MissingInputError(path, problem)
        return image_size(paths)

    def _combined_rows(self) -> dict[str, list[tuple[str, int, list[str]]]]:
        """Read ``annotation{res}.txt`` once: ``{id: [(path, line, columns)]}``."""
        if self._combined is None:
            path = os.path.join(self.annotation_dir, f'annotation{self.resolution}.txt')
            rows: dict[str, list[tuple[str, int, list[str]]]] = {}
            if os.path.isfile(path):
                with open(path) as f:
                    for number, line in enumerate(f, start=1):
                        cols = line.split()
                        if not cols:
                            continue
                        if len(cols) != 15:
                            raise InvalidInputError(
                                path,
                                f'line {number}: expected 15 columns (id xc yc theta '
                                f'x1..x4 y1..y4 class contained occluded), '
                                f'got {len(cols)}',
                            )
                        if not cols[0].isdigit():
                            raise InvalidInputError(
                                path, f'line {number}: bad image id {cols[0]!r}'
                            )
                        # Reorder to the per-image column order.
                        per_image = cols[1:4] + cols[12:15] + cols[4:12]
                        rows.setdefault(cols[0].zfill(8), []).append(
                            (path, number, per_image)
                        )
                self._combined = rows
            else:
                self._combined = {}
        return self._combined

    def _load_annotations(
        self, image_id: str, width: int, height: int
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Parse one image's objects; return corners, labels and clipped boxes."""
        path = os.path.join(self.annotation_dir, f'{image_id}.txt')
        rows: list[tuple[str, int, list[str]]] = []
        if os.path.isfile(path):
            with open(path) as f:
                for number, line in enumerate(f, start=1):
                    cols = line.split()
                    if not cols:
                        continue
                    if len(cols) != 14:
                        raise InvalidInputError(
                            path,
                            f'line {number}: expected 14 columns (xc yc theta class '
                            f'contained occluded x1..x4 y1..y4), got {len(cols)}',
                        )
                    rows.append((path, number, cols))
        else:
            combined = self._combined_rows()
            if not combined:
                raise MissingInputError(
                    path,
                    f'no annotation file for image {image_id}, and no '
                    f'annotation{self.resolution}.txt to fall back on',
                )
            rows = combined.get(image_id, [])

        corners_list: list[list[float]] = []
        labels: list[int] = []
        for source, number, cols in rows:
            try:
                class_value = float(cols[3])
                xs = [float(v) for v in cols[6:10]]
                ys = [float(v) for v in cols[10:14]]
            except ValueError as error:
                raise InvalidInputError(
                    source, f'line {number}: non-numeric value ({error})'
                ) from error
            class_id = int(class_value)
            if class_id != class_value or class_id not in self.original_ids:
                raise InvalidInputError(
                    source,
                    f'line {number}: unknown class id {cols[3]!r} '
                    f'(VEDAI ids are {list(self.original_ids)})',
                )
            if self.class_set == 'superyolo':
                if class_id not in self.superyolo_map:
                    name = self.original_classes[self.original_ids.index(class_id)]
                    count_issue(self.skipped, source, f'not_in_superyolo ({name})')
                    continue
                label = self.superyolo_map[class_id]
            else:
                label = self.original_ids.index(class_id)
            corners_list.append([v for xy in zip(xs, ys) for v in xy])
            labels.append(label)

        corners = torch.tensor(corners_list, dtype=torch.float32).reshape(-1, 8)
        label_tensor = torch.tensor(labels, dtype=torch.int64)
        xyxy, changed = clip_xyxy(poly_to_xyxy(corners), width, height)
        source = rows[0][0] if rows else path
        inside = keep_clipped(xyxy, changed, source, self.skipped, self.repaired)
        return corners[inside], label_tensor[inside], xyxy[inside]

    def __len__(self) -> int:
        """Return the number of images in this split and fold.

        Returns:
            Number of samples.
        """
        return len(self.ids)

    def _files(self, index: int) -> list[str]:
        return [self._image_path(self.ids[index], m) for m in self.modalities]

    def _bands(self) -> list[int]:
        return [self.modality_files[m][1] for m in self.modalities]
