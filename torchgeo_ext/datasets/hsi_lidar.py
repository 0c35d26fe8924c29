"""Base class of the hyperspectral + LiDAR land-cover benchmarks (Houston2013, Trento, MUUFL)."""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from matplotlib import pyplot as plt
from matplotlib.figure import Figure
from numpy.typing import NDArray
from torch import Tensor
from torchgeo.datasets import DatasetNotFoundError, NonGeoDataset

from ..errors import InvalidInputError, MissingInputError
from .had100 import false_colour

Sample = dict[str, Any]

#: Roles of the variables of a release.
ROLES = ('hsi', 'lidar', 'train', 'test', 'gt')


def _mat_variables(path: Path) -> dict[str, tuple[int, ...]]:
    """Names and shapes (MATLAB order) of the numeric variables of a ``.mat`` file."""
    import h5py
    import scipy.io

    if h5py.is_hdf5(path):
        with h5py.File(path, 'r') as f:
            return {
                k: tuple(reversed(v.shape))
                for k, v in f.items()
                if isinstance(v, h5py.Dataset) and v.dtype.kind in 'biuf'
            }
    try:
        found = scipy.io.whosmat(path)
    except Exception as err:  # SciPy raises several types for corrupt files
        raise InvalidInputError(path, f'not a readable MATLAB file ({err})') from err
    numeric = {
        'double',
        'single',
        'int8',
        'uint8',
        'int16',
        'uint16',
        'int32',
        'uint32',
        'int64',
        'uint64',
        'logical',
    }
    return {name: tuple(shape) for name, shape, kind in found if kind in numeric}


def _read_mat_variable(path: Path, name: str) -> NDArray[Any]:
    """Read one variable of a ``.mat`` file in MATLAB axis order."""
    import h5py
    import scipy.io

    if h5py.is_hdf5(path):
        with h5py.File(path, 'r') as f:
            return np.asarray(f[name][()]).T
    try:
        return np.asarray(scipy.io.loadmat(path, variable_names=[name])[name])
    except Exception as err:
        raise InvalidInputError(path, f'cannot read variable {name!r} ({err})') from err


def minmax_normalize(cube: NDArray[np.float32]) -> tuple[list[float], list[float]]:
    """Scale each band of a C x H x W cube to [0, 1] over the whole scene, in place.

    Constant bands become 0. This is the normalisation of the MIViT and
    M3amba code.

    Args:
        cube: The cube (modified in place).

    Returns:
        Per band ``offset`` (minimum) and ``scale`` (range, 1 for constant
        bands): ``normalised = (raw - offset) / scale``.
    """
    offsets, scales = [], []
    for band in cube:
        lo, hi = float(band.min()), float(band.max())
        band -= lo
        if hi > lo:
            band /= hi - lo
        offsets.append(lo)
        scales.append(hi - lo if hi > lo else 1.0)
    return offsets, scales


class HSILiDARDataset(NonGeoDataset):
    """Patches around the labelled pixels of a hyperspectral + LiDAR scene.

    Each benchmark is one scene: a hyperspectral cube, one or more co-registered
    LiDAR rasters and label maps (training and test pixels, or one ground-truth
    map). Subclasses set the class attributes: ``classes``, ``hsi_bands``,
    ``scene_shape``, the variable names per role and ``geotiff_files``.

    Releases differ in file and variable names, so the reader looks for each part
    by its *variable name* in every ``.mat`` file of ``root`` (case-insensitive,
    names listed per dataset in ``hsi_keys``, ``lidar_keys``, ``train_keys``,
    ``test_keys``, ``gt_keys``) or, for the GeoTIFF releases, by file name
    (``geotiff_files``). MATLAB v5 files are read with SciPy, v7.3 (HDF5) files
    with h5py (axes reversed back to MATLAB order).

    Sample keys: ``image`` float32 (HSI + LiDAR bands) x ``patch_size`` x
    ``patch_size``; ``label`` int64 scalar (0-based class); ``row`` and
    ``col`` (int64, the centre pixel in the scene); for georeferenced releases
    ``crs`` (str) and ``transform`` (float64, 6 rasterio coefficients of the
    patch window). :attr:`modalities` gives the band indices of ``'hsi'`` and
    ``'lidar'`` in ``image``.
    """

    splits = ('train', 'test')
    classes: tuple[str, ...] = ()
    #: HSI band count of the official release (checked when reading).
    hsi_bands = 0
    #: Rows x columns of the official scene (documentation; not enforced).
    scene_shape: tuple[int, int] = (0, 0)
    #: Variable names per role (lower case), in order of preference.
    hsi_keys: tuple[str, ...] = ('hsi', 'data')
    lidar_keys: tuple[str, ...] = ('lidar', 'dsm')
    train_keys: tuple[str, ...] = (
        'trlabel',
        'trainlabels',
        'train_label',
        'tr_label',
        'tr_map',
    )
    test_keys: tuple[str, ...] = (
        'tslabel',
        'testlabels',
        'test_label',
        'ts_label',
        'te_label',
        'ts_map',
    )
    gt_keys: tuple[str, ...] = ('gt', 'ground_truth', 'labels')
    #: File names of a GeoTIFF release per role (any may be missing).
    geotiff_files: ClassVar[dict[str, tuple[str, ...]]] = {}
    #: Three HSI bands for :meth:`plot` (about red, green, blue).
    rgb_band_indices: tuple[int, int, int] = (0, 0, 0)

    def __init__(
        self,
        root: str | os.PathLike[str] = 'data',
        split: str = 'train',
        patch_size: int = 11,
        padding: str = 'symmetric',
        normalize: bool = True,
        train_per_class: int | None = None,
        seed: int = 0,
        transforms: Callable[[Sample], Sample] | None = None,
    ) -> None:
        """Initialise a new dataset instance.

        Args:
            root: Folder holding the release's ``.mat`` or GeoTIFF files.
            split: ``'train'`` or ``'test'``.
            patch_size: Side of the patches. Even sizes put the labelled pixel
                at index ``patch_size // 2`` (as MIViT's 8/16/24 patches).
            padding: How the scene is extended beyond its border for patches:
                ``'symmetric'`` (MIViT), ``'reflect'`` or ``'constant'``
                (zeros, M3amba).
            normalize: Scale every band to [0, 1] over the scene (both papers).
            train_per_class: For releases with a single ground-truth map and no
                train/test maps: training pixels drawn per class (the rest is
                the test split). Ignored when the release has split maps.
            seed: Seed of that draw.
            transforms: A function/transform that takes a sample and returns a
                transformed version.

        Raises:
            ValueError: If an argument is invalid.
            DatasetNotFoundError: If ``root`` holds no release.
            MissingInputError: If a part (HSI, LiDAR, labels) is missing.
            InvalidInputError: If the parts do not fit together.
        """
        if split not in self.splits:
            raise ValueError(f'split must be one of {self.splits}, got {split!r}')
        if patch_size < 1:
            raise ValueError(f'patch_size must be positive, got {patch_size}')
        if padding not in ('symmetric', 'reflect', 'constant'):
            raise ValueError(f'unknown padding {padding!r}')
        self.root = Path(root)
        self.split = split
        self.patch_size = patch_size
        self.padding = padding
        self.normalize = normalize
        self.train_per_class = train_per_class
        self.seed = seed
        self.transforms = transforms
        self.crs: str | None = None
        self.transform: tuple[float, ...] | None = None
        self.sources: dict[str, str] = {}
        hsi, lidar, train, test = self._load()
        #: What was applied to the raw bands: ``(raw - offset) / scale``.
        self.normalisation: dict[str, list[float]] = self._normalise(hsi, lidar)
        self.modalities: dict[str, list[int]] = {
            'hsi': list(range(hsi.shape[0])),
            'lidar': list(range(hsi.shape[0], hsi.shape[0] + lidar.shape[0])),
        }
        image = np.concatenate([hsi, lidar]).astype(np.float32, copy=False)
        del hsi, lidar
        self.train_mask = train
        self.test_mask = test
        labels = train if split == 'train' else test
        rows, cols = np.nonzero(labels >= 0)
        self.rows = rows.astype(np.int64)
        self.cols = cols.astype(np.int64)
        self.labels = labels[rows, cols].astype(np.int64)
        self._pad_scene(image)

    def _normalise(
        self, hsi: NDArray[Any], lidar: NDArray[Any]
    ) -> dict[str, list[float]]:
        """Min-max scale the bands in place if asked; return offsets and scales."""
        if not self.normalize:
            return {
                'offset': [0.0] * (len(hsi) + len(lidar)),
                'scale': [1.0] * (len(hsi) + len(lidar)),
            }
        offsets, scales = minmax_normalize(hsi)
        lidar_offsets, lidar_scales = minmax_normalize(lidar)
        return {'offset': offsets + lidar_offsets, 'scale': scales + lidar_scales}

    def _pad_scene(self, image: NDArray[np.float32]) -> None:
        """Keep a padded copy of the scene for patches, and the scene as a view of it."""
        patch_size = self.patch_size
        half = patch_size // 2
        pad = ((0, 0), (half, patch_size - 1 - half), (half, patch_size - 1 - half))
        self._padded: NDArray[np.float32] = np.pad(image, pad, mode=self.padding)  # type: ignore[call-overload]
        # The scene is a view into the padded copy: one copy of the cube in memory.
        h, w = image.shape[1:]
        self.image: NDArray[np.float32] = self._padded[
            :, half : half + h, half : half + w
        ]

    # Reading.

    def _find_mat(self) -> dict[str, tuple[Path, str]]:
        files = sorted(self.root.glob('*.mat')) + sorted(self.root.glob('*/*.mat'))
        keys = {
            'hsi': self.hsi_keys,
            'lidar': self.lidar_keys,
            'train': self.train_keys,
            'test': self.test_keys,
            'gt': self.gt_keys,
        }
        found: dict[str, tuple[Path, str, int]] = {}
        for path in files:
            for name in _mat_variables(path):
                for role, names in keys.items():
                    if name.lower() in names:
                        rank = names.index(name.lower())
                        if role not in found or rank < found[role][2]:
                            found[role] = (path, name, rank)
        return {role: (path, name) for role, (path, name, _) in found.items()}

    def _find_geotiff(self) -> dict[str, Path]:
        found: dict[str, Path] = {}
        for role, names in self.geotiff_files.items():
            for name in names:
                for path in (self.root / name, *self.root.glob(f'*/{name}')):
                    if path.is_file() and role not in found:
                        found[role] = path
        return found

    def _load(
        self,
    ) -> tuple[NDArray[np.float32], NDArray[np.float32], NDArray[Any], NDArray[Any]]:
        """HSI (C x H x W), LiDAR (k x H x W) and 0-based train/test maps (-1 unlabelled)."""
        if not self.root.is_dir():
            raise DatasetNotFoundError(self)
        tiffs = self._find_geotiff()
        if 'hsi' in tiffs:
            return self._load_geotiff(tiffs)
        mats = self._find_mat()
        if not mats:
            raise DatasetNotFoundError(self)
        for role in ('hsi', 'lidar'):
            if role not in mats:
                names = self.hsi_keys if role == 'hsi' else self.lidar_keys
                raise MissingInputError(
                    self.root,
                    f'no {role.upper()} variable (looked for {", ".join(names)}, '
                    'any case) in its .mat files',
                )
        self.sources = {role: f'{p.name}:{n}' for role, (p, n) in mats.items()}
        hsi_path, hsi_name = mats['hsi']
        hsi = _read_mat_variable(hsi_path, hsi_name)
        if hsi.ndim != 3:
            raise InvalidInputError(
                hsi_path, f'{hsi_name} must be rows x cols x bands, got {hsi.shape}'
            )
        hsi = np.ascontiguousarray(hsi.transpose(2, 0, 1), dtype=np.float32)
        lidar_path, lidar_name = mats['lidar']
        lidar = _read_mat_variable(lidar_path, lidar_name).astype(np.float32)
        lidar = lidar[None] if lidar.ndim == 2 else lidar.transpose(2, 0, 1)
        maps: dict[str, NDArray[np.int64]] = {
            role: self._read_map(*mats[role])
            for role in ('train', 'test', 'gt')
            if role in mats
        }
        train, test = self._split_maps(maps, hsi_path)
        self._check(hsi, lidar, train, test, hsi_path, lidar_path)
        return hsi, lidar, train, test

    def _read_map(self, path: Path, name: str) -> NDArray[np.int64]:
        array = _read_mat_variable(path, name)
        if array.ndim != 2:
            raise InvalidInputError(
                path, f'label map {name} must be 2-D, got shape {array.shape}'
            )
        return self._labels_from_array(array, path)

    def _labels_from_array(self, array: NDArray[Any], path: Path) -> NDArray[np.int64]:
        """1-based labels (0 or negative: unlabelled) to 0-based (-1 unlabelled)."""
        if not np.isfinite(array).all():
            raise InvalidInputError(path, 'label map has non-finite values')
        labels = np.rint(array).astype(np.int64)
        if labels.max() > len(self.classes):
            raise InvalidInputError(
                path,
                f'label {labels.max()} exceeds the {len(self.classes)} classes '
                f'of {type(self).__name__}',
            )
        return np.ascontiguousarray(np.where(labels > 0, labels - 1, -1))

    def _split_maps(
        self, maps: dict[str, NDArray[np.int64]], where: Path
    ) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
        if 'train' in maps and 'test' in maps:
            return maps['train'], maps['test']
        if 'gt' not in maps:
            raise MissingInputError(
                self.root,
                'no train/test label maps (looked for '
                f'{", ".join(self.train_keys + self.test_keys)}) and no ground-truth '
                f'map ({", ".join(self.gt_keys)})',
            )
        if self.train_per_class is None:
            raise InvalidInputError(
                where,
                'the release has one ground-truth map and no train/test maps: '
                'pass train_per_class to draw a training split',
            )
        return self.draw_split(maps['gt'], self.train_per_class, self.seed)

    @staticmethod
    def draw_split(
        gt: NDArray[np.int64], per_class: int, seed: int
    ) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
        """Draw ``per_class`` training pixels per class; the rest is the test split.

        Args:
            gt: 0-based ground truth (-1 unlabelled).
            per_class: Training pixels per class (all of a smaller class, which
                then has no test pixels).
            seed: Random seed.

        Returns:
            Train and test maps (-1 unlabelled).
        """
        rng = np.random.default_rng(seed)
        flat = np.ascontiguousarray(gt).reshape(-1)
        train = np.full(flat.shape, -1, dtype=np.int64)
        for c in np.unique(flat[flat >= 0]):
            index = np.flatnonzero(flat == c)
            chosen = rng.choice(index, size=min(per_class, len(index)), replace=False)
            train[chosen] = c
        test = np.where(train >= 0, -1, flat)
        return train.reshape(gt.shape), test.reshape(gt.shape)

    def _load_geotiff(
        self, tiffs: dict[str, Path]
    ) -> tuple[NDArray[np.float32], NDArray[np.float32], NDArray[Any], NDArray[Any]]:
        import rasterio

        from ..export.raster import crs_to_string

        def read(path: Path) -> tuple[NDArray[Any], Any, Any]:
            try:
                with rasterio.open(path) as src:
                    return src.read(), src.crs, src.transform
            except rasterio.errors.RasterioIOError as err:
                raise InvalidInputError(path, f'unreadable raster ({err})') from err

        if 'lidar' not in tiffs:
            raise MissingInputError(
                self.root,
                'no LiDAR raster (looked for '
                f'{", ".join(self.geotiff_files.get("lidar", ()))})',
            )
        self.sources = {role: path.name for role, path in tiffs.items()}
        hsi, crs, transform = read(tiffs['hsi'])
        lidar, lidar_crs, _ = read(tiffs['lidar'])
        if crs is not None:
            self.crs = crs_to_string(crs)
            self.transform = tuple(transform)[:6]
            if lidar_crs is not None and lidar_crs != crs:
                raise InvalidInputError(
                    tiffs['lidar'], f'CRS {lidar_crs} differs from the HSI CRS {crs}'
                )
        maps: dict[str, NDArray[np.int64]] = {}
        for role in ('train', 'test', 'gt'):
            if role in tiffs:
                array, _, _ = read(tiffs[role])
                maps[role] = self._labels_from_array(array[0], tiffs[role])
        train, test = self._split_maps(maps, tiffs['hsi'])
        hsi = hsi.astype(np.float32)
        lidar = lidar.astype(np.float32)
        self._check(hsi, lidar, train, test, tiffs['hsi'], tiffs['lidar'])
        return hsi, lidar, train, test

    def _check(
        self,
        hsi: NDArray[Any],
        lidar: NDArray[Any],
        train: NDArray[Any],
        test: NDArray[Any],
        hsi_path: Path,
        lidar_path: Path,
    ) -> None:
        if self.hsi_bands and hsi.shape[0] != self.hsi_bands:
            raise InvalidInputError(
                hsi_path,
                f'{type(self).__name__} has {self.hsi_bands} HSI bands, '
                f'found {hsi.shape[0]}',
            )
        shape = hsi.shape[1:]
        if lidar.shape[1:] != shape:
            raise InvalidInputError(
                lidar_path, f'LiDAR is {lidar.shape[1:]} pixels, HSI is {shape}'
            )
        for name, labels in (('train', train), ('test', test)):
            if labels.shape != shape:
                raise InvalidInputError(
                    self.root,
                    f'{name} labels are {labels.shape} pixels, HSI is {shape}',
                )
        overlap = int(((train >= 0) & (test >= 0)).sum())
        if overlap:
            warnings.warn(
                f'{self.root}: {overlap} pixels are labelled in both the train and '
                'the test map',
                stacklevel=3,
            )
        self.overlap = overlap

    # Samples.

    def __len__(self) -> int:
        """Number of labelled pixels of the split.

        Returns:
            Length of the dataset.
        """
        return len(self.labels)

    def patch(self, row: int, col: int) -> Tensor:
        """The ``patch_size`` x ``patch_size`` window around a scene pixel.

        Args:
            row: Row of the pixel.
            col: Column of the pixel.

        Returns:
            float32 C x patch_size x patch_size.
        """
        p = self.patch_size
        return torch.from_numpy(self._padded[:, row : row + p, col : col + p].copy())

    def __getitem__(self, index: int) -> Sample:
        """Return an index within the dataset.

        Args:
            index: Index to return.

        Returns:
            The patch around the index-th labelled pixel and its label.
        """
        row, col = int(self.rows[index]), int(self.cols[index])
        sample: Sample = {
            'image': self.patch(row, col),
            'label': torch.tensor(self.labels[index]),
            'row': torch.tensor(row),
            'col': torch.tensor(col),
        }
        if self.crs is not None and self.transform is not None:
            a, b, c, d, e, f = self.transform
            x0 = col - self.patch_size // 2
            y0 = row - self.patch_size // 2
            sample['crs'] = self.crs
            sample['transform'] = torch.tensor(
                [a, b, c + a * x0 + b * y0, d, e, f + d * x0 + e * y0],
                dtype=torch.float64,
            )
        if self.transforms is not None:
            sample = self.transforms(sample)
        return sample

    def scene(self) -> Sample:
        """The whole scene with the split's labels.

        Returns:
            ``image`` (C x H x W, normalised as the patches), ``mask`` (int64
            H x W, 0-based classes of this split, -1 unlabelled) and, for
            georeferenced releases, ``crs`` and ``transform``.
        """
        labels = self.train_mask if self.split == 'train' else self.test_mask
        sample: Sample = {
            'image': torch.from_numpy(self.image),
            'mask': torch.from_numpy(labels),
        }
        if self.crs is not None and self.transform is not None:
            sample['crs'] = self.crs
            sample['transform'] = torch.tensor(self.transform, dtype=torch.float64)
        return sample

    def plot(
        self,
        sample: Sample,
        show_titles: bool = True,
        suptitle: str | None = None,
        rgb_bands: Sequence[int] | None = None,
    ) -> Figure:
        """Plot a sample (a patch from :meth:`__getitem__` or :meth:`scene`).

        Args:
            sample: A sample.
            show_titles: Flag indicating whether to show titles above each panel.
            suptitle: Optional string to use as a suptitle.
            rgb_bands: HSI bands of the false-colour panel (default
                :attr:`rgb_band_indices`).

        Returns:
            A matplotlib Figure with the rendered sample.
        """
        image = sample['image']
        bands = list(rgb_bands or self.rgb_band_indices)
        lidar = np.asarray(image[self.modalities['lidar'][0]])
        panels: list[tuple[str, NDArray[Any], dict[str, Any]]] = [
            ('HSI', false_colour(image, bands), {}),
            ('LiDAR', lidar, {'cmap': 'terrain'}),
        ]
        num_classes = len(self.classes)
        for key, title in (('mask', 'Labels'), ('prediction', 'Prediction')):
            if key in sample and np.ndim(sample[key]) == 2:
                masked = np.ma.masked_less(np.asarray(sample[key]), 0)
                style = {'cmap': 'tab20', 'vmin': 0, 'vmax': max(num_classes - 1, 1)}
                panels.append((title, masked, style))
        fig, axs = plt.subplots(1, len(panels), figsize=(4 * len(panels), 4))
        for ax, (title, array, style) in zip(np.atleast_1d(axs), panels, strict=True):
            ax.imshow(array, interpolation='nearest', **style)
            ax.axis('off')
            if show_titles:
                ax.set_title(title)
        if 'label' in sample and show_titles:
            text = f'Label: {self.classes[int(sample["label"])]}'
            if 'prediction' in sample and np.ndim(sample['prediction']) == 0:
                text += f'\nPrediction: {self.classes[int(sample["prediction"])]}'
            np.atleast_1d(axs)[0].set_xlabel(text)
            np.atleast_1d(axs)[0].axis('on')
            np.atleast_1d(axs)[0].set_xticks([])
            np.atleast_1d(axs)[0].set_yticks([])
        if suptitle is not None:
            fig.suptitle(suptitle)
        return fig
