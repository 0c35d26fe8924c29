"""DroneVehicle: drone-based RGB-infrared vehicle detection."""

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
    count_issue,
    image_size,
    keep_clipped,
    stacked_band_indices,
    warn_annotation_issues,
)
from .voc import parse_voc

Sample = dict[str, Any]

_IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.bmp', '.tif', '.tiff')


class DroneVehicle(PairedDetectionDataset):
    """DroneVehicle: vehicle detection in paired drone RGB and infrared frames.

    28,439 RGB-infrared pairs (17,990 train / 1,469 val / 8,980 test) taken by
    a drone by day and night, annotated with oriented boxes of five vehicle
    classes, separately for the RGB and the infrared frame.

    Dataset format (official release), under ``root``:

    * ``{split}/{split}img/<stem>.jpg`` (RGB) and ``{split}/{split}imgr/<stem>.jpg``
      (infrared, three identical channels: the first is used), 840 x 712 with a
      100 px white border around the 640 x 512 content.
    * ``{split}/{split}label/<stem>.xml`` (RGB labels) and
      ``{split}/{split}labelr/<stem>.xml`` (infrared labels): Pascal-VOC-like
      ``<object>`` elements with a ``<name>`` and either a ``<polygon>``
      (``x1 y1 .. x4 y4``) or a ``<bndbox>`` (``xmin ymin xmax ymax``), in the
      bordered frame.

    Also read: the DOTA-style text layout that E2E-MFD uses,
    ``{split}/{rgb,ir}/{images,labels}/<stem>.{jpg,txt}`` with lines
    ``x1 y1 x2 y2 x3 y3 x4 y4 class difficulty`` (``imagesource:``/``gsd:``
    header lines are ignored). The layout is detected per split.

    Border: with ``crop_border=True`` a 100 px border is removed from every
    image that has one (any size other than the 640 x 512 content size; the
    official 840 x 712 frames) and the boxes are shifted by -100 px. Images that
    are already 640 x 512 are left alone. In all cases box corners are clipped
    to the image: objects partly outside are kept and counted in
    :attr:`repaired`, objects with nothing left inside are dropped and counted
    in :attr:`skipped`.

    Annotation quirks of the real files handled here: class spelling variants
    (``feright car``, ``feright_car``, ``feright``, ``freight_car``, ``truvk``)
    are normalised; junk names (``*``, empty), unknown names and objects
    without (complete) geometry are skipped and counted in :attr:`skipped`
    per file, with one warning summarising the counts. Malformed XML, a
    non-numeric coordinate or a malformed text line is an error naming the
    file (and line).

    Samples:

    * ``image``: float32 C x H x W raw 0-255 values (TorchGeo convention;
      data modules normalise; uint8 with ``dtype='uint8'``), modalities stacked in the given order (RGB 3
      bands, IR 1 band): 4 x 512 x 640 after border cropping.
    * ``label``: int64 (N,); ``bbox_xyxy``: float32 (N, 4), always;
      ``bbox``: float32 (N, 8), DOTA corner order, when
      ``bbox_orientation='oriented'``.

    Dataset classes:

    0. car
    1. truck
    2. bus
    3. van
    4. freight car

    If you use this dataset in your research, please cite:

    * https://doi.org/10.1109/TCSVT.2022.3168279
    """

    classes: ClassVar[list[str]] = ['car', 'truck', 'bus', 'van', 'freight car']
    #: Spelling variants found in the real files, mapped to canonical names.
    name_map: ClassVar[dict[str, str]] = {
        'car': 'car',
        'truck': 'truck',
        'truvk': 'truck',
        'bus': 'bus',
        'van': 'van',
        'freight car': 'freight car',
        'freight_car': 'freight car',
        'freight': 'freight car',
        'feright car': 'freight car',
        'feright_car': 'freight car',
        'feright': 'freight car',
    }
    #: Names known to be junk in the real files.
    junk_names: ClassVar[frozenset[str]] = frozenset({'*', ''})
    #: Band count of each modality.
    modality_bands: ClassVar[dict[str, int]] = {'rgb': 3, 'ir': 1}
    border = 100
    content_size = (640, 512)
    splits = ('train', 'val', 'test')

    def __init__(
        self,
        root: str | os.PathLike[str] = 'data',
        split: Literal['train', 'val', 'test'] = 'train',
        modalities: Sequence[str] = ('rgb', 'ir'),
        label_source: Literal['ir', 'rgb'] = 'ir',
        crop_border: bool = True,
        bbox_orientation: Literal['oriented', 'horizontal'] = 'oriented',
        transforms: Callable[[Sample], Sample] | None = None,
        dtype: Literal['float32', 'uint8'] = 'float32',
    ) -> None:
        """Initialise a new DroneVehicle dataset.

        Args:
            root: Folder holding ``train/``, ``val/``, ``test/``.
            split: ``'train'``, ``'val'`` or ``'test'``.
            modalities: Subset of ``('rgb', 'ir')``, stacked in this order.
            label_source: Which annotations to use: ``'ir'`` (most papers)
                or ``'rgb'``.
            crop_border: Remove the 100 px white border and shift the boxes.
            bbox_orientation: ``'oriented'`` adds ``bbox`` (N x 8) to samples.
            transforms: A function applied to each sample.
            dtype: Type of ``image``: ``'float32'`` (the sample contract) or
                ``'uint8'`` (the same values in a quarter of the bytes; data
                modules use it to pass batches between worker processes
                and convert to float32 after the transfer).

        Raises:
            ValueError: If an argument is invalid.
            DatasetNotFoundError: If the split's folders are missing.
            MissingInputError: If an image's partner modality or its
                annotation file is missing.
            InvalidInputError: If an annotation file is malformed.
        """
        if split not in self.splits:
            raise ValueError(f'split must be one of {self.splits}, got {split!r}')
        layout = stacked_band_indices(modalities, self.modality_bands)
        if label_source not in ('ir', 'rgb'):
            raise ValueError(f"label_source must be 'ir' or 'rgb': {label_source!r}")
        check_sample_options(dtype, bbox_orientation)
        self.root = os.fspath(root)
        self.split = split
        self.label_source = label_source
        self.crop_border = crop_border
        self.bbox_orientation = bbox_orientation
        self.transforms = transforms
        self.dtype = dtype
        self.modalities = layout

        self._find_layout(os.path.join(self.root, split))
        #: Per-file counts of dropped objects, ``{file: {reason: count}}``.
        self.skipped: AnnotationCounts = {}
        #: Per-file counts of objects kept after a repair (clipped corners).
        self.repaired: AnnotationCounts = {}
        #: File stems of the images, in sample order.
        self.stems: list[str] = []
        self._paths: list[dict[str, str]] = []
        self._crop: list[bool] = []
        self._boxes: list[Tensor] = []
        self._labels: list[Tensor] = []
        self._xyxy: list[Tensor] = []
        for name in self._image_names():
            self._index_image(name)
        warn_annotation_issues('DroneVehicle', self.skipped, self.repaired)

    def _find_layout(self, split_dir: str) -> None:
        """Find the split's layout (official XML or DOTA text) and its folders."""
        split = self.split
        xml_dirs = {
            'rgb': os.path.join(split_dir, f'{split}img'),
            'ir': os.path.join(split_dir, f'{split}imgr'),
        }
        dota_dirs = {
            'rgb': os.path.join(split_dir, 'rgb', 'images'),
            'ir': os.path.join(split_dir, 'ir', 'images'),
        }
        if any(os.path.isdir(d) for d in xml_dirs.values()):
            #: ``'xml'`` (official release) or ``'dota'`` (text labels).
            self.layout: Literal['xml', 'dota'] = 'xml'
            self.image_dirs = xml_dirs
            suffix = 'r' if self.label_source == 'ir' else ''
            self.label_dir = os.path.join(split_dir, f'{split}label{suffix}')
            self.label_ext = '.xml'
        elif any(os.path.isdir(d) for d in dota_dirs.values()):
            self.layout = 'dota'
            self.image_dirs = dota_dirs
            self.label_dir = os.path.join(split_dir, self.label_source, 'labels')
            self.label_ext = '.txt'
        else:
            raise DatasetNotFoundError(self)

    def _image_names(self) -> list[str]:
        """The image files of the first modality, sorted; none is an error."""
        first = next(iter(self.modalities))
        listing = (
            os.listdir(self.image_dirs[first])
            if os.path.isdir(self.image_dirs[first])
            else []
        )
        names = sorted(f for f in listing if f.lower().endswith(_IMAGE_EXTENSIONS))
        if not names:
            raise DatasetNotFoundError(self)
        return names

    def _index_image(self, name: str) -> None:
        """Find an image's partners and annotation, read its boxes, record it."""
        stem = os.path.splitext(name)[0]
        paths = {m: self._find_partner(stem, name, m) for m in self.modalities}
        width, height = image_size(paths.values())
        crop = self._has_border(width, height)
        if crop:
            width, height = width - 2 * self.border, height - 2 * self.border
        label_path = os.path.join(self.label_dir, stem + self.label_ext)
        if not os.path.isfile(label_path):
            raise MissingInputError(
                label_path, f'no {self.label_source} annotation file for image {name}'
            )
        if self.layout == 'xml':
            names_, corners = self._parse_xml(label_path)
        else:
            names_, corners = self._parse_dota(label_path)
        if crop:
            corners = corners - self.border
        boxes, labels = self._finish(label_path, names_, corners, width, height)
        self.stems.append(stem)
        self._paths.append(paths)
        self._crop.append(crop)
        self._boxes.append(boxes)
        self._xyxy.append(poly_to_xyxy(boxes))
        self._labels.append(labels)

    def _has_border(self, width: int, height: int) -> bool:
        """Whether an image of this size gets its border removed."""
        return (
            self.crop_border
            and (width, height) != self.content_size
            and width > 2 * self.border
            and height > 2 * self.border
        )

    def _find_partner(self, stem: str, name: str, modality: str) -> str:
        """Return the image of ``modality`` for ``stem``, or raise if absent."""
        folder = self.image_dirs[modality]
        path = os.path.join(folder, name)
        if os.path.isfile(path):
            return path
        for ext in _IMAGE_EXTENSIONS:
            candidate = os.path.join(folder, stem + ext)
            if os.path.isfile(candidate):
                return candidate
        others = [m for m in self.modalities if m != modality]
        raise MissingInputError(
            path,
            f'image {stem} has no {modality} file (partner of its '
            f'{"/".join(others)} image)',
        )

    def _parse_xml(self, path: str) -> tuple[list[str], Tensor]:
        """Parse a Pascal-VOC-like file: raw names and N x 8 corners."""
        annotation = parse_voc(path, self.skipped)
        return annotation.names, annotation.corners

    def _parse_dota(self, path: str) -> tuple[list[str], Tensor]:
        """Parse a DOTA-style text file: raw names and N x 8 corners."""
        names: list[str] = []
        corners: list[list[float]] = []
        with open(path) as f:
            for number, line in enumerate(f, start=1):
                cols = line.split()
                if not cols or cols[0].startswith(('imagesource:', 'gsd:')):
                    continue
                if len(cols) < 9:
                    raise InvalidInputError(
                        path,
                        f'line {number}: expected x1 y1 x2 y2 x3 y3 x4 y4 class '
                        f'[difficulty], got {len(cols)} columns',
                    )
                try:
                    numbers = [float(v) for v in cols[:8]]
                except ValueError as error:
                    raise InvalidInputError(
                        path, f'line {number}: non-numeric coordinate ({error})'
                    ) from error
                rest = cols[8:]
                if len(rest) > 1 and rest[-1].lstrip('-').isdigit():
                    rest = rest[:-1]  # the difficulty flag
                names.append(' '.join(rest))
                corners.append(numbers)
        return names, torch.tensor(corners, dtype=torch.float32).reshape(-1, 8)

    def _finish(
        self, path: str, names: list[str], corners: Tensor, width: int, height: int
    ) -> tuple[Tensor, Tensor]:
        """Map names to labels, clip corners to the image, count what changed."""
        keep: list[int] = []
        labels: list[int] = []
        for i, raw in enumerate(names):
            name = ' '.join(raw.strip().lower().split())
            if name in self.junk_names:
                count_issue(self.skipped, path, 'junk_name')
                continue
            canonical = self.name_map.get(name)
            if canonical is None:
                count_issue(self.skipped, path, f'unknown_name ({raw.strip()})')
                continue
            if canonical != name:
                count_issue(self.repaired, path, f'renamed ({name})')
            keep.append(i)
            labels.append(self.classes.index(canonical))
        corners = corners[keep]
        label_tensor = torch.tensor(labels, dtype=torch.int64)
        xs, ys = corners[:, 0::2], corners[:, 1::2]
        cx, cy = xs.clamp(0, width), ys.clamp(0, height)
        clipped = torch.stack([cx, cy], dim=-1).reshape(-1, 8)
        changed = (clipped != corners).any(dim=1)
        inside = keep_clipped(
            poly_to_xyxy(clipped), changed, path, self.skipped, self.repaired
        )
        return clipped[inside], label_tensor[inside]

    def __len__(self) -> int:
        """Return the number of image pairs in this split.

        Returns:
            Number of samples.
        """
        return len(self.stems)

    def _files(self, index: int) -> list[str]:
        return list(self._paths[index].values())

    def _bands(self) -> list[int]:
        return [self.modality_bands[m] for m in self.modalities]

    def _border(self, index: int) -> int:
        return self.border if self._crop[index] else 0
