"""FYH cloud-type datasets: FY-4A AGRI tiles and whole scenes on a 0.05 degree grid."""

from __future__ import annotations

import glob
import os
import re
from collections.abc import Callable, Iterable, Sequence
from typing import Any, ClassVar

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from pyproj import CRS
from rasterio.transform import Affine
from torch import Tensor
from torchgeo.datasets import DatasetNotFoundError, NonGeoDataset, RasterDataset
from torchgeo.datasets.utils import Path, Sample, percentile_normalization

from ..errors import InvalidInputError, MissingInputError
from .intersection import StackedIntersectionDataset

#: Latitude of the centre of the first grid row (degrees north).
GRID_NORTH = 50.0
#: Longitude of the centre of the first grid column (degrees east).
GRID_WEST = 85.0
#: Pixel size of the grid (degrees).
GRID_RES = 0.05
#: Scene window size in pixels (rows, columns).
GRID_SHAPE = (900, 1000)
#: Tile size in pixels.
TILE_SIZE = 100
#: Tiles per scene row (``k = TILES_PER_ROW * i + j``).
TILES_PER_ROW = GRID_SHAPE[1] // TILE_SIZE
#: Tiles per scene.
TILES_PER_SCENE = (GRID_SHAPE[0] // TILE_SIZE) * TILES_PER_ROW
#: The grid's CRS as an authority string.
GRID_CRS = 'EPSG:4326'

#: Class names, indexed by mask value (ISCCP cloud types of Himawari ``CLTYPE``).
CLASSES: tuple[str, ...] = (
    'Clear',
    'Cirrus',
    'Cirrostratus',
    'Deep convection',
    'Altocumulus',
    'Altostratus',
    'Nimbostratus',
    'Cumulus',
    'Stratocumulus',
    'Stratus',
    'Fill',
)
#: Mask value of fill / no data pixels, ignored by losses and metrics.
IGNORE_INDEX = 10
#: Colours of the classes in plots (RGB, 0..1).
CLASS_COLORS: tuple[tuple[float, float, float], ...] = (
    (0.55, 0.75, 0.95),  # clear
    (1.00, 1.00, 0.60),  # Ci
    (1.00, 0.80, 0.30),  # Cs
    (0.85, 0.10, 0.10),  # deep convection
    (0.60, 0.90, 0.60),  # Ac
    (0.20, 0.65, 0.30),  # As
    (0.10, 0.35, 0.15),  # Ns
    (0.85, 0.60, 0.95),  # Cu
    (0.55, 0.30, 0.75),  # Sc
    (0.40, 0.40, 0.40),  # St
    (0.00, 0.00, 0.00),  # fill
)
#: AGRI channel names (centre wavelengths in micrometres).
CHANNELS: tuple[str, ...] = (
    'C01 0.47',
    'C02 0.65',
    'C03 0.825',
    'C04 1.375',
    'C05 1.61',
    'C06 2.25',
    'C07 3.75 high',
    'C08 3.75 low',
    'C09 6.25',
    'C10 7.1',
    'C11 8.5',
    'C12 10.7',
    'C13 12.0',
    'C14 13.5',
)

_TILE_NAME = re.compile(r'^(?P<stem>.+)_(?P<k>\d+)\.mat$')


def grid_transform() -> Affine:
    """The affine transform of the whole 900 x 1000 scene window.

    Every FYH scene is this window of a regular latitude/longitude grid
    (EPSG:4326) with 0.05 degree pixels: pixel ``(r, c)`` is centred at
    ``lat = 50 - 0.05 r``, ``lon = 85 + 0.05 c`` (r in 0..899, c in 0..999), so
    the outer edges are 50.025N, 5.025N, 84.975E and 134.975E and the transform
    is ``(0.05, 0, 84.975, 0, -0.05, 50.025)``.

    Returns:
        Pixel-corner transform (rasterio convention), EPSG:4326 degrees.
    """
    half = GRID_RES / 2
    return Affine(GRID_RES, 0.0, GRID_WEST - half, 0.0, -GRID_RES, GRID_NORTH + half)


def tile_offset(k: int) -> tuple[int, int]:
    """Row and column of the upper-left pixel of tile ``k`` in the scene window.

    Args:
        k: Tile index, ``10 i + j`` (0..89): row block ``i`` covers rows
            ``100 i .. 100 i + 99``, column block ``j`` columns ``100 j .. 100 j + 99``.

    Returns:
        ``(row, col)`` of the tile's first pixel.

    Raises:
        ValueError: If *k* is outside 0..89.
    """
    if not 0 <= k < TILES_PER_SCENE:
        raise ValueError(f'tile index {k} outside 0..{TILES_PER_SCENE - 1}')
    i, j = divmod(k, TILES_PER_ROW)
    return i * TILE_SIZE, j * TILE_SIZE


def tile_transform(k: int) -> Affine:
    """The affine transform of tile ``k`` (pixel corners, rasterio convention).

    Args:
        k: Tile index, ``10 i + j`` (0..89).

    Returns:
        The tile's transform on the EPSG:4326 grid.
    """
    row, col = tile_offset(k)
    return grid_transform() @ Affine.translation(col, row)


def tile_bounds(k: int) -> tuple[float, float, float, float]:
    """Geographic bounds of tile ``k``.

    Args:
        k: Tile index, ``10 i + j`` (0..89).

    Returns:
        ``(west, south, east, north)`` in degrees.
    """
    transform = tile_transform(k)
    west, north = transform @ (0, 0)
    east, south = transform @ (TILE_SIZE, TILE_SIZE)
    return west, south, east, north


def transform_tensor(transform: Affine) -> Tensor:
    """The 6 affine coefficients of *transform* as a float64 tensor.

    Args:
        transform: An affine transform.

    Returns:
        ``tensor([a, b, c, d, e, f])`` (rasterio order).
    """
    return torch.tensor(tuple(transform)[:6], dtype=torch.float64)


def parse_tile_name(path: Path) -> tuple[str, int]:
    """Split a tile file name ``<scene stem>_<k>.mat`` into stem and tile index.

    Args:
        path: The tile file.

    Returns:
        ``(scene stem, k)``.

    Raises:
        InvalidInputError: If the name does not follow the pattern or k > 89.
    """
    match = _TILE_NAME.match(os.path.basename(path))
    if match is None:
        raise InvalidInputError(
            path, 'tile name is not <scene stem>_<k>.mat, cannot georeference it'
        )
    k = int(match.group('k'))
    if k >= TILES_PER_SCENE:
        raise InvalidInputError(
            path, f'tile index {k} outside 0..{TILES_PER_SCENE - 1} (9 x 10 tiles)'
        )
    return match.group('stem'), k


def load_mat(path: Path) -> np.ndarray:
    """Read the ``data`` variable of a MATLAB file (v5 via SciPy, v7.3 via h5py).

    Args:
        path: The ``.mat`` file.

    Returns:
        The array, in MATLAB's (row, column, ...) order.

    Raises:
        InvalidInputError: If the file cannot be read or has no ``data`` variable.
    """
    import scipy.io

    try:
        content = scipy.io.loadmat(path)
    except NotImplementedError:
        # MATLAB v7.3 files are HDF5, stored column-major: reverse the axes.
        import h5py

        with h5py.File(path, 'r') as f:
            if 'data' not in f:
                raise InvalidInputError(path, 'no variable named "data"') from None
            return np.asarray(f['data']).transpose()
    except (ValueError, OSError, scipy.io.matlab.MatReadError) as error:
        raise InvalidInputError(path, f'not a readable .mat file ({error})') from error
    if 'data' not in content:
        raise InvalidInputError(path, 'no variable named "data"')
    return np.asarray(content['data'])


def _mask_cmap() -> ListedColormap:
    return ListedColormap(CLASS_COLORS)


def plot_fyh_sample(
    sample: Sample,
    rgb_channels: Sequence[int] = (1, 2, 0),
    show_titles: bool = True,
    suptitle: str | None = None,
) -> Figure:
    """Plot a colour composite, the cloud-type mask and (if present) the prediction.

    Args:
        sample: A sample with ``image`` (14 x H x W), optionally ``mask`` and
            ``prediction`` (H x W class indices).
        rgb_channels: Channel indices (0-based) shown as red, green, blue.
        show_titles: Whether to title the panels.
        suptitle: Optional figure title.

    Returns:
        The figure.
    """
    image = sample['image'][list(rgb_channels)].permute(1, 2, 0).numpy()
    image = percentile_normalization(image, 1, 99)
    panels: list[tuple[str, np.ndarray]] = []
    for key, title in (('mask', 'Mask'), ('prediction', 'Prediction')):
        if key in sample:
            panels.append((title, sample[key].numpy().squeeze()))

    n = 1 + len(panels)
    fig, axs = plt.subplots(1, n, figsize=(4 * n + (2.5 if panels else 0), 4))
    axs = np.atleast_1d(axs)
    axs[0].imshow(image)
    axs[0].axis('off')
    if show_titles:
        names = ', '.join(CHANNELS[c].split()[0] for c in rgb_channels)
        axs[0].set_title(f'Image ({names})')
    for ax, (title, values) in zip(axs[1:], panels):
        ax.imshow(
            values,
            cmap=_mask_cmap(),
            vmin=-0.5,
            vmax=len(CLASSES) - 0.5,
            interpolation='none',
        )
        ax.axis('off')
        if show_titles:
            ax.set_title(title)
    if panels:
        handles = [
            Patch(facecolor=CLASS_COLORS[i], edgecolor='k', label=f'{i} {name}')
            for i, name in enumerate(CLASSES)
        ]
        axs[-1].legend(
            handles=handles, loc='center left', bbox_to_anchor=(1.02, 0.5), fontsize=8
        )
    if suptitle is not None:
        fig.suptitle(suptitle)
    fig.tight_layout()
    return fig


class FYH(NonGeoDataset):
    """FYH cloud recognition dataset (FY-4A AGRI + Himawari-8 cloud types).

    The `FYH <https://arxiv.org/abs/2401.03182>`__ dataset pairs FY-4A AGRI
    full 14-channel imagery with Himawari-8 L2 cloud types (ISCCP classes),
    both resampled to a regular 0.05 degree latitude/longitude grid over East
    Asia (50N..5N, 85E..135E). The paper reports 70,419 image-label pairs.
    There is no download: build the tiles from raw files with
    :func:`torchgeo_ext.converters.fyh.build_fyh` (``torchgeo-ext
    fyh-build``).

    Dataset format:

    * ``mattrain/``, ``mattest/``: images, ``<scene stem>_<k>.mat``, variable
      ``data``, float64 100 x 100 x 14, each channel group min-max normalised
      to [0, 1] per scene (channels 1-6 jointly, channels 7-14 jointly)
    * ``matmasktrain/``, ``matmasktest/``: labels with the same file names,
      variable ``data``, uint8 100 x 100
    * tolerated variants: channel-first images (14 x 100 x 100), masks
      100 x 100 x 1, masks stored as floating point, MATLAB v7.3 files
    * ``k = 10 i + j`` is the tile's position in the 900 x 1000 scene window
      (row block i in 0..8, column block j in 0..9); each tile's georeferencing
      is reconstructed from it (:func:`tile_transform`)

    Dataset classes:

    0. Clear
    1. Cirrus (Ci)
    2. Cirrostratus (Cs)
    3. Deep convection
    4. Altocumulus (Ac)
    5. Altostratus (As)
    6. Nimbostratus (Ns)
    7. Cumulus (Cu)
    8. Stratocumulus (Sc)
    9. Stratus (St)
    10. Fill / no data (ignore index; Himawari 255 and 10 "unknown")

    Samples: ``image`` float32 14 x 100 x 100, ``mask`` int64 100 x 100,
    ``crs`` (``'EPSG:4326'``), ``transform`` (float64 tensor of the 6 affine
    coefficients, rasterio order), ``id`` (file stem) and ``path`` (image file).

    If you use this dataset in your research, please cite the following paper:

    * https://arxiv.org/abs/2401.03182
    """

    classes: ClassVar[tuple[str, ...]] = CLASSES
    ignore_index: ClassVar[int] = IGNORE_INDEX
    channels: ClassVar[tuple[str, ...]] = CHANNELS
    splits: ClassVar[tuple[str, ...]] = ('train', 'test')
    crs: ClassVar[str] = GRID_CRS

    def __init__(
        self,
        root: Path = 'data',
        split: str = 'train',
        transforms: Callable[[Sample], Sample] | None = None,
    ) -> None:
        """Initialise a new FYH instance.

        Args:
            root: Directory holding the ``mat*`` split folders.
            split: ``'train'`` or ``'test'``.
            transforms: A function/transform that takes a sample and returns a
                transformed version.

        Raises:
            AssertionError: If *split* is invalid.
            DatasetNotFoundError: If the split's image folder has no tiles.
            MissingInputError: If an image tile has no mask partner.
            InvalidInputError: If a tile name does not encode its position.
        """
        assert split in self.splits, f'split must be one of {self.splits}'
        self.root = root
        self.split = split
        self.transforms = transforms
        image_dir = os.path.join(root, f'mat{split}')
        mask_dir = os.path.join(root, f'matmask{split}')
        self.files = sorted(glob.glob(os.path.join(image_dir, '*.mat')))
        if not self.files:
            raise DatasetNotFoundError(self)
        self.mask_files = [
            os.path.join(mask_dir, os.path.basename(f)) for f in self.files
        ]
        self.tiles = [parse_tile_name(f) for f in self.files]
        missing = [f for f in self.mask_files if not os.path.isfile(f)]
        if missing:
            raise MissingInputError(
                missing[0],
                f'mask partner missing ({len(missing)} of {len(self.files)} image '
                f'tiles in {image_dir} have no mask in {mask_dir})',
            )

    def __len__(self) -> int:
        """Return the number of tiles.

        Returns:
            Length of the dataset.
        """
        return len(self.files)

    def __getitem__(self, index: int) -> Sample:
        """Return one tile.

        Args:
            index: Index of the tile.

        Returns:
            The sample (see the class docstring).
        """
        path = self.files[index]
        image = load_mat(path)
        if image.shape == (len(CHANNELS), TILE_SIZE, TILE_SIZE):
            image = image.transpose(1, 2, 0)  # tolerate channel-first tiles
        if image.shape != (TILE_SIZE, TILE_SIZE, len(CHANNELS)):
            raise InvalidInputError(
                path,
                f'image tile has shape {image.shape}, '
                f'expected ({TILE_SIZE}, {TILE_SIZE}, {len(CHANNELS)})',
            )
        mask = load_mat(self.mask_files[index])
        if mask.shape == (TILE_SIZE, TILE_SIZE, 1):
            mask = mask[..., 0]
        if mask.shape != (TILE_SIZE, TILE_SIZE):
            raise InvalidInputError(
                self.mask_files[index],
                f'mask tile has shape {mask.shape}, expected ({TILE_SIZE}, {TILE_SIZE})',
            )
        stem, k = self.tiles[index]
        sample: dict[str, Any] = {
            'image': torch.from_numpy(
                np.ascontiguousarray(image.transpose(2, 0, 1), dtype=np.float32)
            ),
            'mask': torch.from_numpy(mask.astype(np.int64)),
            'crs': GRID_CRS,
            'transform': transform_tensor(tile_transform(k)),
            'id': f'{stem}_{k}',
            'path': path,
        }
        if self.transforms is not None:
            sample = self.transforms(sample)
        return sample

    def plot(
        self,
        sample: Sample,
        show_titles: bool = True,
        suptitle: str | None = None,
        rgb_channels: Sequence[int] = (1, 2, 0),
    ) -> Figure:
        """Plot a sample: colour composite, mask with class legend, prediction.

        Args:
            sample: A sample returned by :meth:`__getitem__` (optionally with
                ``prediction``).
            show_titles: Whether to title the panels.
            suptitle: Optional figure title.
            rgb_channels: Channel indices (0-based) shown as red, green, blue
                (default C02 0.65, C03 0.825, C01 0.47 micrometre).

        Returns:
            The figure.
        """
        return plot_fyh_sample(sample, rgb_channels, show_titles, suptitle)


#: File-name pattern of scene GeoTIFFs: the FY-4A stem carries the scan times.
_SCENE_REGEX = r"""
    ^(?P<stem>.*_(?P<start>\d{{14}})_(?P<stop>\d{{14}})_.*)
    _{kind}\.tif$
"""


class FYHScenesImage(RasterDataset):
    """FYH scene images: ``<FY-4A stem>_image.tif``, 14 bands, normalised."""

    filename_glob = '*_image.tif'
    filename_regex = _SCENE_REGEX.format(kind='image')
    date_format = '%Y%m%d%H%M%S'
    is_image = True
    all_bands = tuple(f'C{i:02d}' for i in range(1, 15))
    rgb_bands = ('C02', 'C03', 'C01')


class FYHScenesLabel(RasterDataset):
    """FYH scene labels: ``<FY-4A stem>_label.tif``, uint8 cloud types, nodata 10."""

    filename_glob = '*_label.tif'
    filename_regex = _SCENE_REGEX.format(kind='label')
    date_format = '%Y%m%d%H%M%S'
    is_image = False
    nodata = float(IGNORE_INDEX)


class FYHScenes(StackedIntersectionDataset):
    """FYH whole scenes as a TorchGeo :class:`~torchgeo.datasets.GeoDataset`.

    Reads the scene GeoTIFFs written by ``torchgeo-ext fyh-build --geotiff``:
    ``<FY-4A stem>_image.tif`` (14 bands, float32, the same per-scene
    normalisation as the tiles) and ``<FY-4A stem>_label.tif`` (uint8 cloud
    types, nodata 10), both on the EPSG:4326 0.05 degree grid. Each scene's time
    interval is its FY-4A scan (start and end times from the stem), so
    samplers draw patches from one scan at a time. Samples carry ``image``,
    ``mask``, ``bounds`` and ``transform`` (TorchGeo 0.10's 9-value layout,
    one copy, float64 from the query: see
    :class:`~torchgeo_ext.datasets.intersection.StackedIntersectionDataset`).

    Dataset classes: as :class:`FYH` (10 is fill / ignore; areas outside a
    scene read as 10).
    """

    classes: ClassVar[tuple[str, ...]] = CLASSES
    ignore_index: ClassVar[int] = IGNORE_INDEX

    def __init__(
        self,
        paths: Path | Iterable[Path] = 'data',
        bands: Sequence[str] | None = None,
        transforms: Callable[[Sample], Sample] | None = None,
        cache: bool = True,
    ) -> None:
        """Initialise a new FYHScenes instance.

        Args:
            paths: One or more directories to search, or files to load.
            bands: AGRI bands to return (``'C01'`` .. ``'C14'``, default all).
            transforms: A function/transform that takes a sample and returns a
                transformed version.
            cache: If True, cache file handles.

        Raises:
            DatasetNotFoundError: If no scene image or label is found.
            MissingInputError: If a scene image has no label or vice versa.
        """
        crs = CRS.from_user_input(GRID_CRS)
        self.image = FYHScenesImage(paths, crs, GRID_RES, bands, None, cache)
        self.label = FYHScenesLabel(paths, crs, GRID_RES, None, None, cache)
        images = {f[: -len('_image.tif')]: f for f in self.image.index.filepath}
        labels = {f[: -len('_label.tif')]: f for f in self.label.index.filepath}
        for stem in sorted(images.keys() ^ labels.keys()):
            if stem in images:
                raise MissingInputError(
                    images[stem], f'label partner {stem}_label.tif missing'
                )
            raise MissingInputError(
                labels[stem], f'image partner {stem}_image.tif missing'
            )
        super().__init__(self.image, self.label, transforms=transforms)

    def plot(
        self,
        sample: Sample,
        show_titles: bool = True,
        suptitle: str | None = None,
        rgb_channels: Sequence[int] | None = None,
    ) -> Figure:
        """Plot a sample: colour composite, mask with class legend, prediction.

        Args:
            sample: A sample returned by :meth:`__getitem__`.
            show_titles: Whether to title the panels.
            suptitle: Optional figure title.
            rgb_channels: Channel indices shown as RGB (default C02, C03, C01
                when loaded, else the first three bands).

        Returns:
            The figure.
        """
        if rgb_channels is None:
            bands = list(self.image.bands)
            if all(b in bands for b in FYHScenesImage.rgb_bands):
                rgb_channels = [bands.index(b) for b in FYHScenesImage.rgb_bands]
            else:
                rgb_channels = [0, 0, 0] if len(bands) < 3 else [0, 1, 2]
        return plot_fyh_sample(sample, rgb_channels, show_titles, suptitle)
