"""Build the FYH dataset from raw FY-4A AGRI L1 and Himawari-8/9 L2 cloud files.

The pipeline, the navigation constants and the skip rules: docs/datasets/fyh.md.
"""

from __future__ import annotations

import datetime as dt
import functools
import glob
import math
import os
import re
import warnings
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..datasets.fyh import (
    CHANNELS,
    GRID_CRS,
    GRID_NORTH,
    GRID_RES,
    GRID_SHAPE,
    GRID_WEST,
    IGNORE_INDEX,
    TILE_SIZE,
    TILES_PER_ROW,
    grid_transform,
)
from ..errors import InvalidInputError, MissingInputError
from ..export.atomic import atomic_output, make_output_dir

#: Number of AGRI channels in a 4 km L1 file.
N_CHANNELS = len(CHANNELS)
#: Channel groups normalised jointly (0-based): reflective 1-6, emissive 7-14.
CHANNEL_GROUPS: tuple[tuple[int, int], ...] = ((0, 6), (6, 14))
#: A tile is kept when at most this many of its pixels are fill.
MAX_FILL = 1250

#: FY-4A sub-satellite longitude (degrees east).
FY4A_SUB_LON = 104.7
#: Earth semi-major axis (m), NSMC FY-4A navigation.
EARTH_A = 6378137.0
#: Earth semi-minor axis (m), NSMC FY-4A navigation.
EARTH_B = 6356752.3
#: Distance from the Earth's centre to the satellite (m).
SAT_DISTANCE = 42164000.0
#: ``(COFF = LOFF, CFAC = LFAC)`` per nominal resolution in metres.
NAVIGATION: dict[int, tuple[float, float]] = {
    4000: (1373.5, 10233137.0),
    2000: (2747.5, 20466274.0),
    1000: (5495.5, 40932549.0),
}

_FY4A_NAME = re.compile(
    r'^FY4[ABC]-_AGRI--_N_(?P<area>[A-Z]+)_(?P<lon>\d{4})E_L1-_FDI-_MULT_NOM_'
    r'(?P<start>\d{14})_(?P<end>\d{14})_(?P<res>\d{4})M_V\d{4}\.HDF$',
    re.IGNORECASE,
)
_HIMAWARI_NAME = re.compile(
    r'^NC_H0[89]_(?P<date>\d{8})_(?P<time>\d{4})_L2CLP\d*_.*\.nc$', re.IGNORECASE
)


@dataclass
class AGRIScene:
    """A calibrated FY-4A AGRI scan on its own (geostationary) grid."""

    path: str
    stem: str
    start: dt.datetime
    end: dt.datetime
    #: Calibrated channels, 14 x H x W float32, NaN where missing.
    data: np.ndarray
    #: Full-disk line/column of the file's first row/column.
    begin_line: int = 0
    begin_pixel: int = 0
    resolution: int = 4000
    sub_lon: float = FY4A_SUB_LON
    a: float = EARTH_A
    b: float = EARTH_B
    h: float = SAT_DISTANCE - EARTH_A
    #: The file's own latitude/longitude arrays (H x W), when present.
    lat: np.ndarray | None = None
    lon: np.ndarray | None = None


@dataclass
class HimawariProduct:
    """A Himawari L2 cloud property file and its nominal observation time."""

    path: str
    time: dt.datetime


@dataclass
class BuildReport:
    """What :func:`build_fyh` did."""

    #: Stems of the scenes that were tiled.
    scenes: list[str] = field(default_factory=list)
    #: Tiles written / dropped by the fill rule.
    tiles_written: int = 0
    tiles_dropped: int = 0
    #: ``(file, reason)`` for every skipped scene.
    skipped: list[tuple[str, str]] = field(default_factory=list)
    #: Scene GeoTIFFs written.
    geotiffs: list[str] = field(default_factory=list)

    def summary(self) -> str:
        """One-paragraph human summary.

        Returns:
            The summary text.
        """
        lines = [
            (
                f'{len(self.scenes)} scene(s) built, {self.tiles_written} tile(s) '
                f'written, {self.tiles_dropped} dropped (too many fill pixels), '
                f'{len(self.skipped)} scene(s) skipped'
            )
        ]
        lines += [f'  skipped {path}: {reason}' for path, reason in self.skipped]
        return '\n'.join(lines)


# --------------------------------------------------------------------------- I/O


def _attr_str(value: Any) -> str:
    """Decode an HDF5 attribute (bytes, numpy array of bytes, ...) to a string."""
    if isinstance(value, np.ndarray):
        value = value.ravel()[0] if value.size else ''
    if isinstance(value, bytes | np.bytes_):
        value = value.decode('utf-8', 'replace')
    return str(value).strip().strip('\x00')


def _attr_float(attrs: dict[str, Any], name: str) -> float | None:
    if name not in attrs:
        return None
    try:
        return float(np.asarray(attrs[name]).ravel()[0])
    except (TypeError, ValueError, IndexError):
        return float(_attr_str(attrs[name]))


def _parse_time(date: str, time: str) -> dt.datetime:
    text = f'{date}T{time}'
    for fmt in ('%Y-%m-%dT%H:%M:%S.%f', '%Y-%m-%dT%H:%M:%S', '%Y%m%dT%H%M%S'):
        try:
            return dt.datetime.strptime(text, fmt)
        except ValueError:
            continue
    raise ValueError(f'unrecognised date/time {text!r}')


#: What the HDF5/NetCDF readers raise on a file they cannot read.
_OPEN_ERRORS = (OSError, ValueError, KeyError, TypeError, RuntimeError)


def _open(path: str) -> Any:
    import xarray as xr

    try:
        return xr.open_dataset(
            path,
            engine='h5netcdf',
            phony_dims='sort',
            mask_and_scale=False,
            decode_times=False,
        )
    except FileNotFoundError:
        raise MissingInputError(path, 'file not found') from None
    except _OPEN_ERRORS as error:
        # NetCDF3 (classic) files are not HDF5: let xarray pick another engine.
        try:
            return xr.open_dataset(path, mask_and_scale=False, decode_times=False)
        except _OPEN_ERRORS:
            raise InvalidInputError(
                path, f'not a readable HDF5/NetCDF file ({error})'
            ) from error


# ------------------------------------------------------------------ calibration


def calibrate(
    counts: np.ndarray,
    table: np.ndarray,
    fill_value: float | None = None,
    valid_range: Sequence[float] | None = None,
    *,
    path: str | None = None,
    name: str = 'channel',
) -> np.ndarray:
    """Calibrate AGRI counts through a ``CALChannelXX`` lookup table.

    Args:
        counts: Integer counts (``NOMChannelXX``).
        table: The 1-D lookup table: the calibrated value of count ``n`` is
            ``table[n]``.
        fill_value: The counts' fill value (missing).
        valid_range: ``(min, max)`` valid counts.
        path: File named in errors.
        name: Channel named in errors.

    Returns:
        float32 calibrated values, NaN where the count is fill, invalid or
        beyond the table.

    Raises:
        InvalidInputError: If the table is not 1-D or is too short for the
            valid counts.
    """
    table = np.asarray(table)
    if table.ndim != 1 or table.size == 0:
        raise InvalidInputError(
            path, f'calibration table for {name} has shape {table.shape}, expected 1-D'
        )
    counts = np.asarray(counts).astype(np.int64)
    valid = np.ones(counts.shape, dtype=bool)
    if fill_value is not None:
        valid &= counts != int(fill_value)
    if valid_range is not None:
        low, high = (int(v) for v in valid_range)
        valid &= (counts >= low) & (counts <= high)
        needed = high + 1
    else:
        needed = int(counts[valid].max()) + 1 if valid.any() else 0
    valid &= counts >= 0
    if table.size < needed:
        raise InvalidInputError(
            path,
            f'calibration table for {name} has {table.size} entries but counts reach '
            f'{needed - 1}; expected at least {needed} entries',
        )
    valid &= counts < table.size
    out = np.full(counts.shape, np.nan, dtype=np.float32)
    out[valid] = table[counts[valid]]
    return out


def read_agri(path: str) -> AGRIScene:
    """Read and calibrate a FY-4A AGRI L1 4 km (or 2/1 km) HDF5 file.

    Args:
        path: The ``FY4A-_AGRI--_N_..._L1-_FDI-_MULT_NOM_..._4000M_V0001.HDF`` file.

    Returns:
        The calibrated scene.

    Raises:
        InvalidInputError: If variables, attributes or tables are missing or wrong.
        MissingInputError: If the file does not exist.
    """
    name = os.path.basename(path)
    match = _FY4A_NAME.match(name)
    with _open(path) as ds:
        attrs = dict(ds.attrs)
        _check_agri_variables(ds, path)
        start, end = _agri_times(attrs, match, path)
        channels = [_agri_channel(ds, i, path) for i in range(1, 15)]
        shape = channels[0].shape
        for i, values in enumerate(channels, 1):
            if values.shape != shape:
                raise InvalidInputError(
                    path,
                    f'NOMChannel{i:02d} has shape {values.shape}, NOMChannel01 has {shape}',
                )
        lat, lon = _agri_lat_lon(ds, shape, path)
    begin_line, begin_pixel, resolution = _agri_grid(
        attrs, shape, lat is None, match, path
    )
    sub_lon, a, b, h = _agri_geometry(attrs)
    return AGRIScene(
        path=path,
        stem=os.path.splitext(name)[0],
        start=start,
        end=end,
        data=np.stack(channels),
        begin_line=begin_line,
        begin_pixel=begin_pixel,
        resolution=resolution,
        sub_lon=sub_lon,
        a=a,
        b=b,
        h=h,
        lat=lat,
        lon=lon,
    )


def _check_agri_variables(ds: Any, path: str) -> None:
    """The 14 count (``NOM``) and calibration (``CAL``) variables must all be there."""
    wanted = [f'{p}Channel{i:02d}' for i in range(1, 15) for p in ('NOM', 'CAL')]
    missing = [v for v in wanted if v not in ds.variables]
    if missing:
        raise InvalidInputError(
            path,
            f'not an AGRI L1 4 km file: missing variables {", ".join(missing[:4])}'
            + (f' and {len(missing) - 4} more' if len(missing) > 4 else ''),
        )


def _agri_times(
    attrs: dict[str, Any], match: re.Match[str] | None, path: str
) -> tuple[dt.datetime, dt.datetime]:
    """Scan start and end: the file attributes, else the file name."""
    try:
        start = _parse_time(
            _attr_str(attrs['Observing Beginning Date']),
            _attr_str(attrs['Observing Beginning Time']),
        )
        end = _parse_time(
            _attr_str(attrs['Observing Ending Date']),
            _attr_str(attrs['Observing Ending Time']),
        )
    except (KeyError, ValueError):
        if match is None:
            raise InvalidInputError(
                path,
                'no observation times: neither "Observing Beginning/Ending '
                'Date/Time" attributes nor an AGRI L1 file name',
            ) from None
        start = dt.datetime.strptime(match.group('start'), '%Y%m%d%H%M%S')
        end = dt.datetime.strptime(match.group('end'), '%Y%m%d%H%M%S')
    return start, end


def _agri_channel(ds: Any, i: int, path: str) -> np.ndarray[Any, Any]:
    """Channel ``i``'s counts calibrated with its table; fill values become NaN."""
    nom = ds[f'NOMChannel{i:02d}']
    cal = ds[f'CALChannel{i:02d}']
    counts = np.asarray(nom.values)
    if counts.ndim != 2:
        raise InvalidInputError(
            path, f'NOMChannel{i:02d} has {counts.ndim} dimensions, expected 2'
        )
    fill = _attr_float(nom.attrs, 'FillValue')
    if fill is None:
        fill = _attr_float(nom.attrs, '_FillValue')
    valid_range = nom.attrs.get('valid_range')
    vr = None
    if valid_range is not None and np.asarray(valid_range).size == 2:
        vr = [float(v) for v in np.asarray(valid_range).ravel()]
    table = (
        np.asarray(cal.values).ravel()
        if cal.ndim > 1 and 1 in cal.shape
        else cal.values
    )
    values = calibrate(counts, table, fill, vr, path=path, name=f'CALChannel{i:02d}')
    cal_fill = _attr_float(cal.attrs, 'FillValue')
    if cal_fill is not None:
        values[values == cal_fill] = np.nan
    return values


def _agri_lat_lon(
    ds: Any, shape: tuple[int, ...], path: str
) -> tuple[np.ndarray[Any, Any] | None, np.ndarray[Any, Any] | None]:
    """Per-pixel latitude and longitude where the file has them, else ``(None, None)``."""
    for lat_name, lon_name in (('Latitude', 'Longitude'), ('lat', 'lon')):
        if lat_name in ds.variables and lon_name in ds.variables:
            lat = np.asarray(ds[lat_name].values, dtype=np.float64)
            lon = np.asarray(ds[lon_name].values, dtype=np.float64)
            if lat.shape != shape or lon.shape != shape:
                raise InvalidInputError(
                    path,
                    f'{lat_name} {lat.shape} / {lon_name} {lon.shape} do not '
                    f'match the channels {shape}',
                )
            return lat, lon
    return None, None


def _agri_grid(
    attrs: dict[str, Any],
    shape: tuple[int, ...],
    navigate: bool,
    match: re.Match[str] | None,
    path: str,
) -> tuple[int, int, int]:
    """First line and pixel on the full-disk grid and the resolution (m), checked.

    ``navigate``: the file has no lat/lon, so the grid must locate its pixels.
    """
    begin_line = int(_attr_float(attrs, 'Begin Line Number') or 0)
    begin_pixel = int(_attr_float(attrs, 'Begin Pixel Number') or 0)
    end_line = _attr_float(attrs, 'End Line Number')
    if navigate and end_line is not None and int(end_line) - begin_line + 1 != shape[0]:
        raise InvalidInputError(
            path,
            f'Begin/End Line Number {begin_line}..{int(end_line)} do not match '
            f'the {shape[0]} rows of the channels',
        )
    resolution = int(match.group('res')) if match is not None else 4000
    if navigate and resolution not in NAVIGATION:
        raise InvalidInputError(
            path, f'no navigation constants for {resolution} m files and no lat/lon'
        )
    return begin_line, begin_pixel, resolution


def _agri_geometry(attrs: dict[str, Any]) -> tuple[float, float, float, float]:
    """Sub-satellite longitude, Earth semi-axes (m) and satellite height (m)."""
    sub_lon = _attr_float(attrs, 'NOMCenterLon')
    a = _attr_float(attrs, 'dEA')
    a = EARTH_A if a is None else (a * 1e3 if a < 1e4 else a)
    flat = _attr_float(attrs, 'dObRecFlat')
    b = EARTH_B * a / EARTH_A if flat is None else a * (1 - 1 / flat)
    h = _attr_float(attrs, 'NOMSatHeight')
    h = SAT_DISTANCE - a if h is None else (h - a if h > 4.2e7 else h)
    return FY4A_SUB_LON if sub_lon is None else sub_lon, a, b, h


# ------------------------------------------------------------------ geolocation


def grid_coordinates() -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre latitudes (rows) and longitudes (columns) of the FYH grid.

    Returns:
        ``(lat, lon)``: 900 latitudes from 50 down to 5.05, 1000 longitudes
        from 85 to 134.95.
    """
    lat = GRID_NORTH - GRID_RES * np.arange(GRID_SHAPE[0])
    lon = GRID_WEST + GRID_RES * np.arange(GRID_SHAPE[1])
    return lat, lon


def geos_line_column(
    lat: np.ndarray,
    lon: np.ndarray,
    resolution: int = 4000,
    sub_lon: float = FY4A_SUB_LON,
    a: float = EARTH_A,
    b: float = EARTH_B,
    h: float = SAT_DISTANCE - EARTH_A,
) -> tuple[np.ndarray, np.ndarray]:
    """Full-disk line and column of geodetic points for the FY-4A AGRI grid.

    Projects with PROJ's ``geos`` projection (``sweep=y``, the CGMS convention
    used by FY-4) and converts the scan angles to line/column with the
    navigation's ``LOFF/LFAC`` and ``COFF/CFAC``:
    ``column = COFF + x_deg * CFAC / 2**16``, ``line = LOFF - y_deg * LFAC / 2**16``.

    Args:
        lat: Latitudes (degrees).
        lon: Longitudes (degrees), same shape as *lat*.
        resolution: Nominal resolution in metres (4000, 2000 or 1000).
        sub_lon: Sub-satellite longitude (degrees east).
        a: Earth semi-major axis (m).
        b: Earth semi-minor axis (m).
        h: Satellite height above the equator (m).

    Returns:
        ``(line, column)`` as float arrays, 0-based (pixel centres at integers);
        NaN where the point is not visible from the satellite.
    """
    from pyproj import Proj

    proj = Proj(proj='geos', h=h, a=a, b=b, lon_0=sub_lon, sweep='y', units='m')
    x, y = proj(np.asarray(lon, dtype=np.float64), np.asarray(lat, dtype=np.float64))
    x = np.where(np.isfinite(x) & (np.abs(x) < 1e20), x, np.nan)
    y = np.where(np.isfinite(y) & (np.abs(y) < 1e20), y, np.nan)
    offset, factor = NAVIGATION[resolution]
    column = offset + np.degrees(x / h) * factor / 2**16
    line = offset - np.degrees(y / h) * factor / 2**16
    return line, column


@functools.lru_cache(maxsize=4)
def _grid_line_column(
    resolution: int, sub_lon: float, a: float, b: float, h: float
) -> tuple[np.ndarray, np.ndarray]:
    """Nearest full-disk line/column of every FYH grid point (-1 if not visible).

    Every scan of a satellite shares its navigation, so this is cached.
    """
    glat, glon = grid_coordinates()
    lat2, lon2 = np.meshgrid(glat, glon, indexing='ij')
    line, column = geos_line_column(lat2, lon2, resolution, sub_lon, a, b, h)
    visible = np.isfinite(line) & np.isfinite(column)
    out_line = np.full(line.shape, -1, dtype=np.int64)
    out_column = np.full(line.shape, -1, dtype=np.int64)
    out_line[visible] = np.floor(line[visible] + 0.5).astype(np.int64)
    out_column[visible] = np.floor(column[visible] + 0.5).astype(np.int64)
    out_line.flags.writeable = False
    out_column.flags.writeable = False
    return out_line, out_column


def _nearest_from_latlon(
    scene_lat: np.ndarray,
    scene_lon: np.ndarray,
    lat: np.ndarray,
    lon: np.ndarray,
    max_distance: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Nearest source pixel for each target point, by great-circle distance."""
    from scipy.spatial import cKDTree

    def xyz(la: np.ndarray, lo: np.ndarray) -> np.ndarray:
        la, lo = np.radians(la), np.radians(lo)
        return np.stack(
            [np.cos(la) * np.cos(lo), np.cos(la) * np.sin(lo), np.sin(la)], axis=-1
        )

    ok = np.isfinite(scene_lat) & np.isfinite(scene_lon) & (np.abs(scene_lat) <= 90)
    source = np.flatnonzero(ok.ravel())
    flat_index = np.full(lat.shape, -1, dtype=np.int64)
    if source.size == 0:
        return flat_index, np.zeros(lat.shape, dtype=bool)
    tree = cKDTree(xyz(scene_lat.ravel()[source], scene_lon.ravel()[source]))
    chord = 2 * math.sin(math.radians(max_distance) / 2)
    # Only query targets within the source's latitude range (cheap, always safe).
    source_lat = scene_lat.ravel()[source]
    near = (lat >= source_lat.min() - max_distance) & (
        lat <= source_lat.max() + max_distance
    )
    dist, idx = tree.query(xyz(lat[near], lon[near]), distance_upper_bound=chord)
    hit = np.isfinite(dist)
    targets = np.flatnonzero(near.ravel())[hit]
    found = np.zeros(lat.size, dtype=bool)
    found[targets] = True
    flat_index = flat_index.ravel()
    flat_index[targets] = source[idx[hit]]
    return flat_index.reshape(lat.shape), found.reshape(lat.shape)


def _pixel_spacing(lat: np.ndarray, lon: np.ndarray) -> float:
    """Median great-circle distance (degrees) between row-neighbouring pixels."""
    la, lo = np.radians(lat), np.radians(lon)
    cos_d = np.sin(la[:, :-1]) * np.sin(la[:, 1:]) + np.cos(la[:, :-1]) * np.cos(
        la[:, 1:]
    ) * np.cos(lo[:, 1:] - lo[:, :-1])
    d = np.degrees(np.arccos(np.clip(cos_d, -1, 1)))
    d = d[np.isfinite(d) & (d > 0)]
    return float(np.median(d)) if d.size else GRID_RES


def regrid_agri(scene: AGRIScene, max_distance: float | None = None) -> np.ndarray:
    """Resample a calibrated scan onto the FYH grid (nearest neighbour).

    Args:
        scene: The calibrated scan.
        max_distance: With file lat/lon, the largest distance (degrees of arc)
            between a grid point and its source pixel (default: 0.75 times the
            file's median pixel spacing, a bit more than half a pixel diagonal).

    Returns:
        float32 array 14 x 900 x 1000, NaN where the scan has no data.
    """
    rows, cols = scene.data.shape[1:]
    out = np.full((N_CHANNELS, *GRID_SHAPE), np.nan, dtype=np.float32)
    if scene.lat is not None and scene.lon is not None:
        glat, glon = grid_coordinates()
        lat2, lon2 = np.meshgrid(glat, glon, indexing='ij')
        if max_distance is None:
            max_distance = 0.75 * _pixel_spacing(scene.lat, scene.lon)
        flat, found = _nearest_from_latlon(
            scene.lat, scene.lon, lat2, lon2, max_distance
        )
        r, c = np.divmod(flat[found], cols)
        out[:, found] = scene.data[:, r, c]
        return out
    line, column = _grid_line_column(
        scene.resolution, scene.sub_lon, scene.a, scene.b, scene.h
    )
    r = line - scene.begin_line
    c = column - scene.begin_pixel
    inside = (line >= 0) & (r >= 0) & (r < rows) & (c >= 0) & (c < cols)
    out[:, inside] = scene.data[:, r[inside], c[inside]]
    return out


# ------------------------------------------------------------------- Himawari


def find_himawari(root: str) -> list[HimawariProduct]:
    """Find Himawari L2 cloud property files (``NC_H08_YYYYMMDD_HHMM_L2CLP...nc``).

    Args:
        root: Directory searched recursively (e.g. ``Himawari/YYYYMM/DD/HH``).

    Returns:
        Products sorted by time.
    """
    products = []
    for path in glob.glob(os.path.join(root, '**', '*.nc'), recursive=True):
        match = _HIMAWARI_NAME.match(os.path.basename(path))
        if match is not None:
            time = dt.datetime.strptime(
                match.group('date') + match.group('time'), '%Y%m%d%H%M'
            )
            products.append(HimawariProduct(path, time))
    return sorted(products, key=lambda p: (p.time, p.path))


def pair_product(
    start: dt.datetime,
    end: dt.datetime,
    products: Sequence[HimawariProduct],
    tolerance: dt.timedelta = dt.timedelta(0),
) -> HimawariProduct | None:
    """The Himawari product whose time falls inside a scan's window.

    Args:
        start: Scan start.
        end: Scan end.
        products: Candidates.
        tolerance: Widening of the window on both sides.

    Returns:
        The product inside ``[start - tolerance, end + tolerance]`` closest to
        the window's centre, or None.
    """
    low, high = start - tolerance, end + tolerance
    centre = start + (end - start) / 2
    inside = [p for p in products if low <= p.time <= high]
    if not inside:
        return None
    return min(inside, key=lambda p: (abs(p.time - centre), p.path))


def _nearest_1d(source: np.ndarray, target: np.ndarray, tol: float) -> np.ndarray:
    """Index of the nearest source coordinate for each target, -1 if farther than tol."""
    order = np.argsort(source)
    sorted_source = source[order]
    pos = np.clip(np.searchsorted(sorted_source, target), 1, len(source) - 1)
    left, right = sorted_source[pos - 1], sorted_source[pos]
    pick = np.where(np.abs(target - left) <= np.abs(right - target), pos - 1, pos)
    if len(source) == 1:
        pick = np.zeros_like(pos)
    index = order[pick]
    return np.where(np.abs(source[index] - target) <= tol, index, -1)


def read_cltype(path: str) -> np.ndarray:
    """Read Himawari ``CLTYPE`` on the FYH grid.

    Args:
        path: The L2 cloud property NetCDF file.

    Returns:
        uint8 mask 900 x 1000: classes 0..9, 10 for fill (255), unknown (10),
        any other value and points outside the file's extent.

    Raises:
        InvalidInputError: If ``CLTYPE`` or its coordinates are missing.
    """
    with _open(path) as ds:
        missing = [
            v for v in ('CLTYPE', 'latitude', 'longitude') if v not in ds.variables
        ]
        if missing:
            raise InvalidInputError(
                path, f'not a Himawari L2 cloud product: missing {", ".join(missing)}'
            )
        cltype = np.asarray(ds['CLTYPE'].values)
        lat = np.asarray(ds['latitude'].values, dtype=np.float64).ravel()
        lon = np.asarray(ds['longitude'].values, dtype=np.float64).ravel()
    if cltype.ndim == 3 and cltype.shape[0] == 1:
        cltype = cltype[0]
    if cltype.shape != (lat.size, lon.size):
        raise InvalidInputError(
            path,
            f'CLTYPE has shape {cltype.shape}, expected (latitude, longitude) = '
            f'({lat.size}, {lon.size})',
        )
    values = cltype.astype(np.int64)
    if np.issubdtype(cltype.dtype, np.signedinteger):
        values = np.where(values < 0, values + 256, values)  # signed byte storage
    values = np.where((values >= 0) & (values < IGNORE_INDEX), values, IGNORE_INDEX)
    glat, glon = grid_coordinates()
    tol = GRID_RES / 2 + 1e-6
    rows = _nearest_1d(lat, glat, tol)
    cols = _nearest_1d(lon, glon, tol)
    out = np.full(GRID_SHAPE, IGNORE_INDEX, dtype=np.uint8)
    rr, cc = np.ix_(np.flatnonzero(rows >= 0), np.flatnonzero(cols >= 0))
    out[rr, cc] = values[rows[rows >= 0][:, None], cols[cols >= 0][None, :]]
    return out


# ------------------------------------------------------- normalise and tile


def normalise(image: np.ndarray) -> tuple[np.ndarray, list[tuple[float, float]]]:
    """Min-max normalise channels 1-6 jointly and 7-14 jointly (per scene).

    Args:
        image: 14 x H x W calibrated values, NaN where missing.

    Returns:
        The float64 image in [0, 1] (missing pixels 0) and the ``(min, max)``
        of each channel group.
    """
    out = np.zeros(image.shape, dtype=np.float64)
    stats = []
    for first, last in CHANNEL_GROUPS:
        group = image[first:last]
        finite = np.isfinite(group)
        if not finite.any():
            stats.append((math.nan, math.nan))
            continue
        # min/max ignoring NaN (and +-inf, replaced by NaN first when present).
        values = (
            group
            if finite.all() or not np.isinf(group).any()
            else (np.where(finite, group, np.nan))
        )
        low, high = float(np.nanmin(values)), float(np.nanmax(values))
        scale = high - low if high > low else 1.0
        target = out[first:last]
        np.subtract(group, low, out=target, dtype=np.float64)
        target /= scale
        target[~finite] = 0.0
        stats.append((low, high))
    return out, stats


def iter_tiles(
    image: np.ndarray, mask: np.ndarray, max_fill: int = MAX_FILL
) -> Iterator[tuple[int, np.ndarray, np.ndarray, bool]]:
    """Cut a scene into 100 x 100 tiles ``k = 10 i + j``.

    Args:
        image: C x 900 x 1000 image.
        mask: 900 x 1000 mask (10 = fill).
        max_fill: Largest number of fill pixels of a kept tile.

    Yields:
        ``(k, image tile C x 100 x 100, mask tile, keep)``.
    """
    rows, cols = mask.shape
    for i in range(rows // TILE_SIZE):
        for j in range(cols // TILE_SIZE):
            window = np.s_[
                i * TILE_SIZE : (i + 1) * TILE_SIZE, j * TILE_SIZE : (j + 1) * TILE_SIZE
            ]
            tile_mask = mask[window]
            keep = int((tile_mask == IGNORE_INDEX).sum()) <= max_fill
            yield TILES_PER_ROW * i + j, image[(slice(None), *window)], tile_mask, keep


def write_mat(path: str, array: np.ndarray) -> None:
    """Write ``{'data': array}`` to a MATLAB v5 file, atomically.

    Args:
        path: Destination ``.mat`` file.
        array: The array.
    """
    import scipy.io

    with atomic_output(path) as tmp, open(tmp, 'wb') as f:
        scipy.io.savemat(f, {'data': array}, do_compression=True)


def write_scene_geotiffs(
    out_dir: str,
    stem: str,
    image: np.ndarray,
    mask: np.ndarray,
    stats: Sequence[tuple[float, float]],
    cog: bool = True,
) -> tuple[str, str]:
    """Write a scene's 14-band image and its label as GeoTIFFs (EPSG:4326).

    Both go through :func:`torchgeo_ext.export.raster.write_raster` (tiled,
    compressed, Cloud-Optimized, atomic).

    Args:
        out_dir: Directory of the scene files.
        stem: FY-4A file stem.
        image: 14 x 900 x 1000 normalised image (fill pixels 0).
        mask: 900 x 1000 mask (10 = fill, the label's nodata).
        stats: Normalisation ``(min, max)`` of the two channel groups, stored
            as tags ``C01_C06_MIN`` etc. so physical values can be recovered.
        cog: Write Cloud-Optimized GeoTIFFs (with overviews); else plain tiled
            GeoTIFFs (faster).

    Returns:
        Paths of the image and label files.
    """
    from ..export.raster import write_raster

    image_path = os.path.join(out_dir, f'{stem}_image.tif')
    label_path = os.path.join(out_dir, f'{stem}_label.tif')
    (lo1, hi1), (lo2, hi2) = stats
    tags = {
        'C01_C06_MIN': lo1,
        'C01_C06_MAX': hi1,
        'C07_C14_MIN': lo2,
        'C07_C14_MAX': hi2,
        'NORMALISATION': 'per-scene min-max, channels 1-6 and 7-14 jointly',
    }
    write_raster(
        image_path,
        image.astype(np.float32),
        crs=GRID_CRS,
        transform=grid_transform(),
        band_names=CHANNELS,
        tags=tags,
        cog=cog,
    )
    write_raster(
        label_path,
        mask.astype(np.uint8),
        crs=GRID_CRS,
        transform=grid_transform(),
        nodata=IGNORE_INDEX,
        band_names=['cloud type'],
        cog=cog,
    )
    return image_path, label_path


# ------------------------------------------------------------------- driver


def find_agri(root: str) -> list[str]:
    """Find FY-4A AGRI L1 HDF5 files (``*.HDF``/``*.hdf``, recursively).

    Args:
        root: Directory such as ``FY4A/`` holding ``YYYYMMDD/`` folders.

    Returns:
        Sorted file paths.
    """
    files = glob.glob(os.path.join(root, '**', '*'), recursive=True)
    return sorted(f for f in files if f.lower().endswith('.hdf') and os.path.isfile(f))


def build_scene(
    agri_path: str,
    products: Sequence[HimawariProduct],
    out: str,
    split: str = 'train',
    geotiff: bool = False,
    max_fill: int = MAX_FILL,
    tolerance: dt.timedelta = dt.timedelta(0),
    report: BuildReport | None = None,
) -> BuildReport:
    """Build the tiles (and optional GeoTIFFs) of one FY-4A scan.

    Args:
        agri_path: The FY-4A AGRI L1 file.
        products: Himawari products to pair with.
        out: Output root (``mat<split>``, ``matmask<split>``, ``scenes``).
        split: ``'train'`` or ``'test'``.
        geotiff: Also write the scene GeoTIFFs.
        max_fill: Largest number of fill pixels of a kept tile.
        tolerance: Widening of the scan window when pairing.
        report: Report to update (a new one by default).

    Returns:
        The report.

    Raises:
        InvalidInputError: For unusable input (the caller decides to skip).
        MissingInputError: If a file is missing.
    """
    report = BuildReport() if report is None else report
    scene = read_agri(agri_path)
    product = pair_product(scene.start, scene.end, products, tolerance)
    if product is None:
        raise InvalidInputError(
            agri_path,
            f'no Himawari L2 cloud product with a time inside the scan window '
            f'{scene.start:%Y-%m-%d %H:%M:%S}..{scene.end:%H:%M:%S}',
        )
    mask = read_cltype(product.path)
    calibrated = regrid_agri(scene)
    no_data = ~np.isfinite(calibrated).all(axis=0)
    mask[no_data] = IGNORE_INDEX
    image, stats = normalise(calibrated)
    image_dir = os.path.join(out, f'mat{split}')
    mask_dir = os.path.join(out, f'matmask{split}')
    # Created through the output layer: removed again if the build is interrupted.
    make_output_dir(image_dir)
    make_output_dir(mask_dir)
    for k, image_tile, mask_tile, keep in iter_tiles(image, mask, max_fill):
        if not keep:
            report.tiles_dropped += 1
            continue
        name = f'{scene.stem}_{k}.mat'
        write_mat(os.path.join(image_dir, name), image_tile.transpose(1, 2, 0))
        write_mat(os.path.join(mask_dir, name), mask_tile.astype(np.uint8))
        report.tiles_written += 1
    if geotiff:
        scene_dir = os.path.join(out, 'scenes')
        make_output_dir(scene_dir)
        report.geotiffs += write_scene_geotiffs(
            scene_dir, scene.stem, image, mask, stats
        )
    report.scenes.append(scene.stem)
    return report


def build_fyh(
    fy4a_dir: str,
    himawari_dir: str,
    out: str,
    split: str = 'train',
    geotiff: bool = False,
    max_fill: int = MAX_FILL,
    tolerance: dt.timedelta = dt.timedelta(0),
    progress: bool = False,
) -> BuildReport:
    """Build the FYH ``.mat`` tiles (and optional scene GeoTIFFs) from raw files.

    Per FY-4A scan (DIAnet, arXiv 2401.03182; layout in
    :class:`~torchgeo_ext.datasets.fyh.FYH`): read and calibrate the 14
    channels, geolocate and resample (nearest) onto the FYH 0.05 degree grid,
    pair with the Himawari L2 cloud product inside the scan's time window,
    normalise per scene (channels 1-6 and 7-14 jointly, min-max), tile
    100 x 100 and keep tiles with at most ``max_fill`` fill pixels. A scan with
    a problem (missing variables, a calibration table of the wrong length, no
    Himawari product in its window, an unreadable file) is skipped with its
    reason in :attr:`BuildReport.skipped` (and a warning); the build goes on.
    Each step in detail: ``docs/datasets/fyh.md``.

    Args:
        fy4a_dir: Directory of FY-4A AGRI L1 HDF5 files (searched recursively).
        himawari_dir: Directory of Himawari L2 cloud property NetCDF files.
        out: Output root.
        split: Split folder to write: ``'train'`` or ``'test'``.
        geotiff: Also write one image + label GeoTIFF per scene.
        max_fill: Largest number of fill pixels of a kept tile (paper: 1250).
        tolerance: Widening of each scan's window when pairing (default none).
        progress: Show a progress bar over the scans (tqdm, on stderr).

    Returns:
        What was built and what was skipped, with reasons.

    Raises:
        MissingInputError: If an input directory does not exist or holds no files.
        ValueError: If *split* is invalid.
    """
    if split not in ('train', 'test'):
        raise ValueError(f"split must be 'train' or 'test', not {split!r}")
    for directory in (fy4a_dir, himawari_dir):
        if not os.path.isdir(directory):
            raise MissingInputError(directory, 'directory not found')
    from ..export.outputs import check_outputs, directory_output

    # An output root that is a file, unwritable or one of the input folders
    # fails here, once, instead of as a skip reason for every scene.
    check_outputs([directory_output(out, 'the output root')], [fy4a_dir, himawari_dir])
    if max_fill < 0:
        raise ValueError(f'max_fill must not be negative, got {max_fill}')
    agri_files, products = _find_inputs(fy4a_dir, himawari_dir)
    report = BuildReport()
    iterator: Iterable[str] = agri_files
    if progress:
        from tqdm import tqdm

        iterator = tqdm(agri_files, desc='FYH scenes', unit='scan')
    for path in iterator:
        try:
            build_scene(
                path, products, out, split, geotiff, max_fill, tolerance, report
            )
        except (InvalidInputError, MissingInputError) as error:
            reason = _skip_reason(error, path)
            report.skipped.append((path, reason))
            warnings.warn(f'FYH builder skipped {path}: {reason}', stacklevel=2)
    return report


def _find_inputs(
    fy4a_dir: str, himawari_dir: str
) -> tuple[list[str], list[HimawariProduct]]:
    """The AGRI scans and the Himawari products of the input folders; none is an error."""
    agri_files = find_agri(fy4a_dir)
    if not agri_files:
        raise MissingInputError(fy4a_dir, 'no FY-4A AGRI L1 *.HDF files found')
    products = find_himawari(himawari_dir)
    if not products:
        raise MissingInputError(
            himawari_dir,
            'no Himawari L2 cloud files (NC_H08_YYYYMMDD_HHMM_L2CLP*.nc) found',
        )
    return agri_files, products


def _skip_reason(error: InvalidInputError | MissingInputError, scan: str) -> str:
    """Why a scan was skipped: the problem, prefixed by the file when not the scan."""
    if error.path is not None and os.path.abspath(error.path) != os.path.abspath(scan):
        return f'{error.path}: {error.problem}'
    return error.problem
