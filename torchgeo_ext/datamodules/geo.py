"""Data modules for your own imagery: georeferenced rasters plus vector labels."""

from __future__ import annotations

import copy
import glob
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, cast

import geopandas as gpd
import kornia.augmentation as K
import numpy as np
import pandas as pd
import rasterio
import shapely
import torch
from lightning.pytorch.utilities import rank_zero_info
from matplotlib.figure import Figure
from torch import Tensor, nn
from torch.utils.data import DataLoader
from torchgeo.datamodules import GeoDataModule
from torchgeo.datasets import GeoDataset, RasterDataset
from torchgeo.samplers import GeoSampler

from ..datasets.intersection import StackedIntersectionDataset, intersect
from ..datasets.vector import VectorObjects
from ..errors import InvalidInputError, MissingInputError
from ..export.sources import check_source, is_virtual
from ..samplers.cells import CellGridSampler
from ..samplers.object import ObjectSampler, grid_origin
from .detection import DetectionAugmentation, collate_detection

Batch = dict[str, Any]

#: Raster suffixes searched for when a modality is given as a folder.
RASTER_SUFFIXES = ('.tif', '.tiff', '.vrt', '.jp2', '.img')

#: Largest side (pixels) of the decimated read used to compute normalisation.
_STATS_SIDE = 1024


@dataclass(frozen=True)
class Normalisation:
    """Per-band normalisation: ``(image - offset) / scale``, bands in stacking order.

    This is what a data module applied; tasks record :meth:`as_dict` in their
    hyperparameters so that prediction on new scenes applies the same.

    Attributes:
        offset: Value subtracted from each band.
        scale: Value each band is then divided by.
    """

    offset: tuple[float, ...]
    scale: tuple[float, ...]

    def __post_init__(self) -> None:
        """Check lengths and scales.

        Raises:
            ValueError: If the lengths differ or a scale is not positive.
        """
        if len(self.offset) != len(self.scale):
            raise ValueError(
                f'normalisation has {len(self.offset)} offsets and {len(self.scale)} scales'
            )
        if any(not s > 0 for s in self.scale):
            raise ValueError(f'normalisation scales must be positive: {self.scale}')

    @classmethod
    def from_dict(
        cls, value: Mapping[str, Sequence[float] | float], bands: int
    ) -> Normalisation:
        """Build from ``{'offset': [...], 'scale': [...]}`` (a single value applies to all bands).

        Args:
            value: The mapping.
            bands: Number of bands.

        Returns:
            The normalisation.

        Raises:
            ValueError: If keys are missing or lengths do not match ``bands``.
        """
        if set(value) != {'offset', 'scale'}:
            raise ValueError(
                f"normalisation needs the keys 'offset' and 'scale': {dict(value)}"
            )
        out: dict[str, tuple[float, ...]] = {}
        for key in ('offset', 'scale'):
            item = value[key]
            numbers = (
                [float(item)] * bands
                if isinstance(item, int | float)
                else [float(v) for v in item]
            )
            if len(numbers) != bands:
                raise ValueError(
                    f'normalisation {key} has {len(numbers)} values for {bands} bands'
                )
            out[key] = tuple(numbers)
        return cls(out['offset'], out['scale'])

    def as_dict(self) -> dict[str, list[float]]:
        """Plain ``{'offset': [...], 'scale': [...]}`` (for hyperparameters and YAML).

        Returns:
            The mapping.
        """
        return {'offset': list(self.offset), 'scale': list(self.scale)}

    def apply(self, image: Tensor) -> Tensor:
        """Normalise an image or batch (bands on dimension ``-3``).

        Args:
            image: ``(..., C, H, W)``.

        Returns:
            The normalised float image.
        """
        offset = torch.tensor(self.offset, dtype=torch.float32, device=image.device)
        scale = torch.tensor(self.scale, dtype=torch.float32, device=image.device)
        return (image.float() - offset[:, None, None]) / scale[:, None, None]


NormalisationArg = Normalisation | Mapping[str, Any] | Literal['auto', 'dtype']


def _modality_files(entry: str | os.PathLike[str] | Sequence[str]) -> list[str]:
    """The raster files of one modality: a file, a folder, a glob, a URL (or a list of those)."""
    if not isinstance(entry, str | os.PathLike):
        return [f for item in entry for f in _modality_files(item)]
    text = os.fspath(entry)
    if is_virtual(text):  # a URL or GDAL path (its '?' is no glob): a GDAL open
        return [check_source(text)]
    if any(c in text for c in '*?['):
        files = sorted(glob.glob(text, recursive=True))
        if not files:
            raise MissingInputError(text, 'matches no file')
        return files
    if os.path.isdir(text):
        files = sorted(
            os.path.join(root, name)
            for root, _, names in os.walk(text)
            for name in names
            if name.lower().endswith(RASTER_SUFFIXES)
        )
        if not files:
            raise MissingInputError(
                text, f'folder holds no raster ({", ".join(RASTER_SUFFIXES)})'
            )
        return files
    if not os.path.exists(text):
        raise MissingInputError(text, 'not found')
    return [text]


def _band_count(files: Sequence[str]) -> int:
    """Band count of a modality; every file needs a CRS and the same count."""
    counts = set()
    for path in files:
        try:
            with rasterio.open(path) as src:
                if src.crs is None:
                    raise InvalidInputError(
                        path, 'has no CRS; assign one (e.g. gdal_edit.py -a_srs)'
                    )
                counts.add(src.count)
        except rasterio.errors.RasterioIOError as error:
            raise InvalidInputError(
                path, f'cannot be read as a raster: {error}'
            ) from None
    if len(counts) > 1:
        raise InvalidInputError(
            files[0], f'files of one modality differ in band count: {sorted(counts)}'
        )
    return counts.pop()


def _dtype_scale(dtype: str) -> float:
    """The full-scale value of an integer dtype (1 for floats)."""
    if np.issubdtype(np.dtype(dtype), np.integer):
        return float(np.iinfo(np.dtype(dtype)).max)
    return 1.0


def compute_normalisation(
    modalities: Sequence[Sequence[str]], how: Literal['auto', 'dtype'] = 'auto'
) -> Normalisation:
    """Per-band offset and scale of raster modalities (bands in stacking order).

    ``'auto'``: offset = 1st percentile, scale = 99th - 1st percentile of the
    valid pixels of a decimated read of every file (at most 1024 px a side),
    so that most values fall in [0, 1]. ``'dtype'``: offset 0, scale the
    dtype's full range (255 for uint8, 65535 for uint16, 1 for floats).

    Args:
        modalities: The files of each modality.
        how: ``'auto'`` or ``'dtype'``.

    Returns:
        The normalisation.
    """
    offset: list[float] = []
    scale: list[float] = []
    for files in modalities:
        samples: list[np.ndarray[Any, Any]] = []
        dtype = 'float32'
        for path in files:
            with rasterio.open(path) as src:
                dtype = src.dtypes[0]
                if how == 'dtype':
                    continue
                factor = max(1, math.ceil(max(src.width, src.height) / _STATS_SIDE))
                shape = (
                    src.count,
                    max(1, src.height // factor),
                    max(1, src.width // factor),
                )
                data = src.read(out_shape=shape, masked=True)
                samples.append(data.reshape(src.count, -1))
        if how == 'dtype':
            bands = _band_count(files)
            offset += [0.0] * bands
            scale += [_dtype_scale(dtype)] * bands
            continue
        stacked = np.ma.concatenate(samples, axis=1)
        for band in stacked:
            valid = band.compressed().astype(np.float64)
            valid = valid[np.isfinite(valid)]
            if valid.size == 0:
                lo, hi = 0.0, 1.0
            else:
                lo, hi = (float(v) for v in np.percentile(valid, (1, 99)))
            offset.append(lo)
            scale.append(hi - lo if hi > lo else max(abs(lo), 1.0))
    return Normalisation(tuple(offset), tuple(scale))


def _default_names(bands: Sequence[int], files: Sequence[Sequence[str]]) -> list[str]:
    """Modality names: ``rgb``/``ir`` for the usual 3 + 1 bands, else file stems."""
    if list(bands) == [3, 1]:
        return ['rgb', 'ir']
    if list(bands) == [3]:
        return ['rgb']
    names: list[str] = []
    for k, group in enumerate(files):
        stem = os.path.splitext(os.path.basename(group[0]))[0] or f'modality{k}'
        names.append(stem if stem not in names else f'{stem}_{k}')
    return names


def _check_splits(val_split: float, test_split: float) -> None:
    """Check that the held-out shares leave training cells."""
    if not 0 <= val_split < 1 or not 0 <= test_split < 1 or val_split + test_split >= 1:
        raise ValueError(
            f'val_split {val_split} and test_split {test_split} must leave training cells'
        )


def _modality_bands(
    files: Sequence[Sequence[str]], names: Sequence[str] | None
) -> dict[str, list[int]]:
    """Band indices of each modality in the stacked image, by modality name."""
    bands = [_band_count(group) for group in files]
    names = list(names) if names is not None else _default_names(bands, files)
    if len(names) != len(bands) or len(set(names)) != len(names):
        raise ValueError(
            f'modality_names {names} must name each of the {len(bands)} modalities once'
        )
    out: dict[str, list[int]] = {}
    start = 0
    for name, n in zip(names, bands, strict=True):
        out[name] = list(range(start, start + n))
        start += n
    return out


def _open_rasters(files: Sequence[Sequence[str]]) -> tuple[list[GeoDataset], Any]:
    """Open the modalities, warped to the first's CRS and resolution, and their overlap.

    Returns:
        The raster datasets and the footprint (shapely) where they all have data.
    """
    first = RasterDataset(files[0])
    rasters: list[GeoDataset] = [first]
    footprint = first.index.geometry.union_all()
    for group in files[1:]:
        raster = RasterDataset(group, crs=first.crs, res=first.res)
        other = raster.index.geometry.union_all()
        if footprint.intersection(other).area <= 0:
            raise InvalidInputError(
                group[0],
                f'does not overlap the first modality ({files[0][0]}): '
                'modalities must cover the same area',
            )
        footprint = footprint.intersection(other)
        rasters.append(raster)
    return rasters, footprint


def _check_labels_overlap(labels: VectorObjects, footprint: Any, raster: str) -> None:
    """Every label file must overlap the rasters' footprint."""
    for path, box in zip(labels.index['filepath'], labels.index.geometry, strict=True):
        if not box.intersects(footprint):
            raise InvalidInputError(
                path,
                f'does not overlap the rasters ({raster} ...): labels cover '
                f'{tuple(round(v, 3) for v in box.bounds)}, rasters '
                f'{tuple(round(v, 3) for v in footprint.bounds)} in '
                f'{labels.crs.to_string()}',
            )


def _resolve_normalisation(
    normalisation: NormalisationArg, files: Sequence[Sequence[str]], bands: int
) -> Normalisation:
    """The :class:`Normalisation` a normalisation argument stands for, checked."""
    if isinstance(normalisation, Normalisation):
        norm = normalisation
    elif isinstance(normalisation, Mapping):
        norm = Normalisation.from_dict(normalisation, bands)
    elif normalisation in ('auto', 'dtype'):
        norm = compute_normalisation(files, normalisation)
    else:
        raise ValueError(
            f"normalisation must be 'auto', 'dtype' or offset/scale: {normalisation!r}"
        )
    if len(norm.offset) != bands:
        raise ValueError(
            f'normalisation has {len(norm.offset)} bands, images have {bands}'
        )
    return norm


def _grid_cells(
    footprint: Any, origin: tuple[float, float], res: tuple[float, float], side: int
) -> list[shapely.Polygon]:
    """Square cells of ``side`` pixels on the pixel grid that overlap the footprint."""
    west, north = origin
    width, height = side * res[0], side * res[1]
    minx, miny, maxx, maxy = footprint.bounds
    out = []
    for r in range(
        math.floor((north - maxy) / height), math.ceil((north - miny) / height)
    ):
        for c in range(
            math.floor((minx - west) / width), math.ceil((maxx - west) / width)
        ):
            cell = shapely.box(
                west + c * width,
                north - (r + 1) * height,
                west + (c + 1) * width,
                north - r * height,
            )
            if footprint.intersection(cell).area > 0:
                out.append(cell)
    return out


def _regions(cells: Sequence[shapely.Polygon]) -> list[Any]:
    """Connected regions of cells: edge-adjacent cells merged into one polygon."""
    if not cells:
        return []
    return list(shapely.get_parts(shapely.union_all(list(cells))))


class _GeoObjectsDataModule(GeoDataModule):
    """Shared set-up of the own-imagery data modules.

    One or more co-registered raster modalities (any CRS and resolution; the
    first modality fixes both) and a vector file of objects drawn in a GIS
    (:class:`~torchgeo_ext.datasets.vector.VectorObjects`) are intersected
    with :func:`~torchgeo_ext.datasets.intersection.intersect` (one stacked
    ``image``, the labels of the same patch, one float64 georeference); the
    batches are those that SuperYOLOTask (axis-aligned), OrientedDetectionTask
    (oriented: the LMA models) and SegmentationTask (DIAnet) train from.

    The labelled area (where all modalities and the label file's extent
    overlap) is split geographically: it is covered by square cells of
    ``grid_cell_size`` pixels (a multiple of ``patch_size``), aligned to the
    first modality's pixel grid, and cells are assigned at random (seeded) to
    train / val / test in the proportions asked. Adjacent cells of one split
    form one region. Training patches
    (:class:`~torchgeo_ext.samplers.object.ObjectSampler`) never leave a
    training region nor touch a held-out cell; validation and test patches
    (:class:`~torchgeo_ext.samplers.cells.CellGridSampler`) tile their cells
    exactly, so no pixel of a validation or test patch is in a training patch.
    Objects are cut only where training meets validation or test (with no
    held-out split, nothing is cut); ``setup('fit')`` reports the share of
    training objects never seen whole (:attr:`never_whole`).
    """

    def __init__(
        self,
        images: Sequence[str | os.PathLike[str] | Sequence[str]],
        labels: str | os.PathLike[str] | Sequence[str],
        class_column: str = 'class',
        classes: Sequence[Any] | Mapping[Any, int] | None = None,
        patch_size: int = 512,
        oriented: bool = False,
        batch_size: int = 8,
        num_workers: int = 0,
        val_split: float = 0.1,
        test_split: float = 0.1,
        grid_cell_size: int | None = None,
        normalisation: NormalisationArg = 'auto',
        *,
        modality_names: Sequence[str] | None = None,
        min_visible: float = 0.5,
        point_size: float | None = None,
        length: int | None = None,
        background_fraction: float = 0.1,
        jitter: float = 0.25,
        augment: bool = True,
        seed: int = 0,
    ) -> None:
        """Initialise the data module: read, check and intersect the inputs, split the area.

        Args:
            images: One entry per modality: a raster file, a folder of rasters
                or a glob (or a list of files). The first fixes CRS and
                resolution; the others are warped to it.
            labels: Vector file(s) or folder (see :class:`VectorObjects`).
            class_column: Column of the labels holding the class.
            classes: Class list (ids by position), mapping value -> id, or None
                for the sorted unique values.
            patch_size: Patch side in pixels of the first modality.
            oriented: Serve oriented boxes (``bbox``, N x 8) as well.
            batch_size: Size of each mini-batch.
            num_workers: Number of workers for parallel data loading.
            val_split: Share of grid cells held out for validation.
            test_split: Share of grid cells held out for testing.
            grid_cell_size: Side of the split cells in pixels (rounded up to a
                multiple of ``patch_size``); default: the largest of 4, 3 or
                2 patches giving at least 10 cells, else 1 patch.
            normalisation: ``'auto'`` (per-band 1st-99th percentile stretch),
                ``'dtype'`` (divide by the dtype's range, e.g. 255), a
                :class:`Normalisation` or ``{'offset': ..., 'scale': ...}``.
            modality_names: Names of the modalities (default ``rgb``/``ir`` for
                3 + 1 bands, else the file stems).
            min_visible: See :class:`VectorObjects`.
            point_size: Side of the square around point labels (CRS units of
                the first modality).
            length: Training patches per epoch (default: one per object plus
                ``background_fraction``).
            background_fraction: Share of training patches placed anywhere.
            jitter: Placement jitter of :class:`ObjectSampler`.
            augment: Random flips (and 90 degree rotations) in training.
            seed: Seed of the cell assignment and of the training sampler.

        Raises:
            InvalidInputError: For unusable inputs (see the documentation).
            MissingInputError: For missing inputs.
            ValueError: For inconsistent arguments.
        """
        super().__init__(
            VectorObjects,
            batch_size=batch_size,
            patch_size=patch_size,
            num_workers=num_workers,
        )
        _check_splits(val_split, test_split)
        #: Patch side in pixels of the first modality.
        self.patch = int(patch_size)
        self.oriented = oriented
        self.val_split = val_split
        self.test_split = test_split
        self.length = length
        self.background_fraction = background_fraction
        self.jitter = jitter
        self.augment = augment
        self.seed = seed
        self._read_inputs(
            images,
            modality_names,
            normalisation,
            labels,
            class_column=class_column,
            classes=classes,
            min_visible=min_visible,
            point_size=point_size,
        )
        self._split(grid_cell_size)
        self._configure_batches()

    def _read_inputs(
        self,
        images: Sequence[str | os.PathLike[str] | Sequence[str]],
        modality_names: Sequence[str] | None,
        normalisation: NormalisationArg,
        labels: str | os.PathLike[str] | Sequence[str],
        **label_options: Any,
    ) -> None:
        """Open the modalities and the labels, check them, intersect them.

        Sets the files, band layout, classes, dataset and normalisation.

        Args:
            images: One entry per modality (see ``__init__``).
            modality_names: Names of the modalities, or None.
            normalisation: The normalisation argument (see ``__init__``).
            labels: Vector file(s) or folder.
            **label_options: More arguments of :class:`VectorObjects`.

        Raises:
            ValueError: If there is no modality.
        """
        if isinstance(images, str | os.PathLike):
            images = [images]
        if not images:
            raise ValueError('images needs at least one modality')
        self.image_files = [_modality_files(entry) for entry in images]
        #: Band indices of each modality in ``image``.
        self.modalities = _modality_bands(self.image_files, modality_names)
        #: Total number of bands.
        self.in_channels = sum(len(b) for b in self.modalities.values())
        rasters, footprint = _open_rasters(self.image_files)
        first = rasters[0]
        self.labels = VectorObjects(
            labels, crs=first.crs, res=first.res, **label_options
        )
        _check_labels_overlap(self.labels, footprint, self.image_files[0][0])
        #: Class names by id.
        self.class_names = list(self.labels.classes)
        #: Number of object classes.
        self.num_classes = len(self.class_names)
        #: The intersection of all modalities and the labels.
        self.dataset: StackedIntersectionDataset = intersect(*rasters, self.labels)
        #: The normalisation applied to every batch (record it in the task).
        self.normalisation = _resolve_normalisation(
            normalisation, self.image_files, self.in_channels
        )

    def _configure_batches(self) -> None:
        """Set ``collate_fn``, ``aug`` and ``train_aug`` (per task)."""
        raise NotImplementedError

    # -- geographic split ---------------------------------------------------------

    def _split(self, grid_cell_size: int | None) -> None:
        """Cells aligned to the first modality's grid, assigned to train / val / test."""
        #: Where all modalities and the labels' extent overlap.
        self.footprint = self.dataset.index.geometry.union_all()
        origin = grid_origin(self.dataset)
        res = self.dataset.res
        multiples: tuple[int, ...] = (
            4,
            3,
            2,
            1,
        )  # patches a cell side: the largest giving 10 cells
        if grid_cell_size is not None:
            multiples = (max(1, math.ceil(grid_cell_size / self.patch)),)
        for k in multiples:
            cells = _grid_cells(self.footprint, origin, res, k * self.patch)
            if len(cells) >= 10:
                break
        #: Cell side in pixels.
        self.grid_cell_size = k * self.patch
        n = len(cells)
        n_val = max(1, round(n * self.val_split)) if self.val_split > 0 else 0
        n_test = max(1, round(n * self.test_split)) if self.test_split > 0 else 0
        if n - n_val - n_test < 1:
            raise InvalidInputError(
                self.labels.index['filepath'].iloc[0],
                f'the labelled area holds {n} cells of {self.grid_cell_size} px: too few '
                f'for val_split={self.val_split} and test_split={self.test_split}; lower '
                'patch_size / grid_cell_size or the splits',
            )
        order = np.random.default_rng(self.seed).permutation(n)
        #: The cells (map polygons) of each split.
        self.split_cells: dict[str, list[shapely.Polygon]] = {
            'val': [cells[i] for i in order[:n_val]],
            'test': [cells[i] for i in order[n_val : n_val + n_test]],
            'train': [cells[i] for i in order[n_val + n_test :]],
        }
        #: Regions of each split: adjacent cells of one split merged, so that
        #: objects are cut only where training meets validation or test.
        self.split_regions = {k: _regions(v) for k, v in self.split_cells.items()}

    def _split_dataset(self, split: str, clip: bool) -> StackedIntersectionDataset:
        """The intersection with its index restricted to ``split``.

        With ``clip``: one row per region (adjacent cells merged) and time
        interval, the part of the data footprint in it (the pieces of all
        files merged, so that an object on the seam of two raster tiles is
        still whole in one row). Without: one row per whole cell (for the grid
        sampler, which tiles each row's bounds).
        """
        dataset = copy.copy(self.dataset)
        index = self.dataset.index
        geometries: list[Any] = []
        intervals: list[pd.Interval] = []
        areas = self.split_regions[split] if clip else self.split_cells[split]
        for area in areas:
            pieces: dict[pd.Interval, list[Any]] = {}
            for geometry, interval in zip(index.geometry, index.index, strict=True):
                piece = geometry.intersection(area)
                if piece.area > 0:
                    pieces.setdefault(interval, []).append(piece)
            for interval, parts in pieces.items():
                geometries.append(shapely.union_all(parts) if clip else area)
                intervals.append(interval)
        dataset.index = gpd.GeoDataFrame(
            {'piece': range(len(geometries))},
            index=pd.IntervalIndex(intervals, closed='both', name='datetime'),
            geometry=geometries,
            crs=index.crs,
        )
        return dataset

    def setup(self, stage: str) -> None:
        """Set up the datasets and samplers of a stage.

        Args:
            stage: ``'fit'``, ``'validate'``, ``'test'`` or ``'predict'``.
        """
        if stage == 'fit':
            self.train_dataset = self._split_dataset('train', clip=True)
            held_out = self.split_cells['val'] + self.split_cells['test']
            self.train_sampler = sampler = ObjectSampler(
                self.train_dataset,
                self.patch,
                length=self.length,
                background_fraction=self.background_fraction,
                jitter=self.jitter,
                generator=self.seed,
                keep_out=shapely.union_all(held_out) if held_out else None,
            )
            self._report_cut_objects(sampler)
        if stage in ('fit', 'validate'):
            self.val_dataset, self.val_sampler = self._grid_split('val')
        if stage in ('test', 'predict'):
            self.test_dataset, self.test_sampler = self._grid_split('test')
            self.predict_dataset, self.predict_sampler = (
                self.test_dataset,
                self.test_sampler,
            )

    def _report_cut_objects(self, sampler: ObjectSampler) -> None:
        """Log (and keep in :attr:`never_whole`) the training objects never seen whole."""
        area = shapely.union_all(self.split_regions['train'])
        objects = self.labels.objects.geometry
        touching = int(objects.intersects(area).sum())
        never = touching - len(sampler.placeable)
        #: Training-area objects never whole in a training patch: (count, share).
        self.never_whole = (never, never / touching if touching else 0.0)
        rank_zero_info(
            f'{never} of the {touching} objects in the training area '
            f'({self.never_whole[1]:.0%}) are never seen whole in a training patch '
            f'(cut where training meets validation or test, or larger than '
            f'{self.patch} px)'
        )

    def _grid_split(self, split: str) -> tuple[GeoDataset | None, GeoSampler | None]:
        if not self.split_cells[split]:
            return None, None
        dataset = self._split_dataset(split, clip=False)
        return dataset, CellGridSampler(
            dataset, self.patch, self.footprint, self.split_cells[split]
        )

    def _dataloader_factory(self, split: str) -> DataLoader[Batch]:
        if split != 'train' and getattr(self, f'{split}_sampler', None) is None:
            return cast(
                DataLoader[Batch], []
            )  # split not asked for: Lightning skips it
        return super()._dataloader_factory(split)

    def plot(self, sample: Batch, **kwargs: Any) -> Figure:  # type: ignore[override]
        """Plot a sample with :meth:`VectorObjects.plot`.

        Args:
            sample: A sample of :attr:`dataset`.
            **kwargs: Passed to :meth:`VectorObjects.plot`.

        Returns:
            The figure.
        """
        return self.labels.plot(sample, **kwargs)


class GeoDetectionDataModule(_GeoObjectsDataModule):
    """Object detection on your own georeferenced rasters and vector labels.

    Batches (after :func:`~torchgeo_ext.datamodules.detection.collate_detection`
    and the on-device augmentation): ``image`` float32 B x C x P x P,
    normalised by :attr:`normalisation`, the modalities stacked in the order
    given (band indices in :attr:`modalities`); ``bbox_xyxy`` (and with
    ``oriented=True`` ``bbox``, N x 8) and ``label`` as lists of per-image
    tensors; ``bounds`` and ``transform`` (B x 9, float64, TorchGeo's layout)
    locate each patch. Training adds random flips and 90 degree rotations
    that move the boxes with the image. The area is split geographically
    into train / val / test cells (see ``_GeoObjectsDataModule`` and
    docs/own_imagery.md): no validation or test pixel is in a training patch.
    """

    def _configure_batches(self) -> None:
        """Detection collation; normalisation, plus flips and rotations in training."""
        norm = self.normalisation
        self.collate_fn = cast(Any, self._collate)
        self.aug = DetectionAugmentation(mean=norm.offset, std=norm.scale)
        self.train_aug = self.aug
        if self.augment:
            self.train_aug = DetectionAugmentation(
                K.RandomHorizontalFlip(p=0.5),
                K.RandomVerticalFlip(p=0.5),
                K.RandomRotation90(times=(0, 3), p=0.5),
                mean=norm.offset,
                std=norm.scale,
            )

    def _collate(self, samples: Sequence[Batch]) -> Batch:
        drop = {'mask'} if self.oriented else {'mask', 'bbox'}
        return collate_detection(
            [{k: v for k, v in s.items() if k not in drop} for s in samples]
        )


class GeoSegmentationDataModule(_GeoObjectsDataModule):
    """Semantic segmentation on your own georeferenced rasters and vector polygons.

    Batches: ``image`` float32 B x C x P x P normalised by
    :attr:`normalisation`; ``mask`` int64 B x P x P with ``0`` for background
    and ``label + 1`` under each object; ``bounds`` and ``transform`` as for
    detection. :attr:`class_names` is therefore ``['background', *classes]``
    and :attr:`num_classes` counts the background (the model's outputs);
    :attr:`object_classes` keeps the object classes. Training adds random
    flips and 90 degree rotations applied identically to image and mask. The
    area is split geographically as for :class:`GeoDetectionDataModule`.
    """

    def _configure_batches(self) -> None:
        """Background-first class names; image + mask collation and augmentation."""
        #: The object classes (mask value ``k + 1`` for class ``k``).
        self.object_classes = list(self.class_names)
        self.class_names = ['background', *self.object_classes]
        self.num_classes = len(self.class_names)
        self.collate_fn = cast(Any, self._collate)
        self.aug = _SegmentationAugmentation(self.normalisation, augment=False)
        self.train_aug = _SegmentationAugmentation(
            self.normalisation, augment=self.augment
        )

    @staticmethod
    def _collate(samples: Sequence[Batch]) -> Batch:
        keys = ('image', 'mask', 'bounds', 'transform')
        return {k: torch.stack([s[k] for s in samples]) for k in keys}


class _SegmentationAugmentation(nn.Module):
    """Normalise a segmentation batch; optionally flip / rotate image and mask together."""

    def __init__(self, normalisation: Normalisation, augment: bool) -> None:
        super().__init__()
        self.normalisation = normalisation
        self.augment = augment

    def forward(self, batch: Batch) -> Batch:
        batch = dict(batch)
        image = self.normalisation.apply(batch['image'])
        mask = batch['mask']
        if self.augment:
            images, masks = [], []
            for x, y in zip(image, mask, strict=True):
                if torch.rand(()) < 0.5:
                    x, y = x.flip(-1), y.flip(-1)
                if torch.rand(()) < 0.5:
                    x, y = x.flip(-2), y.flip(-2)
                if x.shape[-1] == x.shape[-2] and torch.rand(()) < 0.5:
                    k = int(torch.randint(1, 4, ()))
                    x, y = x.rot90(k, (-2, -1)), y.rot90(k, (-2, -1))
                images.append(x)
                masks.append(y)
            image, mask = torch.stack(images), torch.stack(masks)
        batch['image'] = image.contiguous()
        batch['mask'] = mask.contiguous()
        return batch
