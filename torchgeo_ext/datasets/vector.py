"""Objects drawn in a GIS (polygons, rotated rectangles, points) as a TorchGeo GeoDataset."""

from __future__ import annotations

import os
import pathlib
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, cast

import geopandas as gpd
import matplotlib.patches as mpatches
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import rasterio.features
import shapely
import torch
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure
from numpy.typing import NDArray
from pyproj import CRS
from rasterio.transform import Affine
from torch import Tensor
from torchgeo.datasets import DatasetNotFoundError, GeoDataset
from torchgeo.datasets.utils import GeoSlice, Path

from ..errors import InvalidInputError
from .detection import AnnotationCounts, count_issue, total_counts
from .intersection import query_georeference

Sample = dict[str, Any]

#: File suffixes read when a directory is given (GeoPandas/pyogrio formats).
VECTOR_SUFFIXES = frozenset(
    {
        '.gpkg',
        '.geojson',
        '.json',
        '.shp',
        '.parquet',
        '.geoparquet',
        '.fgb',
        '.gml',
        '.kml',
        '.sqlite',
    }
)

_POLYGONAL = ('Polygon', 'MultiPolygon')
_POINTS = ('Point', 'MultiPoint')


def _read_vector(path: str) -> gpd.GeoDataFrame:
    """Read one vector file with GeoPandas (GeoParquet by suffix, else pyogrio)."""
    try:
        if pathlib.Path(path).suffix.lower() in ('.parquet', '.geoparquet'):
            return gpd.read_parquet(path)
        return gpd.read_file(path)
    except (OSError, ValueError, RuntimeError) as error:  # pyogrio/pyarrow errors
        raise InvalidInputError(path, f'cannot be read as a vector file: {error}')


def _no_objects(files: Sequence[str], skipped: AnnotationCounts) -> InvalidInputError:
    """The error for label files that hold no usable object (empty or all skipped)."""
    others = (
        f' (nor in the {len(files) - 1} other label files)' if len(files) > 1 else ''
    )
    reasons = total_counts({f: skipped[f] for f in files if f in skipped})
    if reasons:
        detail = ', '.join(f'{k}: {n}' for k, n in reasons.items())
        problem = f'no usable objects in the layer{others}; skipped {detail}'
    else:
        problem = f'no objects in the layer{others}: label some objects first'
    return InvalidInputError(files[0], problem)


def _polygonal_part(geometry: Any) -> Any:
    """The polygons of a (repaired) geometry, or None when it has none."""
    if geometry.geom_type in _POLYGONAL:
        return geometry
    if geometry.geom_type == 'GeometryCollection':
        parts = [g for g in shapely.get_parts(geometry) if g.geom_type in _POLYGONAL]
        polygons = [p for g in parts for p in shapely.get_parts(g)]
        if polygons:
            return shapely.MultiPolygon(polygons).buffer(0)
    return None


def _rasterize_objects(
    pixel_geometries: NDArray[Any],
    labels: NDArray[np.int64],
    visible: NDArray[np.float64],
    height: int,
    width: int,
) -> NDArray[np.int64]:
    """The mask of objects in pixel coordinates: ``label + 1``, 0 for background.

    Where objects overlap, the one with the smaller visible area is drawn last (on top).
    """
    if not len(pixel_geometries):
        return np.zeros((height, width), dtype=np.int64)
    order = np.argsort(-visible, kind='stable')
    shapes = [
        (geom, int(lab) + 1)
        for geom, lab in zip(pixel_geometries[order], labels[order], strict=True)
    ]
    return rasterio.features.rasterize(
        shapes, out_shape=(height, width), transform=Affine.identity(), dtype='int32'
    ).astype(np.int64)


def _to_pixels(
    geometries: np.ndarray[Any, Any], x0: float, y1: float, xres: float, yres: float
) -> np.ndarray[Any, Any]:
    """Map coordinates to the patch's pixel coordinates (pixel edges at integers), float64."""

    def affine(coords: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
        out = np.empty_like(coords, dtype=np.float64)
        out[:, 0] = (coords[:, 0] - x0) / xres
        out[:, 1] = (y1 - coords[:, 1]) / yres
        return out

    return cast(np.ndarray[Any, Any], shapely.transform(geometries, affine))


def rotated_rectangle_corners(geometries: Sequence[Any]) -> Tensor:
    """Minimum rotated rectangles of pixel-space geometries as N x 8 corners.

    The corners follow the library's oriented-box contract
    (:mod:`torchgeo_ext.ops.obb`): the rectangle as ``(cx, cy, w, h, angle)``
    in the long-edge convention (``w >= h``, ``angle`` in ``[-pi/2, pi/2)``),
    then its corners as :func:`~torchgeo_ext.ops.obb.obb_to_poly` orders
    them (top-left in the box frame, then clockwise on screen). So
    ``obb_to_poly(poly_to_obb(corners))`` gives the same corners back.

    Args:
        geometries: Polygons in pixel coordinates.

    Returns:
        float64 tensor N x 8.
    """
    if not len(geometries):
        return torch.zeros((0, 8), dtype=torch.float64)
    rectangles = shapely.minimum_rotated_rectangle(np.asarray(geometries, dtype=object))
    quads = []
    for rectangle in rectangles:
        coords = np.asarray(shapely.get_coordinates(rectangle), dtype=np.float64)
        if len(coords) < 4:  # degenerate (a segment or a point): pad by repeats
            coords = np.resize(coords, (4, 2))
        quads.append(coords[:4])
    pts = np.stack(quads)  # N x 4 x 2
    e0, e1 = pts[:, 1] - pts[:, 0], pts[:, 2] - pts[:, 1]
    l0, l1 = np.hypot(*e0.T), np.hypot(*e1.T)
    long0 = l0 >= l1
    edge = np.where(long0[:, None], e0, e1)
    w, h = np.where(long0, l0, l1), np.where(long0, l1, l0)
    angle = np.arctan2(edge[:, 1], edge[:, 0])
    angle = np.remainder(angle + np.pi / 2, np.pi) - np.pi / 2
    # same arithmetic as obb_to_poly, in float64 numpy (torch is slow on tiny tensors)
    cx, cy = pts[:, :, 0].mean(1), pts[:, :, 1].mean(1)
    cos, sin = np.cos(angle), np.sin(angle)
    ux, uy = cos * w / 2, sin * w / 2
    vx, vy = -sin * h / 2, cos * h / 2
    corners = np.stack(
        [
            cx - ux - vx,
            cy - uy - vy,
            cx + ux - vx,
            cy + uy - vy,
            cx + ux + vx,
            cy + uy + vy,
            cx - ux + vx,
            cy - uy + vy,
        ],
        axis=1,
    )
    return torch.from_numpy(corners)


class VectorObjects(GeoDataset):
    """Labelled objects from vector files as a TorchGeo :class:`~torchgeo.datasets.GeoDataset`.

    Combine it with the images through TorchGeo's ``&`` (or
    :func:`~torchgeo_ext.datasets.intersection.intersect` for one float64
    georeference per sample); a query then returns the stacked ``image`` and
    these labels for the same patch.

    Dataset format:

    * any vector format GeoPandas reads through pyogrio (GeoPackage, GeoJSON,
      Shapefile, FlatGeobuf, ...) or GeoParquet (``.parquet``/``.geoparquet``),
      in any CRS (a file without CRS is an error); one or more files or
      directories (directories are searched for the suffixes in
      :data:`VECTOR_SUFFIXES`);
    * one feature per object: a polygon or multipolygon (outlines, rotated
      rectangles), or a point (then ``point_size`` gives the side of the square
      drawn around it, in units of the dataset CRS);
    * a class column (``class_column``) with any values (names or numbers).

    Empty geometries, lines and features without a class value are skipped;
    invalid polygons are repaired with :func:`shapely.make_valid`; both are
    counted per file in :attr:`skipped` and :attr:`repaired` and reported in
    one warning.

    Dataset classes: ``classes`` is a list (class ``i`` is ``classes[i]``), a
    mapping from class value to id (several values may share an id), or
    ``None`` for the sorted unique values of all files. :attr:`classes` holds
    the names by id. A value not in ``classes`` is an error that lists them.

    Samples (a query ``[xmin:xmax:xres, ymin:ymax:yres, tmin:tmax]``, H x W
    pixels of ``xres`` x ``yres``; every coordinate computed in float64 from the
    query and the geometries, never from TorchGeo's float32 ``bounds``):

    * ``bbox_xyxy``: float32 N x 4, axis-aligned envelope of each object,
      clipped to the patch, in pixel-edge coordinates (``0 <= x <= W``);
    * ``bbox``: float32 N x 8, the minimum rotated rectangle of each (clipped)
      object, corners ``x1 y1 ... x4 y4`` as in
      :func:`rotated_rectangle_corners`;
    * ``label``: int64 N, class ids;
    * ``mask``: int64 H x W, ``label + 1`` under every object's visible part,
      0 for background (smaller objects drawn over larger ones);
    * ``bounds`` and ``transform``: float64, TorchGeo's 9-value layout.

    An object cut by the patch edge is clipped and kept when at least
    ``min_visible`` of its area is inside the patch, else dropped from the
    object lists (its visible pixels stay in ``mask``: marking them background
    would teach the wrong class).

    If you use this dataset in your research, please cite TorchGeo:

    * https://doi.org/10.1145/3557915.3560953
    """

    filename_glob = '*'

    _source: gpd.GeoDataFrame
    class_to_id: dict[Any, int]
    classes: list[str]
    objects: gpd.GeoDataFrame

    def __init__(
        self,
        paths: Path | Iterable[Path] = 'data',
        class_column: str = 'class',
        classes: Sequence[Any] | Mapping[Any, int] | None = None,
        crs: CRS | None = None,
        res: float | tuple[float, float] | None = None,
        min_visible: float = 0.5,
        point_size: float | None = None,
        transforms: Callable[[Sample], Sample] | None = None,
    ) -> None:
        """Initialise a new VectorObjects dataset.

        Args:
            paths: One or more vector files or directories to search.
            class_column: Name of the column holding each object's class.
            classes: Class list (ids by position), mapping value -> id, or
                None for the sorted unique values.
            crs: CRS of the dataset (default: the first file's); geometries are
                reprojected to it.
            res: Resolution in units of the CRS (default: set by the raster
                dataset it is intersected with).
            min_visible: Fraction of an object's area that must lie inside a
                patch for the object to be kept.
            point_size: Side of the square around point labels (CRS units).
            transforms: A function/transform that takes a sample and returns a
                transformed version.

        Raises:
            DatasetNotFoundError: If no vector file is found.
            InvalidInputError: For a file without CRS or class column, class
                values not in ``classes``, point labels without ``point_size``,
                or label files without a single usable object.
        """
        self.paths = paths
        self.class_column = class_column
        self.min_visible = float(min_visible)
        self.point_size = point_size
        self.transforms = transforms
        #: Per-file counts of skipped objects, ``{file: {reason: count}}``.
        self.skipped: AnnotationCounts = {}
        #: Per-file counts of repaired objects (invalid geometries made valid).
        self.repaired: AnnotationCounts = {}
        if not 0.0 <= self.min_visible <= 1.0:
            raise ValueError(f'min_visible must be in [0, 1], got {min_visible}')
        if point_size is not None and point_size <= 0:
            raise ValueError(f'point_size must be positive, got {point_size}')

        files = self._vector_files()
        if not files:
            raise DatasetNotFoundError(self)
        self._source = self._read_all(files, crs)
        self.class_to_id = self._class_ids(classes)
        self.classes = self._class_names()
        ids = [self.class_to_id[v] for v in self._source['value']]
        self._source['label'] = np.asarray(ids, dtype=np.int64)
        self._warn_counts()
        if res is not None:
            self._res = (
                (float(res), float(res))
                if isinstance(res, int | float)
                else (float(res[0]), float(res[1]))
            )
        self._build(self._source.crs)

    def _read_all(self, files: list[str], crs: CRS | None) -> gpd.GeoDataFrame:
        """Read every file, warn of those with no usable object, reproject, concat."""
        read = {path: self._read(path) for path in files}
        frames = [f for f in read.values() if f is not None]
        if not frames:
            raise _no_objects(files, self.skipped)
        for path in (p for p, f in read.items() if f is None):
            # stacklevel: this method, __init__, then the caller who named the file
            warnings.warn(f'{path}: no usable objects', UserWarning, stacklevel=3)
        target = CRS.from_user_input(crs) if crs is not None else frames[0].crs
        objects = pd.concat([f.to_crs(target) for f in frames], ignore_index=True)
        return gpd.GeoDataFrame(objects, geometry='geometry', crs=target)

    def _warn_counts(self) -> None:
        """Warn once with the totals of skipped and repaired objects, if any."""
        totals = total_counts(self.skipped) | {
            f'repaired {k}': v for k, v in total_counts(self.repaired).items()
        }
        if totals:
            detail = ', '.join(f'{k}: {n}' for k, n in totals.items())
            warnings.warn(
                f'VectorObjects: {detail} (per file in `.skipped` / `.repaired`)',
                UserWarning,
                stacklevel=3,
            )

    # -- reading ------------------------------------------------------------------

    def _vector_files(self) -> list[str]:
        """The vector files: given files as they are, directories searched by suffix.

        URLs and GDAL virtual paths are files (their GDAL path), checked with an
        OGR open.
        """
        paths = (
            [self.paths] if isinstance(self.paths, str | os.PathLike) else self.paths
        )
        from ..export.sources import check_vector_source, is_virtual

        files: set[str] = set()
        for path in paths:
            if is_virtual(path):  # a URL or GDAL path: checked by opening it
                files.add(check_vector_source(path))
            elif os.path.isdir(path):
                for found in pathlib.Path(path).rglob('*'):
                    if found.suffix.lower() in VECTOR_SUFFIXES and found.is_file():
                        files.add(str(found))
            elif os.path.exists(path):
                files.add(os.fspath(path))
            else:
                warnings.warn(f'{path}: not found, ignored', UserWarning, stacklevel=3)
        return sorted(files)

    def _read(self, path: str) -> gpd.GeoDataFrame | None:
        """Read one file: checked, cleaned objects with their class values."""
        frame = _read_vector(path)
        if frame.crs is None:
            raise InvalidInputError(
                path, 'has no CRS; assign one in your GIS (e.g. QGIS: Layer > Set CRS)'
            )
        if self.class_column not in frame.columns:
            columns = [c for c in frame.columns if c != frame.geometry.name]
            raise InvalidInputError(
                path,
                f'has no class column {self.class_column!r} (columns: {columns}); '
                'set class_column',
            )
        values: list[Any] = []
        geometries: list[shapely.Geometry] = []
        points: list[bool] = []
        geometry: Any
        for value, geometry in zip(frame[self.class_column], frame.geometry):
            if geometry is None or geometry.is_empty:
                count_issue(self.skipped, path, 'empty geometry')
                continue
            if value is None or (np.ndim(value) == 0 and bool(pd.isna(value))):
                count_issue(self.skipped, path, 'no class value')
                continue
            if geometry.geom_type in _POINTS:
                if self.point_size is None:
                    raise InvalidInputError(
                        path,
                        'has point labels; give point_size (box side in CRS units)',
                    )
                for point in shapely.get_parts(geometry):
                    values.append(value)
                    geometries.append(point)
                    points.append(True)
                continue
            if not geometry.is_valid:
                geometry = _polygonal_part(shapely.make_valid(geometry))
                if geometry is None or geometry.is_empty:
                    count_issue(self.skipped, path, 'invalid geometry')
                    continue
                count_issue(self.repaired, path, 'invalid geometry')
            if geometry.geom_type not in _POLYGONAL:
                count_issue(self.skipped, path, f'{geometry.geom_type} geometry')
                continue
            values.append(value)
            geometries.append(geometry)
            points.append(False)
        if not geometries:
            return None  # reported by the caller (an error if no file has objects)
        return gpd.GeoDataFrame(
            {'value': values, 'point': points, 'filepath': path},
            geometry=geometries,
            crs=frame.crs,
        )

    def _class_ids(
        self, classes: Sequence[Any] | Mapping[Any, int] | None
    ) -> dict[Any, int]:
        """Map class values to ids; values not in ``classes`` are an error."""
        values = self._source['value']
        if classes is None:
            unique = set(values)
            try:
                ordered = sorted(unique)
            except TypeError:  # mixed types: order by their text
                ordered = sorted(unique, key=str)
            return {v: i for i, v in enumerate(ordered)}
        if isinstance(classes, Mapping):
            mapping = {k: int(v) for k, v in classes.items()}
            if any(v < 0 for v in mapping.values()):
                raise ValueError(f'class ids must be non-negative: {mapping}')
        elif isinstance(classes, str):
            raise TypeError('classes must be a list or a mapping, not a string')
        else:
            mapping = {v: i for i, v in enumerate(classes)}
        # numbers read from a file may be matched by their text and vice versa
        by_text = {str(k): v for k, v in mapping.items()}
        for value in set(values):
            if value not in mapping and str(value) in by_text:
                mapping[value] = by_text[str(value)]
        unknown = values[~values.isin(list(mapping))]
        if len(unknown):
            for path, group in unknown.groupby(self._source['filepath']):
                bad = sorted({str(v) for v in group})
                raise InvalidInputError(
                    str(path),
                    f'class values not in classes: {bad} (classes: {list(classes)})',
                )
        return mapping

    def _class_names(self) -> list[str]:
        """Class names by id (values sharing an id are joined by ``/``)."""
        ids = set(self.class_to_id.values()) if self.class_to_id else set()
        n = max(ids) + 1 if ids else 0
        names: list[list[str]] = [[] for _ in range(n)]
        seen: set[str] = set()
        for value, k in self.class_to_id.items():
            text = str(value)
            if text not in seen:
                names[k].append(text)
                seen.add(text)
        return ['/'.join(parts) or f'class_{k}' for k, parts in enumerate(names)]

    def _build(self, crs: CRS) -> None:
        """Objects and the file index in ``crs`` (points become squares there)."""
        objects = self._source.to_crs(crs)
        geometry = objects.geometry.values
        if objects['point'].any():
            assert self.point_size is not None
            half = self.point_size / 2
            pts = objects['point'].to_numpy()
            xy = shapely.get_coordinates(geometry[pts])
            geometry[pts] = shapely.box(
                xy[:, 0] - half, xy[:, 1] - half, xy[:, 0] + half, xy[:, 1] + half
            )
        objects = objects.set_geometry(np.asarray(geometry, dtype=object), crs=crs)
        #: The objects in the dataset CRS: ``label``, ``filepath``, ``geometry``.
        self.objects = objects
        # plain arrays and a spatial tree for queries (pandas indexing is slow)
        self._geometries = objects.geometry.to_numpy()
        self._labels = objects['label'].to_numpy().astype(np.int64)
        self._filepaths = objects['filepath'].to_numpy()
        self._tree: shapely.STRtree | None = None
        files = sorted(set(objects['filepath']))
        boxes = [
            shapely.box(*objects.geometry[objects['filepath'] == f].total_bounds)
            for f in files
        ]
        interval = (pd.Timestamp.min, pd.Timestamp.max)
        index = pd.IntervalIndex.from_tuples(
            [interval] * len(files), closed='both', name='datetime'
        )
        self.index = gpd.GeoDataFrame(
            {'filepath': files}, index=index, geometry=boxes, crs=crs
        )

    def __getstate__(self) -> dict[str, Any]:
        """Pickle without the spatial tree (rebuilt on first query, e.g. in a worker).

        Returns:
            The instance's state.
        """
        state = dict(self.__dict__)
        state['_tree'] = None
        return state

    # -- GeoDataset ---------------------------------------------------------------

    @property
    def crs(self) -> CRS:
        """:term:`coordinate reference system (CRS)` of the dataset.

        Returns:
            The CRS.
        """
        return cast(CRS, self.index.crs)

    @crs.setter
    def crs(self, new_crs: CRS) -> None:
        """Reproject the objects (and their index) to another CRS.

        Args:
            new_crs: The new CRS.
        """
        if new_crs == self.crs:
            return
        self._build(CRS.from_user_input(new_crs))

    @property
    def num_classes(self) -> int:
        """Number of classes (ids ``0`` to ``num_classes - 1``)."""
        return len(self.classes)

    def __getitem__(self, index: GeoSlice) -> Sample:
        """Return the objects of a patch in its pixel coordinates.

        Args:
            index: ``[xmin:xmax:xres, ymin:ymax:yres, tmin:tmax:tres]`` coordinates.

        Returns:
            The sample (see the class docstring).

        Raises:
            IndexError: If the query does not overlap any label file.
            ValueError: If the resolution is unknown.
        """
        x, y, t = self._disambiguate_slice(index)
        files = self.index.iloc[
            self.index.index.overlaps(pd.Interval(t.start, t.stop))
        ].cx[x.start : x.stop, y.start : y.stop]
        if files.empty:
            raise IndexError(
                f'index: {index} not found in dataset with bounds: {self.bounds}'
            )
        if not x.step or not y.step:
            raise ValueError(
                'VectorObjects has no resolution: pass res= or intersect it with a '
                'raster dataset (which sets it)'
            )
        x0, x1, xres = float(x.start), float(x.stop), float(x.step)
        y0, y1, yres = float(y.start), float(y.stop), float(y.step)
        width, height = round((x1 - x0) / xres), round((y1 - y0) / yres)
        if width < 1 or height < 1:
            raise ValueError(
                f'query {index} is smaller than one pixel of {xres} x {yres}'
            )

        if self._tree is None:
            self._tree = shapely.STRtree(self._geometries)
        hits = np.sort(self._tree.query(shapely.box(x0, y0, x1, y1), 'intersects'))
        if len(files) < len(self.index):  # objects of the files of this time only
            hits = hits[np.isin(self._filepaths[hits], files['filepath'].to_numpy())]
        pixel = _to_pixels(self._geometries[hits], x0, y1, xres, yres)
        clipped = shapely.clip_by_rect(pixel, 0.0, 0.0, width, height)
        area = shapely.area(pixel)
        visible = shapely.area(clipped)
        fraction = np.divide(visible, area, out=np.zeros_like(visible), where=area > 0)
        labels = self._labels[hits]

        present = visible > 0
        keep = present & (fraction >= self.min_visible - 1e-9)
        kept = list(clipped[keep])
        if kept:
            xyxy = torch.from_numpy(shapely.bounds(np.asarray(kept, dtype=object)))
        else:
            xyxy = torch.zeros((0, 4), dtype=torch.float64)

        mask = _rasterize_objects(
            clipped[present], labels[present], visible[present], height, width
        )
        bounds, transform = query_georeference(self, index)
        sample: Sample = {
            'bbox_xyxy': xyxy.float(),
            'bbox': rotated_rectangle_corners(kept).float(),
            'label': torch.from_numpy(labels[keep].astype(np.int64)),
            'mask': torch.from_numpy(mask),
            'bounds': bounds,
            'transform': transform,
        }
        if self.transforms is not None:
            sample = self.transforms(sample)
        return sample

    def plot(
        self, sample: Sample, show_titles: bool = True, suptitle: str | None = None
    ) -> Figure:
        """Plot a sample: the image (if any) with the boxes, and the mask.

        Args:
            sample: A sample of this dataset or of its intersection with images
                (``image`` C x H x W; the first three bands, or the first band,
                are shown, stretched to their 2-98 percentiles).
            show_titles: Whether to title the panels.
            suptitle: Optional figure title.

        Returns:
            The figure.
        """
        has_image = 'image' in sample
        ncols = 2 if has_image else 1
        fig, axs = plt.subplots(1, ncols, figsize=(5 * ncols, 5), squeeze=False)
        ax = axs[0, 0]
        if has_image:
            image = sample['image'].detach().cpu().double()
            image = image[:3] if image.shape[0] >= 3 else image[:1]
            array = image.numpy()
            lo, hi = np.percentile(array, (2, 98), axis=(1, 2), keepdims=True)
            array = np.clip((array - lo) / np.maximum(hi - lo, 1e-12), 0, 1)
            if array.shape[0] == 1:
                ax.imshow(array[0], cmap='gray')
            else:
                ax.imshow(array.transpose(1, 2, 0))
        cmap = plt.get_cmap('tab10')
        colors: list[Any] = ['black', *(cmap(k % 10) for k in range(len(self.classes)))]
        mask_style: dict[str, Any] = {
            'cmap': ListedColormap(colors),
            'vmin': 0,
            'vmax': len(colors) - 1,
            'interpolation': 'nearest',
        }
        if not has_image:
            ax.imshow(sample['mask'].cpu().numpy(), **mask_style)
        corners = sample['bbox'].detach().cpu().reshape(-1, 4, 2).numpy()
        for poly, lab in zip(corners, sample['label'].tolist(), strict=True):
            color = cmap(lab % 10)
            ax.add_patch(
                mpatches.Polygon(poly, closed=True, fill=False, edgecolor=color, lw=1.2)
            )
            name = self.classes[lab] if 0 <= lab < len(self.classes) else str(lab)
            ax.text(*poly[0], name, color=color, fontsize=7, va='bottom')
        for xyxy in sample['bbox_xyxy'].detach().cpu().numpy():
            x0, y0, x1, y1 = xyxy
            ax.add_patch(
                mpatches.Rectangle(
                    (x0, y0),
                    x1 - x0,
                    y1 - y0,
                    fill=False,
                    edgecolor='white',
                    lw=0.6,
                    ls='--',
                )
            )
        ax.axis('off')
        if show_titles:
            ax.set_title('objects (rotated rectangles; dashed: bbox_xyxy)')
        if has_image:
            axs[0, 1].imshow(sample['mask'].cpu().numpy(), **mask_style)
            axs[0, 1].axis('off')
            if show_titles:
                axs[0, 1].set_title('mask (0 = background)')
        if suptitle is not None:
            fig.suptitle(suptitle)
        fig.tight_layout()
        return fig
