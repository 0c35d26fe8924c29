"""GeoTIFF writing (tiled, compressed, Cloud-Optimized, atomic) and co-registered reading."""

from __future__ import annotations

import contextlib
import functools
import json
import math
import os
import warnings
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import numpy as np
import rasterio
import rasterio.shutil
from numpy.typing import NDArray
from rasterio._err import CPLE_BaseError
from rasterio.crs import CRS
from rasterio.errors import CRSError, RasterioError, RasterioIOError
from rasterio.transform import Affine
from rasterio.windows import Window

from ..errors import InvalidInputError
from .atomic import atomic_output

__all__ = [
    'RasterStack',
    'RasterWriter',
    'as_numpy',
    'compression_threads',
    'crs_to_string',
    'gdal_cache_limit',
    'open_inputs',
    'to_affine',
    'to_crs',
    'transform_to_tuple',
    'write_raster',
]

#: Internal tile size of written GeoTIFFs.
BLOCKSIZE = 256

#: A CRS as a string (authority, WKT, PROJ), rasterio CRS or pyproj CRS.
type CRSLike = Any
#: An Affine or 6/9 coefficients (sequence, numpy array, torch tensor).
type TransformLike = Any
type PathLike = str | os.PathLike[str]


def to_crs(crs: CRSLike) -> CRS:
    """Convert a CRS given as a string (authority, WKT, PROJ), rasterio or pyproj CRS.

    Args:
        crs: The CRS.

    Returns:
        The rasterio CRS.

    Raises:
        ValueError: If *crs* is empty or not understood.
    """
    if isinstance(crs, CRS):
        return crs
    if crs is None or (isinstance(crs, str) and not crs.strip()):
        raise ValueError('a CRS is required')
    if hasattr(crs, 'to_wkt'):  # pyproj.CRS
        return CRS.from_wkt(crs.to_wkt())
    try:
        return CRS.from_user_input(crs)
    except CRSError as err:
        raise ValueError(f'not a CRS: {crs!r} ({err})') from err


def crs_to_string(crs: CRSLike) -> str:
    """Represent a CRS as a string that converts back to exactly the same CRS.

    ``EPSG:XXXX`` when the CRS is exactly that EPSG definition, otherwise WKT.

    Args:
        crs: The CRS (anything :func:`to_crs` accepts).

    Returns:
        An authority string or a WKT string.
    """
    crs = to_crs(crs)
    epsg = crs.to_epsg(confidence_threshold=100)
    if epsg is not None and CRS.from_epsg(epsg) == crs:
        return f'EPSG:{epsg}'
    return str(crs.to_wkt())


def as_numpy(x: Any, dtype: Any = None) -> NDArray[Any]:
    """A torch tensor (detached, on the CPU), numpy array or sequence as a numpy array.

    Args:
        x: The values.
        dtype: The wanted dtype (None: keep the values' own).

    Returns:
        The array (not a copy where none is needed).
    """
    if hasattr(x, 'detach'):  # torch tensor, duck-typed: export does not import torch
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=dtype)


def to_affine(transform: TransformLike) -> Affine:
    """Convert 6 (rasterio order) or 9 affine coefficients to an :class:`~affine.Affine`.

    Args:
        transform: An Affine, a sequence, numpy array or torch tensor of 6 or 9
            coefficients ``a, b, c, d, e, f[, 0, 0, 1]``.

    Returns:
        The affine transform.

    Raises:
        ValueError: If the coefficients are not 6 or 9 finite numbers.
    """
    if isinstance(transform, Affine):
        return transform
    values = as_numpy(transform, np.float64).reshape(-1)
    if values.size not in (6, 9) or not np.isfinite(values).all():
        raise ValueError(
            f'an affine transform needs 6 or 9 finite coefficients, got {values}'
        )
    return Affine(*(float(v) for v in values[:6]))


def transform_to_tuple(transform: TransformLike) -> tuple[float, ...]:
    """Return the 6 affine coefficients ``(a, b, c, d, e, f)`` in rasterio order.

    Args:
        transform: Anything :func:`to_affine` accepts.

    Returns:
        The six coefficients as floats.
    """
    return tuple(to_affine(transform))[:6]


def _writable_array(array: Any) -> NDArray[Any]:
    """The values as a numpy array of a dtype GeoTIFF stores (bool widened to uint8)."""
    out = as_numpy(array)
    if out.dtype == np.bool_:
        out = out.astype(np.uint8)
    return out


def _predictor(dtype: np.dtype[Any]) -> int:
    """The TIFF predictor: 3 (floating point) for float32/64, else 2 (float16 too)."""
    return 3 if dtype in (np.dtype(np.float32), np.dtype(np.float64)) else 2


def compression_threads(threads: int | None) -> str:
    """GDAL's ``NUM_THREADS`` value: *threads*, or every core when None."""
    if threads is None:
        return 'ALL_CPUS'
    if threads < 1:
        raise ValueError(f'threads must be positive, got {threads}')
    return str(threads)


@functools.cache
def _stream_compression() -> dict[str, Any]:
    """Creation options of the temporary stream that the COG driver then copies.

    The COG driver decompresses its source, so the stream is compressed only to
    bound its size on disk, as cheaply as GDAL allows: ZSTD at level 1 where
    the build has it (about 4x faster than DEFLATE at level 1), else none.
    """
    options = {'compress': 'zstd', 'zstd_level': 1}
    profile = {'driver': 'GTiff', 'width': 1, 'height': 1, 'count': 1, 'dtype': 'uint8'}
    try:
        with warnings.catch_warnings():  # a probe: not georeferenced
            warnings.simplefilter('ignore')
            with rasterio.MemoryFile() as mem, mem.open(**profile, **options):
                pass
    except (RasterioError, CPLE_BaseError):  # pragma: no cover - GDAL without ZSTD
        return {}
    return options


def _build_overviews(path: Path, width: int, height: int) -> None:
    """Average overviews in *path*, halving until they fit one block (as COG's AUTO)."""
    from rasterio.enums import Resampling

    factors, factor = [], 2
    while math.ceil(max(width, height) / (factor // 2)) > BLOCKSIZE:
        factors.append(factor)
        factor *= 2
    if factors:
        with rasterio.open(path, 'r+') as dst:
            dst.build_overviews(factors, Resampling.average)


class RasterWriter:
    """Streaming, atomic GeoTIFF writer.

    Windows are written into a tiled GeoTIFF beside the final path; on a
    clean exit it is renamed onto *path*. If the ``with`` block raises,
    nothing is left under *path*. With ``cog=False`` that GeoTIFF is the
    output, DEFLATE-compressed as it is written. With ``cog=True`` it is a
    lightly compressed stream that GDAL's COG driver copies once into the
    output (DEFLATE, overviews): the only full compression pass. Both
    compress on *threads* cores (GDAL ``NUM_THREADS``).

    Example::

        with RasterWriter('out.tif', width=w, height=h, count=1, dtype='float32',
                          crs='EPSG:32633', transform=t, nodata=float('nan')) as dst:
            dst.write(Window(0, 0, w, 256), rows)
    """

    def __init__(
        self,
        path: PathLike,
        *,
        width: int,
        height: int,
        count: int,
        dtype: str | np.dtype[Any] | type,
        crs: CRSLike,
        transform: TransformLike,
        nodata: float | None = None,
        band_names: Sequence[str] | None = None,
        tags: Mapping[str, Any] | None = None,
        cog: bool = True,
        overviews: bool = True,
        threads: int | None = None,
        scale: float | None = None,
        offset: float | None = None,
    ) -> None:
        """Initialise a new RasterWriter (nothing is opened before ``__enter__``).

        Args:
            path: Output GeoTIFF.
            width: Raster width in pixels.
            height: Raster height in pixels.
            count: Number of bands.
            dtype: Pixel type (numpy name).
            crs: Coordinate reference system.
            transform: Affine transform (6 or 9 coefficients, rasterio order).
            nodata: Nodata value (NaN allowed for float types).
            band_names: One description per band.
            tags: Dataset metadata; non-string values are stored as JSON. The
                inputs' STAC item and assets are added inside
                :func:`~torchgeo_ext.export.sources.recording_sources`.
            cog: Convert to a Cloud-Optimized GeoTIFF at close.
            overviews: Build overviews in the COG.
            threads: Compression threads (None: all cores).
            scale: GDAL scale of every band (value = stored * scale + offset).
            offset: GDAL offset of every band.

        Raises:
            ValueError: If sizes, band names or nodata are inconsistent.
        """
        if width <= 0 or height <= 0 or count <= 0:
            raise ValueError(f'invalid raster shape {count} x {height} x {width}')
        if band_names is not None and len(band_names) != count:
            raise ValueError(f'{len(band_names)} band names for {count} bands')
        self.path = Path(path)
        self.width, self.height, self.count = int(width), int(height), int(count)
        self.dtype = np.dtype(dtype)
        self.crs = to_crs(crs)
        self.transform = to_affine(transform)
        self.nodata = nodata
        if nodata is not None:
            if np.issubdtype(self.dtype, np.floating):
                ok = math.isnan(nodata) or abs(nodata) <= np.finfo(self.dtype).max
            else:
                info = np.iinfo(self.dtype)
                ok = not math.isnan(nodata) and info.min <= nodata <= info.max
            if not ok:
                raise ValueError(f'nodata {nodata} does not fit {self.dtype}')
        self.band_names = list(band_names) if band_names is not None else None
        from .sources import recorded_sources

        self.tags = {
            k: v if isinstance(v, str) else json.dumps(v)
            for k, v in {**recorded_sources(), **(tags or {})}.items()
        }
        self.cog = cog
        self.overviews = overviews
        self.threads = compression_threads(threads)
        self.scale, self.offset = scale, offset
        self._stack: contextlib.ExitStack | None = None
        self._dst: Any = None
        self._tmp: Path | None = None

    def __enter__(self) -> Self:
        """Open the temporary GeoTIFF.

        Returns:
            This writer.
        """
        stack = contextlib.ExitStack()
        try:
            self._tmp = stack.enter_context(atomic_output(self.path))
            target = (
                self._tmp.with_name(self._tmp.name + '.stream.tif')
                if self.cog
                else self._tmp
            )
            bs = BLOCKSIZE
            profile: dict[str, Any] = {
                'driver': 'GTiff',
                'width': self.width,
                'height': self.height,
                'count': self.count,
                'dtype': self.dtype.name,
                'crs': self.crs,
                'transform': self.transform,
                'nodata': self.nodata,
                'bigtiff': 'IF_SAFER',
                'interleave': 'band',
                'num_threads': self.threads,
            }
            if self.cog:  # the COG driver compresses: keep the stream cheap
                profile.update(_stream_compression())
            else:
                profile.update(compress='deflate', predictor=_predictor(self.dtype))
            if (
                self.width >= bs and self.height >= bs
            ) or self.width * self.height > bs * bs:
                profile.update(tiled=True, blockxsize=bs, blockysize=bs)
            self._stream_path = target
            self._dst = rasterio.open(target, 'w', **profile)
        except BaseException:
            stack.close()
            raise
        self._stack = stack
        return self

    def write(self, window: Window | tuple[int, int, int, int], data: Any) -> None:
        """Write a block of pixels.

        Args:
            window: Where to write: a rasterio Window or ``(col_off, row_off, width, height)``.
            data: Array (numpy or torch) of shape (count, height, width), or
                (height, width) for a single band.

        Raises:
            RuntimeError: If the writer is not open.
            ValueError: If the data does not match the window.
        """
        if self._dst is None:
            raise RuntimeError('RasterWriter is not open: use it as a context manager')
        if not isinstance(window, Window):
            window = Window(*window)
        arr = _writable_array(data)
        if arr.ndim == 2:
            arr = arr[None]
        if arr.shape != (self.count, int(window.height), int(window.width)):
            raise ValueError(f'data of shape {arr.shape} does not fit window {window}')
        self._dst.write(arr.astype(self.dtype, copy=False), window=window)

    def close(self, error: BaseException | None = None) -> None:
        """Finalise the output, or discard it when *error* is given.

        Args:
            error: The exception that aborts writing, if any.
        """
        if self._stack is None:
            return
        stack, self._stack = self._stack, None
        try:
            if error is None:
                self._finish()
            elif self._dst is not None:
                self._dst.close()
        except BaseException as err:
            if not stack.__exit__(type(err), err, err.__traceback__):
                raise
            return
        if error is None:
            stack.close()
        else:
            stack.__exit__(type(error), error, error.__traceback__)

    def _finish(self) -> None:
        dst = self._dst
        if self.band_names is not None:
            for i, name in enumerate(self.band_names, start=1):
                dst.set_band_description(i, name)
        if self.tags:
            dst.update_tags(**self.tags)
        if self.scale is not None:
            dst.scales = (self.scale,) * self.count
        if self.offset is not None:
            dst.offsets = (self.offset,) * self.count
        dst.close()
        self._dst = None
        if not self.cog:
            return
        assert self._tmp is not None
        options: dict[str, Any] = {
            'compress': 'DEFLATE',
            'predictor': 'FLOATING_POINT'
            if _predictor(self.dtype) == 3
            else 'STANDARD',
            'num_threads': self.threads,
            'blocksize': BLOCKSIZE,
            'bigtiff': 'IF_SAFER',
            'overviews': 'AUTO' if self.overviews else 'NONE',
            'overview_resampling': 'AVERAGE'
            if np.issubdtype(self.dtype, np.floating)
            else 'NEAREST',
        }
        if self.overviews and self.dtype == np.float16:
            # GDAL 3.12's COG driver fails to make Float16 overviews itself
            _build_overviews(self._stream_path, self.width, self.height)
            options['overviews'] = 'FORCE_USE_EXISTING'
        try:
            rasterio.shutil.copy(self._stream_path, self._tmp, driver='COG', **options)
        except RasterioError as err:  # pragma: no cover - depends on the GDAL build
            warnings.warn(
                f'{self.path}: writing a tiled GeoTIFF, not a COG ({err})', stacklevel=3
            )
            with contextlib.suppress(OSError):
                self._tmp.unlink()
            os.replace(self._stream_path, self._tmp)
        else:
            self._stream_path.unlink()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Finalise on success, discard on error."""
        self.close(exc)


def write_raster(
    path: PathLike,
    array: Any,
    *,
    crs: CRSLike,
    transform: TransformLike,
    nodata: float | None = None,
    band_names: Sequence[str] | None = None,
    tags: Mapping[str, Any] | None = None,
    cog: bool = True,
    threads: int | None = None,
) -> Path:
    """Write an array as a tiled, compressed, Cloud-Optimized GeoTIFF, atomically.

    Args:
        path: Output file.
        array: (C, H, W) or (H, W) numpy array or torch tensor.
        crs: Coordinate reference system.
        transform: Affine transform (6 or 9 coefficients, rasterio order).
        nodata: Nodata value.
        band_names: One description per band.
        tags: Dataset metadata (non-string values stored as JSON).
        cog: Write a Cloud-Optimized GeoTIFF (else a tiled GeoTIFF).
        threads: Compression threads (None: all cores).

    Returns:
        The output path.

    Raises:
        ValueError: If the array is not 2- or 3-dimensional.
    """
    arr = _writable_array(array)
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3:
        raise ValueError(f'expected a (C, H, W) or (H, W) array, got shape {arr.shape}')
    count, height, width = arr.shape
    with RasterWriter(
        path,
        width=width,
        height=height,
        count=count,
        dtype=arr.dtype,
        crs=crs,
        transform=transform,
        nodata=nodata,
        band_names=band_names,
        tags=tags,
        cog=cog,
        threads=threads,
    ) as dst:
        dst.write(Window(0, 0, width, height), arr)
    return dst.path


@contextlib.contextmanager
def gdal_cache_limit(megabytes: int | None) -> Iterator[None]:
    """Cap GDAL's raster block cache while streaming, then restore it.

    GDAL keeps decoded and dirty blocks in a process-wide cache (by default 5 %
    of the RAM); streaming a large raster through it makes the resident memory
    grow up to that cap. A small cap keeps memory flat: full blocks are flushed
    to disk early. The setting is process-wide for the duration of the block.

    Args:
        megabytes: The cap (None: leave the cache alone). A larger current cap
            is lowered; a smaller one is kept.

    Yields:
        Nothing.
    """
    if megabytes is None:
        yield
        return
    from rasterio.env import get_gdal_config, set_gdal_config

    previous = int(get_gdal_config('GDAL_CACHEMAX'))
    set_gdal_config('GDAL_CACHEMAX', min(previous, megabytes * 2**20))
    try:
        yield
    finally:
        set_gdal_config('GDAL_CACHEMAX', previous)


def _close_enough(a: Affine, b: Affine) -> bool:
    return all(math.isclose(x, y, rel_tol=1e-9, abs_tol=1e-9) for x, y in zip(a, b))


def _mask_kinds(ds: Any) -> list[str]:
    """How each band of *ds* marks invalid pixels: 'none', 'nodata', 'mask' or 'dataset'."""
    from rasterio.enums import MaskFlags

    kinds = []
    for flags in ds.mask_flag_enums:
        if MaskFlags.per_dataset in flags:
            kinds.append('dataset')
        elif MaskFlags.nodata in flags:
            kinds.append('nodata')
        elif MaskFlags.all_valid in flags:
            kinds.append('none')
        else:  # a mask band of its own (internal, .msk) or an alpha band
            kinds.append('mask')
    return kinds


class RasterStack:
    """Several co-registered rasters read as one stack of bands (modalities).

    Use :func:`open_inputs` to create one. Bands are stacked in the order of
    the files, and within a file in band order.
    """

    def __init__(
        self,
        paths: Sequence[PathLike],
        datasets: Sequence[Any],
        *,
        env: contextlib.ExitStack | None = None,
    ) -> None:
        """Initialise a new RasterStack from opened rasterio datasets.

        Args:
            paths: The inputs.
            datasets: Their open rasterio datasets (or warped views of them).
            env: Closed with the stack (the GDAL environment, warped files).
        """
        from .sources import source_name

        first = datasets[0]
        #: The inputs as given (local paths, URLs, GDAL paths or STAC assets).
        self.paths = list(paths)
        self.datasets = list(datasets)
        self._env = env
        self.crs: CRS = first.crs
        self.transform: Affine = first.transform
        self.width: int = first.width
        self.height: int = first.height
        self.count = sum(ds.count for ds in datasets)
        #: Band index ranges of each file in the stack, keyed by file stem
        #: (a STAC asset: its key).
        self.modalities: dict[str, list[int]] = {}
        start = 0
        for path, ds in zip(paths, datasets):
            self.modalities[source_name(path)] = list(range(start, start + ds.count))
            start += ds.count
        self.band_names = [
            desc or f'{source_name(path)}_{i + 1}'
            for path, ds in zip(paths, datasets)
            for i, desc in enumerate(ds.descriptions)
        ]
        #: Nodata value of each band (a VRT may give every band its own).
        self.nodata: list[float | None] = [
            None if nd is None else float(nd) for ds in datasets for nd in ds.nodatavals
        ]
        #: Per file, how its invalid pixels are found (see :meth:`read`).
        self._masks = [_mask_kinds(ds) for ds in datasets]

    @property
    def block_shape(self) -> tuple[int, int]:
        """(rows, columns) of the first input's internal blocks (COG tiles)."""
        rows, cols = self.datasets[0].block_shapes[0]
        return int(rows), int(cols)

    @property
    def shape(self) -> tuple[int, int, int]:
        """(bands, height, width)."""
        return self.count, self.height, self.width

    def read(self, window: Window) -> tuple[NDArray[np.float32], NDArray[np.bool_]]:
        """Read a window as float32, zero outside the raster and at invalid pixels.

        A pixel is invalid when any band marks it so: the band's own nodata
        value, NaN or infinity, or a GDAL mask (an internal or ``.msk`` mask,
        a per-dataset mask, an alpha band), as ``dataset.read_masks`` gives it.

        Args:
            window: Pixel window; it may extend beyond the raster.

        Returns:
            The (C, h, w) float32 array, and the (h, w) validity mask: False
            outside the raster and where any band is invalid.
        """
        row0, col0 = int(window.row_off), int(window.col_off)
        h, w = int(window.height), int(window.width)
        out = np.zeros((self.count, h, w), dtype=np.float32)
        valid = np.zeros((h, w), dtype=np.bool_)
        r0, r1 = max(row0, 0), min(row0 + h, self.height)
        c0, c1 = max(col0, 0), min(col0 + w, self.width)
        if r0 >= r1 or c0 >= c1:
            return out, valid
        inner = Window(c0, r0, c1 - c0, r1 - r0)
        ys, xs = slice(r0 - row0, r1 - row0), slice(c0 - col0, c1 - col0)
        bad = np.zeros((r1 - r0, c1 - c0), dtype=np.bool_)
        band = 0
        for band_file, (path, ds) in enumerate(zip(self.paths, self.datasets)):
            try:
                data = ds.read(window=inner)
            except (RasterioError, CPLE_BaseError) as err:
                # Truncated or corrupt files fail here, mid-run: name the file
                # and the window instead of GDAL's traceback.
                cause: BaseException = err
                while cause.__cause__ is not None:  # GDAL's own message is innermost
                    cause = cause.__cause__
                detail = ' '.join(str(cause).split())
                raise InvalidInputError(
                    path,
                    f'cannot read rows {r0}..{r1 - 1}, columns {c0}..{c1 - 1} '
                    f'(truncated or corrupt file?): {detail}',
                ) from err
            bad |= self._invalid(ds, self._masks[band_file], data, band, inner)
            out[band : band + ds.count, ys, xs] = data
            band += ds.count
        valid[ys, xs] = ~bad
        if bad.any():
            out[:, ys, xs][:, bad] = 0
        return out, valid

    def _invalid(
        self, ds: Any, kinds: list[str], data: NDArray[Any], band: int, window: Window
    ) -> NDArray[np.bool_]:
        """Pixels of one file's window that any of its bands marks invalid."""
        bad = np.zeros(data.shape[1:], dtype=np.bool_)
        floating = np.issubdtype(data.dtype, np.floating)
        for i, kind in enumerate(kinds):
            # the nodata value counts even where GDAL's mask flags prefer a mask
            nd = self.nodata[band + i]
            if nd is not None and not math.isnan(nd):
                bad |= data[i] == nd
            if kind == 'mask':
                bad |= ds.read_masks(i + 1, window=window) == 0
            elif kind == 'dataset' and i == 0:  # one mask for all bands
                bad |= ds.read_masks(1, window=window) == 0
            if floating:
                bad |= ~np.isfinite(data[i])
        return bad

    def close(self) -> None:
        """Close all files."""
        for ds in self.datasets:
            ds.close()
        if self._env is not None:
            self._env.close()

    def __enter__(self) -> Self:
        """Return self."""
        return self

    def __exit__(self, *args: object) -> None:
        """Close all files."""
        self.close()


def _warped_to(ds: Any, first: Any) -> Any:
    """*ds* resampled onto the grid of *first* (bilinear, as TorchGeo does for images)."""
    from rasterio.enums import Resampling
    from rasterio.vrt import WarpedVRT

    return WarpedVRT(
        ds,
        crs=first.crs,
        transform=first.transform,
        width=first.width,
        height=first.height,
        resampling=Resampling.bilinear,
    )


def _check_coregistered(path: str, ds: Any, ref: str, first: Any) -> None:
    """Refuse a raster whose CRS, size or transform differ from the first one's."""
    if ds.crs != first.crs:
        raise InvalidInputError(
            path,
            f'its CRS ({crs_to_string(ds.crs)[:80]}) differs from the CRS of '
            f'{ref} ({crs_to_string(first.crs)[:80]}); reproject it first',
        )
    if (ds.width, ds.height) != (first.width, first.height):
        raise InvalidInputError(
            path,
            f'its size {ds.width} x {ds.height} differs from the size of {ref} '
            f'({first.width} x {first.height}); inputs must be co-registered',
        )
    if not _close_enough(ds.transform, first.transform):
        raise InvalidInputError(
            path,
            f'its transform {tuple(ds.transform)[:6]} differs from the transform of '
            f'{ref} {tuple(first.transform)[:6]}; inputs must be co-registered',
        )


def open_inputs(paths: PathLike | Sequence[PathLike]) -> RasterStack:
    """Open one raster or several co-registered rasters as one stack of modalities.

    Paths may be local files, URLs or GDAL virtual paths (see
    :func:`~torchgeo_ext.export.sources.gdal_path`); network reads run with
    :data:`~torchgeo_ext.export.sources.CLOUD_READ_OPTIONS` while the stack
    is open. STAC assets (:class:`~torchgeo_ext.export.sources.AssetPath`)
    on another grid than the first input are warped onto it (bilinear);
    other inputs must be co-registered.

    Args:
        paths: One path or a sequence of paths.

    Returns:
        The opened stack (close it, or use it as a context manager).

    Raises:
        MissingInputError: If a file does not exist.
        InvalidInputError: If a file is not a raster GDAL can open (GDAL's
            reason given), has no CRS, or its CRS, transform or size differ
            from the first file's.
    """
    from .sources import check_source, reading_env

    if isinstance(paths, str | os.PathLike):
        paths = [paths]
    given = list(paths)
    if not given:
        raise ValueError('no input raster given')
    env = contextlib.ExitStack()
    datasets: list[Any] = []
    try:
        env.enter_context(reading_env(given))
        for path in given:
            target = check_source(path)
            try:
                ds = rasterio.open(target)
            except RasterioIOError as err:  # pragma: no cover - checked just above
                raise InvalidInputError(
                    path, f'not a raster GDAL can read ({err})'
                ) from err
            datasets.append(ds)
            if ds.crs is None:
                raise InvalidInputError(
                    path,
                    'the raster has no CRS; assign one '
                    '(e.g. gdal_edit.py -a_srs EPSG:XXXX FILE)',
                )
            first = datasets[0]
            if ds is first:
                continue
            from .sources import AssetPath

            if isinstance(path, AssetPath) and (
                ds.crs != first.crs
                or (ds.width, ds.height) != (first.width, first.height)
                or not _close_enough(ds.transform, first.transform)
            ):
                env.callback(ds.close)  # after its VRT (RasterStack.close)
                datasets[-1] = _warped_to(ds, first)
                continue
            _check_coregistered(os.fspath(path), ds, os.fspath(given[0]), first)
    except BaseException:
        for ds in reversed(datasets):
            ds.close()
        env.close()
        raise
    return RasterStack(given, datasets, env=env)
