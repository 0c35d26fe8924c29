"""HOTC hyperspectral object tracking challenge datasets (2020, 2023, 2024)."""

from __future__ import annotations

import os
import re
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from matplotlib import patches
from matplotlib import pyplot as plt
from matplotlib.figure import Figure
from torch import Tensor
from torch.utils.data import Dataset
from torchgeo.datasets import DatasetNotFoundError, NonGeoDataset

from ..errors import InvalidInputError

Sample = dict[str, Any]

_IMAGE_SUFFIXES = ('.png', '.jpg', '.jpeg', '.bmp', '.tif', '.tiff')
_SEPARATORS = re.compile(r'[\s,;]+')


def demosaic(
    frame: np.ndarray, factor: int, path: str | os.PathLike[str] | None = None
) -> np.ndarray:
    """Rearrange a snapshot-mosaic frame into a band-first cube.

    With ``c = factor``, band ``k`` of cube pixel ``(i, j)`` is
    ``frame[c * i + k // c, c * j + k % c]``.

    Args:
        frame: H' x W' mosaic frame (H' and W' multiples of ``factor``).
        factor: Mosaic size (4 for the 4 x 4 VIS/RedNIR sensors, 5 for NIR).
        path: The frame's file, for error messages.

    Returns:
        ``factor**2`` x H'/c x W'/c array of the frame's dtype.

    Raises:
        InvalidInputError: If the frame is not 2-D or its size is not a
            multiple of ``factor``.
    """
    if frame.ndim != 2:
        raise InvalidInputError(
            path, f'mosaic frame must be 2-D, got shape {frame.shape}'
        )
    height, width = frame.shape
    if height % factor or width % factor:
        raise InvalidInputError(
            path,
            f'mosaic frame of {height} x {width} px is not divisible by the '
            f'{factor} x {factor} mosaic',
        )
    h, w = height // factor, width // factor
    cube = frame.reshape(h, factor, w, factor).transpose(1, 3, 0, 2)
    return cube.reshape(factor * factor, h, w)


def parse_boxes(path: str | os.PathLike[str]) -> np.ndarray:
    """Read an OTB-style ``x y w h`` box file.

    Values may be separated by tabs, commas, semicolons or spaces, with
    trailing separators; blank lines are ignored. ``NaN`` is accepted
    (target absent).

    Args:
        path: ``groundtruth_rect.txt`` or ``init_rect.txt``.

    Returns:
        float32 N x 4 array of ``x, y, w, h``.

    Raises:
        InvalidInputError: On a line without exactly four numbers (the
            message names the file and the line).
    """
    path = Path(path)
    rows: list[list[float]] = []
    for number, line in enumerate(path.read_text(errors='replace').splitlines(), 1):
        tokens = [t for t in _SEPARATORS.split(line.strip()) if t]
        if not tokens:
            continue
        try:
            values = [float(t) for t in tokens]
        except ValueError:
            values = []
        if len(values) != 4:
            raise InvalidInputError(
                path,
                f'line {number}: expected 4 numbers "x y w h", got {line.strip()!r}',
            )
        rows.append(values)
    return np.asarray(rows, dtype=np.float32).reshape(-1, 4)


def read_frame(path: str | os.PathLike[str]) -> np.ndarray:
    """Read an image file with its stored bit depth (8- or 16-bit kept).

    Args:
        path: PNG/JPEG frame.

    Returns:
        H x W or H x W x 3 array (uint8, uint16 or int32 as stored).
    """
    from PIL import Image

    try:
        with Image.open(path) as img:
            array = np.asarray(img)
    except OSError as err:
        raise InvalidInputError(path, f'cannot read image ({err})') from err
    return array


@dataclass
class HOTCSequence:
    """One video of HOTC.

    Attributes:
        name: Sequence name (folder name).
        frames: Frame files in temporal order.
        boxes: float32 N x 4 ``x, y, w, h`` boxes in the modality's pixel
            coordinates (cube coordinates for ``'hsi'``), one per frame, or
            only the first frame's box for ranking sets (``init_rect.txt``).
        annotation: The box file read.
        sources: Frame files of every requested modality (same order and
            length as ``frames``, which are those of the first modality).
    """

    name: str
    frames: list[Path]
    boxes: Tensor
    annotation: Path
    sources: dict[str, list[Path]]

    def __len__(self) -> int:
        """Number of frames."""
        return len(self.frames)


class HOTC(NonGeoDataset):
    """HOTC hyperspectral object tracking challenge datasets.

    The `HOTC <https://www.hsitracking.com>`__ challenges provide videos from
    XIMEA snapshot-mosaic hyperspectral cameras, each with a false-colour
    rendering and, for 2020, an RGB video.

    Dataset format. ``root`` is one year's dataset directory:

    * 2020 (VIS camera, 16 bands 470-620 nm)::

          <split>/<sequence>/HSI/0001.png             4 x 4 mosaic frames
          <split>/<sequence>/HSI-FalseColor/0001.jpg
          <split>/<sequence>/RGB/0001.jpg
          (each folder with its own groundtruth_rect.txt)

    * 2023 / 2024 (VIS 16 bands, NIR 25 bands, RedNIR 15 bands)::

          <split>/HSI-VIS/<sequence>/0001.png + groundtruth_rect.txt
          <split>/HSI-VIS-FalseColor/<sequence>/0001.jpg + groundtruth_rect.txt
          <split>/HSI-NIR/..., HSI-NIR-FalseColor/..., HSI-RedNIR/..., HSI-RedNIR-FalseColor/...

      Ranking sets ship ``init_rect.txt`` (first frame only) instead.

    Split folder names tried, in order: ``train`` -> ``training``, ``train``;
    ``val`` -> ``validation``, ``val``; ``test`` -> ``test``, ``testing``,
    ``ranking`` (2020: ``training``/``train`` and ``test``/``testing``/``validation``).

    Hyperspectral frames are demosaiced (band ``k`` of cube pixel ``(i, j)``
    is ``frame[c*i + k//c, c*j + k%c]``, ``c`` = 4 for VIS and RedNIR, 5 for
    NIR, see :func:`demosaic`); RedNIR's empty 16th band is dropped. PNGs are
    read with their stored bit depth (8 or 16 bit) and each hyperspectral
    frame is divided by its own maximum (``normalize=True``); false-colour
    and RGB frames are divided by 255 (65535 if 16-bit).

    ``groundtruth_rect.txt`` holds one ``x y w h`` line per frame, with tabs
    (often a trailing tab), commas or spaces; boxes are in the coordinates of
    the modality's frames (cube coordinates for ``'hsi'``).

    Several modalities can be stacked into one ``image``
    (``modality=('falsecolor', 'hsi')``, frames must have the same size);
    ``modalities`` maps each to its band indices.

    Access patterns:

    * ``dataset[i]``: frame ``i`` of all frames of all sequences, with
      ``image`` (float32 C x H x W), ``bbox_xyxy`` (float32 1 x 4, or 0 x 4
      where the box is unknown or the target absent), ``label`` (int64, 0),
      ``sequence`` and ``frame`` (int64 indices).
    * :meth:`sequence`: a view of one video (frames + boxes) for evaluation.
    * :class:`~torchgeo_ext.samplers.tracking.TrackingPairSampler` and
      :class:`~torchgeo_ext.samplers.tracking.TrackingPairDataset`: template
      and search crops for training trackers.

    Dataset classes:

    0. target

    If you use this dataset in your research, please cite:

    * https://arxiv.org/abs/1812.04179 (Xiong, Zhou, Qian, IEEE TIP 2020)
    """

    years = (2020, 2023, 2024)
    cameras = ('vis', 'nir', 'rednir')
    modality_names = ('hsi', 'falsecolor', 'rgb')
    classes = ('target',)

    mosaic_factors: ClassVar[dict[str, int]] = {'vis': 4, 'nir': 5, 'rednir': 4}
    num_bands: ClassVar[dict[str, int]] = {'vis': 16, 'nir': 25, 'rednir': 15}
    split_folders: ClassVar[dict[str, tuple[str, ...]]] = {
        'train': ('training', 'train'),
        'val': ('validation', 'val'),
        'test': ('test', 'testing', 'ranking'),
    }
    folders_2020: ClassVar[dict[str, str]] = {
        'hsi': 'HSI',
        'falsecolor': 'HSI-FalseColor',
        'rgb': 'RGB',
    }
    camera_folders: ClassVar[dict[str, str]] = {
        'vis': 'HSI-VIS',
        'nir': 'HSI-NIR',
        'rednir': 'HSI-RedNIR',
    }

    def __init__(
        self,
        root: str | os.PathLike[str] = 'data',
        year: int = 2020,
        split: str = 'train',
        camera: str = 'vis',
        modality: str | Sequence[str] = 'hsi',
        transforms: Callable[[Sample], Sample] | None = None,
        normalize: bool = True,
    ) -> None:
        """Initialise a new HOTC dataset instance.

        Args:
            root: The year's dataset directory.
            year: 2020, 2023 or 2024.
            split: ``'train'``, ``'val'`` (2023/2024) or ``'test'``.
            camera: ``'vis'``, ``'nir'`` or ``'rednir'`` (2020: ``'vis'`` only).
            modality: ``'hsi'``, ``'falsecolor'`` or ``'rgb'`` (2020 only), or
                several of them, stacked in the given order into one ``image``
                (e.g. ``('falsecolor', 'hsi')``: 3 + 16 bands); boxes come
                from the first one. :attr:`modalities` gives the band indices.
            transforms: A function/transform that takes a sample and returns a
                transformed version.
            normalize: Scale each frame as described above (else raw values).

        Raises:
            ValueError: If an argument is invalid.
            DatasetNotFoundError: If the split's sequences are not found.
            InvalidInputError: If a box file is malformed or has fewer lines
                than its sequence has frames.
        """
        if year not in self.years:
            raise ValueError(f'year must be one of {self.years}, got {year!r}')
        if split not in self.split_folders or (year == 2020 and split == 'val'):
            raise ValueError(f'invalid split {split!r} for HOTC {year}')
        if camera not in self.cameras:
            raise ValueError(f'camera must be one of {self.cameras}, got {camera!r}')
        names = (modality,) if isinstance(modality, str) else tuple(modality)
        if not names or len(set(names)) != len(names):
            raise ValueError(f'invalid modality {modality!r}')
        for name in names:
            if name not in self.modality_names:
                raise ValueError(
                    f'modality must be one of {self.modality_names}, got {name!r}'
                )
        if year == 2020 and camera != 'vis':
            raise ValueError('HOTC 2020 has the VIS camera only')
        if year != 2020 and 'rgb' in names:
            raise ValueError('RGB videos exist for HOTC 2020 only')
        self.modality_list = names
        self.modalities: dict[str, list[int]] = {}
        start = 0
        for name in names:
            count = self.num_bands[camera] if name == 'hsi' else 3
            self.modalities[name] = list(range(start, start + count))
            start += count
        self.root = Path(root)
        self.year = year
        self.split = split
        self.camera = camera
        self.modality = modality
        self.transforms = transforms
        self.normalize = normalize
        self.sequences = self._find_sequences()
        if not self.sequences or not any(len(s) for s in self.sequences):
            raise DatasetNotFoundError(self)
        self._starts = np.cumsum([0] + [len(s) for s in self.sequences])

    def _split_dir(self) -> Path | None:
        names = self.split_folders[self.split]
        if self.year == 2020:
            # some 2020 copies name the test set "validation"
            names = tuple('validation' if n == 'ranking' else n for n in names)
        for name in names:
            if (self.root / name).is_dir():
                return self.root / name
        return None

    def _sequence_dirs(self, modality: str) -> list[Path]:
        split_dir = self._split_dir()
        if split_dir is None:
            return []
        if self.year == 2020:
            sub = self.folders_2020[modality]
            return [d / sub for d in sorted(split_dir.iterdir()) if (d / sub).is_dir()]
        folder = self.camera_folders[self.camera]
        if modality == 'falsecolor':
            folder += '-FalseColor'
        base = split_dir / folder
        if not base.is_dir():
            return []
        return [d for d in sorted(base.iterdir()) if d.is_dir()]

    def _sequence_name(self, folder: Path) -> str:
        return folder.parent.name if self.year == 2020 else folder.name

    @staticmethod
    def _frames(folder: Path) -> list[Path]:
        return sorted(
            (p for p in folder.iterdir() if p.suffix.lower() in _IMAGE_SUFFIXES),
            key=lambda p: (int(p.stem) if p.stem.isdigit() else 0, p.name),
        )

    def _find_sequences(self) -> list[HOTCSequence]:
        sequences = []
        others = {
            m: {self._sequence_name(d): d for d in self._sequence_dirs(m)}
            for m in self.modality_list[1:]
        }
        for folder in self._sequence_dirs(self.modality_list[0]):
            frames = self._frames(folder)
            if not frames:
                continue
            name = self._sequence_name(folder)
            sources = {self.modality_list[0]: frames}
            for modality, dirs in others.items():
                if name not in dirs:
                    raise InvalidInputError(
                        folder, f'sequence {name!r} has no {modality!r} counterpart'
                    )
                partner = self._frames(dirs[name])
                if len(partner) != len(frames):
                    raise InvalidInputError(
                        dirs[name],
                        f'{len(partner)} {modality} frames, {len(frames)} in {folder}',
                    )
                sources[modality] = partner
            candidates = [folder / 'groundtruth_rect.txt', folder / 'init_rect.txt']
            if self.year == 2020:
                candidates.insert(1, folder.parent / 'groundtruth_rect.txt')
            annotation = next((c for c in candidates if c.is_file()), None)
            if annotation is None:
                raise InvalidInputError(
                    folder, 'no groundtruth_rect.txt or init_rect.txt for this sequence'
                )
            boxes = parse_boxes(annotation)
            if annotation.name == 'init_rect.txt':
                if len(boxes) < 1:
                    raise InvalidInputError(annotation, 'no initial box')
                boxes = boxes[:1]
            elif len(boxes) < len(frames):
                raise InvalidInputError(
                    annotation,
                    f'{len(boxes)} boxes for {len(frames)} frames in {folder}',
                )
            elif len(boxes) > len(frames):
                warnings.warn(
                    f'{annotation}: {len(boxes)} boxes for {len(frames)} frames; '
                    f'the last {len(boxes) - len(frames)} ignored',
                    UserWarning,
                    stacklevel=3,
                )
                boxes = boxes[: len(frames)]
            sequences.append(
                HOTCSequence(name, frames, torch.from_numpy(boxes), annotation, sources)
            )
        return sequences

    def __len__(self) -> int:
        """Return the number of frames in the dataset.

        Returns:
            Length of the dataset.
        """
        return int(self._starts[-1])

    def locate(self, index: int) -> tuple[int, int]:
        """Map a flat frame index to ``(sequence, frame)``.

        Args:
            index: Index into the dataset.

        Returns:
            The sequence index and the frame index within it.
        """
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(f'index {index} out of range for {len(self)} frames')
        seq = int(np.searchsorted(self._starts, index, side='right')) - 1
        return seq, index - int(self._starts[seq])

    def load_frame(self, sequence: int, frame: int) -> Tensor:
        """Read one frame as a float32 C x H x W tensor.

        Args:
            sequence: Sequence index.
            frame: Frame index within the sequence.

        Returns:
            The (demosaiced, normalised) frame, modalities stacked.
        """
        record = self.sequences[sequence]
        parts: list[Tensor] = []
        for modality in self.modality_list:
            path = record.sources[modality][frame]
            part = self._load(path, modality)
            if parts and part.shape[1:] != parts[0].shape[1:]:
                first = record.sources[self.modality_list[0]][frame]
                raise InvalidInputError(
                    path,
                    f'{modality} frame is {tuple(part.shape[1:])} px, '
                    f'{first.name} ({self.modality_list[0]}) is '
                    f'{tuple(parts[0].shape[1:])}: cannot stack',
                )
            parts.append(part)
        if len(parts) == 1:
            return parts[0]
        return torch.cat(parts)

    def _load(self, path: Path, modality: str) -> Tensor:
        array = read_frame(path)
        if modality == 'hsi':
            if array.ndim == 3:  # a mosaic saved as RGB(A): channels are copies
                array = array[..., 0]
            cube = demosaic(array, self.mosaic_factors[self.camera], path)
            cube = cube[: self.num_bands[self.camera]]  # RedNIR: drop band 16
            image = cube.astype(np.float32)
            if self.normalize:
                peak = float(image.max())
                if peak > 0:
                    image /= peak
        else:
            if array.ndim == 2:
                array = np.repeat(array[..., None], 3, axis=2)
            image = np.ascontiguousarray(array[..., :3].transpose(2, 0, 1)).astype(
                np.float32
            )
            if self.normalize:
                image /= 65535.0 if array.dtype == np.uint16 else 255.0
        return torch.from_numpy(np.ascontiguousarray(image))

    def box(self, sequence: int, frame: int) -> Tensor:
        """The ``x, y, w, h`` box of a frame (NaN where unknown).

        Args:
            sequence: Sequence index.
            frame: Frame index within the sequence.

        Returns:
            float32 (4,).
        """
        boxes = self.sequences[sequence].boxes
        if frame < len(boxes):
            return boxes[frame]
        return torch.full((4,), float('nan'))

    def get_frame(self, sequence: int, frame: int) -> Sample:
        """Return the sample of one frame of one sequence.

        Args:
            sequence: Sequence index.
            frame: Frame index within the sequence.

        Returns:
            The sample (see the class docstring).
        """
        box = self.box(sequence, frame)
        valid = bool(torch.isfinite(box).all() and box[2] > 0 and box[3] > 0)
        xyxy = torch.cat([box[:2], box[:2] + box[2:]]).unsqueeze(0)
        sample: Sample = {
            'image': self.load_frame(sequence, frame),
            'bbox_xyxy': xyxy if valid else torch.zeros(0, 4),
            'label': torch.zeros(1 if valid else 0, dtype=torch.int64),
            'sequence': torch.tensor(sequence),
            'frame': torch.tensor(frame),
        }
        if self.transforms is not None:
            sample = self.transforms(sample)
        return sample

    def __getitem__(self, index: int) -> Sample:
        """Return an index within the dataset.

        Args:
            index: Index to return.

        Returns:
            Data and label at that index.
        """
        return self.get_frame(*self.locate(index))

    def sequence(self, index: int) -> HOTCSequenceView:
        """A view of one video: its frames in order and its boxes.

        Args:
            index: Sequence index.

        Returns:
            The view.
        """
        return HOTCSequenceView(self, index)

    def plot(
        self,
        sample: Sample,
        show_titles: bool = True,
        suptitle: str | None = None,
        rgb_bands: Sequence[int] | None = None,
    ) -> Figure:
        """Plot a frame with its box (green) and predicted box (red) if any.

        Args:
            sample: A sample returned by :meth:`__getitem__`.
            show_titles: Flag indicating whether to show titles above each panel.
            suptitle: Optional string to use as a suptitle.
            rgb_bands: Bands shown for hyperspectral frames (default: last,
                middle and first band as red, green, blue).

        Returns:
            A matplotlib Figure with the rendered sample.
        """
        image = np.asarray(sample['image'], dtype=np.float64)
        colour = self.modalities.get('falsecolor', self.modalities.get('rgb'))
        if rgb_bands is None and colour is not None and image.shape[0] > max(colour):
            rgb = image[colour]
        else:
            c = image.shape[0]
            rgb = image[list(rgb_bands or (c - 1, c // 2, 0))]
        lo, hi = rgb.min(), rgb.max()
        rgb = (rgb - lo) / (hi - lo) if hi > lo else np.zeros_like(rgb)
        fig, ax = plt.subplots(figsize=(6, 6))
        ax.imshow(np.transpose(rgb, (1, 2, 0)))
        for key, edge in (('bbox_xyxy', 'lime'), ('prediction_bbox_xyxy', 'red')):
            for x1, y1, x2, y2 in np.asarray(sample.get(key, np.zeros((0, 4)))).reshape(
                -1, 4
            ):
                ax.add_patch(
                    patches.Rectangle(
                        (x1, y1),
                        x2 - x1,
                        y2 - y1,
                        fill=False,
                        edgecolor=edge,
                        linewidth=2,
                    )
                )
        ax.axis('off')
        if show_titles:
            title = 'Ground truth (green)'
            if 'prediction_bbox_xyxy' in sample:
                title += ', prediction (red)'
            ax.set_title(title)
        if suptitle is not None:
            plt.suptitle(suptitle)
        return fig


class HOTCSequenceView(Dataset[Sample]):
    """One HOTC video as a dataset of its frames (for evaluation).

    Attributes:
        name: Sequence name.
        boxes: float32 N x 4 ``x, y, w, h`` ground truth (or 1 x 4 initial box).
        init_box: The first frame's box.
    """

    def __init__(self, dataset: HOTC, index: int) -> None:
        """Initialise a new view.

        Args:
            dataset: The HOTC dataset.
            index: Sequence index.
        """
        self.dataset = dataset
        self.index = index
        record = dataset.sequences[index]
        self.name = record.name
        self.boxes = record.boxes
        self.init_box = record.boxes[0]

    def __len__(self) -> int:
        """Number of frames."""
        return len(self.dataset.sequences[self.index])

    def __getitem__(self, frame: int) -> Sample:
        """Return one frame's sample.

        Args:
            frame: Frame index.

        Returns:
            The sample.
        """
        if not -len(self) <= frame < len(self):
            raise IndexError(f'frame {frame} out of range for {len(self)} frames')
        return self.dataset.get_frame(self.index, frame % len(self))
