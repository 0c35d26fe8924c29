"""HAD100 hyperspectral anomaly-detection dataset."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from matplotlib import pyplot as plt
from matplotlib.figure import Figure
from torch import Tensor
from torchgeo.datasets import DatasetNotFoundError, NonGeoDataset

from ..errors import InvalidInputError, MissingInputError
from .hyperspectral import (
    AVIRIS_BANDS,
    AVIRIS_NG_BANDS,
    AVIRIS_NG_NUM_BANDS,
    AVIRIS_NUM_BANDS,
    HyperspectralScene,
    fill_nodata,
    nodata_mask,
    read_mat_mask,
)

Sample = dict[str, Any]


def false_colour(image: Tensor | np.ndarray, bands: Sequence[int]) -> np.ndarray:
    """Stretch three bands of a C x H x W cube to an H x W x 3 image in [0, 1].

    Each channel is stretched between its 2nd and 98th percentiles.

    Args:
        image: The cube.
        bands: Three band indices (red, green, blue).

    Returns:
        float H x W x 3 array.
    """
    array = np.asarray(image, dtype=np.float64)[list(bands)]
    out = np.empty_like(array)
    for i, band in enumerate(array):
        lo, hi = np.percentile(band, (2, 98))
        out[i] = np.clip((band - lo) / (hi - lo), 0, 1) if hi > lo else 0.0
    return np.transpose(out, (1, 2, 0))


class HAD100(NonGeoDataset):
    """HAD100 hyperspectral anomaly-detection dataset.

    The `HAD100 <https://zhaoxuli123.github.io/HAD100/>`__ benchmark ("You Only
    Train Once") gathers AVIRIS-NG test scenes with annotated anomalies and
    anomaly-free training scenes from AVIRIS-NG and AVIRIS-Classic.

    Dataset format (three layouts, chosen with ``layout``):

    * ``'raw'``, the official archive::

          data/aviris_ng_target/<flightline>_<n>.hdr/.dat   test, 425 bands, ENVI
          data/aviris_ng_normal/*.hdr/.dat                  train, 425 bands
          data/aviris_normal/*.hdr/.dat                     train, 224 bands
          gt/aviris_ng_gt/<flightline>_<n>.mat              test masks (key ``gt``)

      ENVI cubes in BIL or BIP, int16 or float32, with UTM ``map info``:
      samples carry ``crs`` and ``transform`` so predictions can be exported
      as GeoTIFF. The official band selection (425 -> 276 AVIRIS-NG bands,
      224 -> 162 AVIRIS-Classic bands, see
      :data:`~torchgeo_ext.datasets.hyperspectral.AVIRIS_NG_BANDS`) is applied
      unless ``official_bands=False``. The raw test scenes are the *uncropped*
      scenes (64 x 64 to 120 x 120 px); the 100 64 x 64 patches of the paper
      are cut from them by the authors' script. Values are left as stored (no
      reflectance scaling of the int16 files).
    * ``'processed'``, the layout later papers use::

          train/aviris_ng/*.npy  train/aviris/*.npy  test/aviris_ng/*.npy   (H x W x C)
          ground_truth/aviris_ng/<stem>.png   (3-channel PNG, mask in channel 1)

    * ``'mat'``, STAD's copy: ``mat/without_anomaly/*.mat`` (train) and
      ``mat/with_anomaly/*.mat`` (test), keys ``data`` (H x W x C) and ``map``
      (H x W). The folders may hold one subfolder per sensor
      (``mat/with_anomaly/aviris_ng/``); otherwise ``sensor`` is not used.

    No-data values (-9999, 1e-34, the header's ``data ignore value``, non-finite
    values) are replaced by the band's mean over its valid pixels and flagged
    in ``valid_mask`` (False where any band was no-data).

    Sample keys: ``image`` float32 C x H x W; ``mask`` int64 H x W (1 anomaly,
    0 background; test split only); ``valid_mask`` bool H x W; ``crs`` (str)
    and ``transform`` (float64, 6 rasterio affine coefficients) for raw scenes.

    Dataset classes:

    0. background
    1. anomaly

    If you use this dataset in your research, please cite:

    * https://ieeexplore.ieee.org/document/10073635 (Li et al., IEEE TGRS 2023)
    """

    splits = ('train', 'test')
    sensors = ('aviris_ng', 'aviris')
    layouts = ('raw', 'processed', 'mat')
    classes = ('background', 'anomaly')

    raw_folders: ClassVar[dict[tuple[str, str], str]] = {
        ('train', 'aviris_ng'): 'aviris_ng_normal',
        ('train', 'aviris'): 'aviris_normal',
        ('test', 'aviris_ng'): 'aviris_ng_target',
    }
    raw_band_counts: ClassVar[dict[str, int]] = {
        'aviris_ng': AVIRIS_NG_NUM_BANDS,
        'aviris': AVIRIS_NUM_BANDS,
    }
    official_band_selection: ClassVar[dict[str, tuple[int, ...]]] = {
        'aviris_ng': AVIRIS_NG_BANDS,
        'aviris': AVIRIS_BANDS,
    }
    #: Approximate 650/550/460 nm bands after the official selection.
    official_rgb_bands: ClassVar[dict[str, tuple[int, int, int]]] = {
        'aviris_ng': (39, 19, 2),
        'aviris': (22, 11, 2),
    }

    def __init__(
        self,
        root: str | os.PathLike[str] = 'data',
        split: str = 'train',
        sensor: str = 'aviris_ng',
        layout: str = 'raw',
        bands: int | Sequence[int] | None = None,
        transforms: Callable[[Sample], Sample] | None = None,
        official_bands: bool = True,
    ) -> None:
        """Initialise a new HAD100 dataset instance.

        Args:
            root: Root directory of the layout.
            split: ``'train'`` (anomaly-free) or ``'test'``.
            sensor: ``'aviris_ng'`` or ``'aviris'`` (AVIRIS-Classic, train only).
            layout: ``'raw'``, ``'processed'`` or ``'mat'``.
            bands: None for all bands, an int N for the first N bands (as the
                papers do), or a sequence of band indices. For the raw layout
                these index the bands left by the official selection.
            transforms: A function/transform that takes a sample and returns a
                transformed version.
            official_bands: Apply the official band selection to raw scenes.

        Raises:
            ValueError: If an argument is invalid.
            DatasetNotFoundError: If the layout's files are not found.
        """
        if split not in self.splits:
            raise ValueError(f'split must be one of {self.splits}, got {split!r}')
        if sensor not in self.sensors:
            raise ValueError(f'sensor must be one of {self.sensors}, got {sensor!r}')
        if layout not in self.layouts:
            raise ValueError(f'layout must be one of {self.layouts}, got {layout!r}')
        if split == 'test' and sensor == 'aviris' and layout != 'mat':
            raise ValueError('HAD100 has test scenes for sensor="aviris_ng" only')
        if isinstance(bands, bool) or (isinstance(bands, int) and bands < 1):
            raise ValueError(f'bands must be a positive int or a sequence: {bands!r}')
        self.root = Path(root)
        self.split = split
        self.sensor = sensor
        self.layout = layout
        self.bands = bands
        self.transforms = transforms
        self.official_bands = official_bands
        self.files = self._find_files()
        if not self.files:
            raise DatasetNotFoundError(self)

    def _find_files(self) -> list[Path]:
        if self.layout == 'raw':
            folder = self.root / 'data' / self.raw_folders[self.split, self.sensor]
            return sorted(folder.glob('*.hdr'))
        if self.layout == 'processed':
            return sorted((self.root / self.split / self.sensor).glob('*.npy'))
        name = 'without_anomaly' if self.split == 'train' else 'with_anomaly'
        folder = self.root / 'mat' / name
        if (folder / self.sensor).is_dir():
            folder = folder / self.sensor
        return sorted(folder.glob('*.mat'))

    def _band_indices(self, count: int, path: Path) -> list[int] | None:
        """Band indices to keep given ``count`` available bands."""
        if self.bands is None:
            return None
        if isinstance(self.bands, int):
            if self.bands > count:
                raise InvalidInputError(
                    path, f'{self.bands} bands requested, only {count} available'
                )
            return list(range(self.bands))
        bands = [int(b) for b in self.bands]
        wrong = [b for b in bands if not 0 <= b < count]
        if wrong:
            raise InvalidInputError(
                path, f'band index {wrong[0]} out of range: {count} bands available'
            )
        return bands

    def __len__(self) -> int:
        """Return the number of scenes in the dataset.

        Returns:
            Length of the dataset.
        """
        return len(self.files)

    def __getitem__(self, index: int) -> Sample:
        """Return an index within the dataset.

        Args:
            index: Index to return.

        Returns:
            Data and label at that index.
        """
        path = self.files[index]
        if self.layout == 'raw':
            sample = self._load_raw(path)
        elif self.layout == 'processed':
            sample = self._load_processed(path)
        else:
            sample = self._load_mat(path)
        if self.split == 'train':
            sample.pop('mask', None)
        if self.transforms is not None:
            sample = self.transforms(sample)
        return sample

    def _load_raw(self, path: Path) -> Sample:
        expected = self.raw_band_counts[self.sensor]
        if self.official_bands:
            selection = list(self.official_band_selection[self.sensor])
        else:
            selection = list(range(expected))
        chosen = self._band_indices(len(selection), path)
        if chosen is not None:
            selection = [selection[i] for i in chosen]
        scene = HyperspectralScene(path, bands=selection, expected_bands=expected)
        sample = scene.to_sample()
        if self.split == 'test':
            gt = self.root / 'gt' / 'aviris_ng_gt' / f'{path.stem}.mat'
            if not gt.is_file():
                raise MissingInputError(gt, f'ground truth of {path.name} not found')
            mask = read_mat_mask(gt)
            if mask.shape != scene.image.shape[1:]:
                raise InvalidInputError(
                    gt, f'mask is {mask.shape}, scene is {scene.image.shape[1:]}'
                )
            sample['mask'] = torch.from_numpy(mask)
        return sample

    def _finish(self, path: Path, image: np.ndarray) -> Sample:
        """Select bands, fill no-data, build the sample from a C x H x W cube."""
        chosen = self._band_indices(image.shape[0], path)
        if chosen is not None:
            image = image[chosen]
        image = np.ascontiguousarray(image)
        bad = nodata_mask(image)
        image = fill_nodata(image.astype(np.float32), bad)
        return {
            'image': torch.from_numpy(image),
            'valid_mask': torch.from_numpy(~bad.any(axis=0)),
        }

    def _load_processed(self, path: Path) -> Sample:
        try:
            array = np.load(path)
        except (OSError, ValueError) as err:
            raise InvalidInputError(path, f'not a readable .npy file ({err})') from err
        if array.ndim != 3:
            raise InvalidInputError(
                path, f'expected H x W x C, got shape {array.shape}'
            )
        sample = self._finish(path, np.transpose(array, (2, 0, 1)))
        if self.split == 'test':
            from PIL import Image

            png = self.root / 'ground_truth' / self.sensor / f'{path.stem}.png'
            if not png.is_file():
                raise MissingInputError(png, f'ground truth of {path.name} not found')
            with Image.open(png) as img:
                gt = np.asarray(img)
            gt = gt[..., 1] if gt.ndim == 3 else gt
            if gt.shape != array.shape[:2]:
                raise InvalidInputError(
                    png, f'mask is {gt.shape}, image is {array.shape[:2]}'
                )
            sample['mask'] = torch.from_numpy((gt > 0).astype(np.int64))
        return sample

    def _load_mat(self, path: Path) -> Sample:
        bands: list[int] | None = None
        if isinstance(self.bands, int):
            bands = list(range(self.bands))
        elif self.bands is not None:
            bands = [int(b) for b in self.bands]
        scene = HyperspectralScene(path, bands=bands)
        sample = scene.to_sample()
        if self.split == 'test' and 'mask' not in sample:
            raise InvalidInputError(path, 'test scene without a "map" array')
        return sample

    def plot(
        self,
        sample: Sample,
        show_titles: bool = True,
        suptitle: str | None = None,
        rgb_bands: Sequence[int] | None = None,
    ) -> Figure:
        """Plot a sample from the dataset.

        Args:
            sample: A sample returned by :meth:`__getitem__`.
            show_titles: Flag indicating whether to show titles above each panel.
            suptitle: Optional string to use as a suptitle.
            rgb_bands: Band indices for the false-colour composite (default:
                about 650/550/460 nm for the official selection, else three
                bands spread over the spectrum).

        Returns:
            A matplotlib Figure with the rendered sample.
        """
        image = sample['image']
        num_bands = image.shape[0]
        if rgb_bands is None:
            default = self.official_rgb_bands[self.sensor]
            if (
                self.layout == 'raw'
                and self.official_bands
                and self.bands is None
                and max(default) < num_bands
            ):
                rgb_bands = default
            else:
                rgb_bands = [round((num_bands - 1) * f) for f in (0.9, 0.5, 0.1)]
        panels: list[tuple[str, np.ndarray, str | None]] = [
            ('Image', false_colour(image, rgb_bands), None)
        ]
        if 'mask' in sample:
            panels.append(('Mask', np.asarray(sample['mask']), 'gray'))
        if 'prediction' in sample:
            prediction = np.asarray(sample['prediction'], dtype=np.float64)
            panels.append(('Prediction', prediction.squeeze(), 'viridis'))
        fig, axs = plt.subplots(1, len(panels), figsize=(4 * len(panels), 4))
        axes = np.atleast_1d(axs)
        for ax, (title, array, cmap) in zip(axes, panels):
            ax.imshow(array, cmap=cmap, interpolation='nearest')
            ax.axis('off')
            if show_titles:
                ax.set_title(title)
        if suptitle is not None:
            plt.suptitle(suptitle)
        return fig
