"""Single hyperspectral scenes read from ``.mat``, ENVI and GeoTIFF files."""

from __future__ import annotations

import math
import os
import re
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import InvalidInputError, MissingInputError

#: Official HAD100 band selection for AVIRIS-NG: 425 -> 276 bands
#: (index ranges 15:109, 118:145, 158:187, 227:274, 328:407).
AVIRIS_NG_BANDS: tuple[int, ...] = tuple(
    int(i) for i in np.r_[15:109, 118:145, 158:187, 227:274, 328:407]
)

#: Official HAD100 band selection for AVIRIS-Classic: 224 -> 162 bands
#: (index ranges 7:57, 65:79, 85:104, 122:149, 172:224).
AVIRIS_BANDS: tuple[int, ...] = tuple(
    int(i) for i in np.r_[7:57, 65:79, 85:104, 122:149, 172:224]
)

#: Raw band counts of the two sensors.
AVIRIS_NG_NUM_BANDS = 425
AVIRIS_NUM_BANDS = 224

#: No-data sentinels of the AVIRIS products.
NODATA_VALUES: tuple[float, ...] = (-9999.0, 1e-34)

#: Extensions tried, in order, for the data file of an ENVI header.
ENVI_DATA_EXTENSIONS = ('.dat', '.img', '.bil', '.bip', '.bsq', '.raw', '')

_MAT_DATA_KEYS = ('data', 'hsi', 'image', 'X')
_MAT_MAP_KEYS = ('map', 'gt', 'mask', 'groundtruth', 'label')


def _mat_arrays(path: Path) -> dict[str, np.ndarray]:
    """Read the numeric arrays of a ``.mat`` file (v5 or v7.3).

    Args:
        path: The file.

    Returns:
        Arrays by key, in MATLAB axis order.

    Raises:
        InvalidInputError: If the file is not a readable MATLAB file.
    """
    import h5py
    import scipy.io

    if h5py.is_hdf5(path):
        # MATLAB v7.3 is HDF5: h5py returns the axes reversed.
        arrays: dict[str, np.ndarray] = {}
        with h5py.File(path, 'r') as f:
            for key, value in f.items():
                if isinstance(value, h5py.Dataset) and value.dtype.kind in 'biuf':
                    arrays[key] = np.asarray(value[()]).T
        return arrays
    try:
        contents = scipy.io.loadmat(path)
    except Exception as err:
        raise InvalidInputError(path, f'not a readable MATLAB file ({err})') from err
    return {
        k: np.asarray(v)
        for k, v in contents.items()
        if not k.startswith('__')
        and isinstance(v, np.ndarray)
        and v.dtype.kind in 'biuf'
    }


def _pick(
    arrays: dict[str, np.ndarray], keys: Sequence[str], ndim: int
) -> tuple[str, np.ndarray] | None:
    """Choose an array by preferred key, else the only one of rank ``ndim``."""
    lowered = {k.lower(): k for k in arrays}
    for key in keys:
        if key.lower() in lowered and arrays[lowered[key.lower()]].ndim == ndim:
            name = lowered[key.lower()]
            return name, arrays[name]
    candidates = [(k, v) for k, v in arrays.items() if v.ndim == ndim]
    if len(candidates) == 1:
        return candidates[0]
    return None


def read_mat_mask(path: str | os.PathLike[str]) -> np.ndarray:
    """Read a binary ground-truth map from a ``.mat`` file.

    Looks for the keys ``map``, ``gt``, ``mask``, ``groundtruth``, ``label``
    (case-insensitive), else takes the file's only 2-D array.

    Args:
        path: The file.

    Returns:
        int64 H x W array, 1 for anomaly, 0 for background.

    Raises:
        MissingInputError: If the file does not exist.
        InvalidInputError: If no 2-D map can be found.
    """
    path = Path(path)
    if not path.is_file():
        raise MissingInputError(path, 'ground-truth file not found')
    picked = _pick(_mat_arrays(path), _MAT_MAP_KEYS, 2)
    if picked is None:
        raise InvalidInputError(
            path, f'no 2-D ground-truth map (expected one of keys {_MAT_MAP_KEYS})'
        )
    return (picked[1] != 0).astype(np.int64)


def read_envi_header(path: str | os.PathLike[str]) -> dict[str, str]:
    """Parse an ENVI header into raw ``key -> value`` strings.

    Braced values may span lines; keys are lower-cased.

    Args:
        path: The ``.hdr`` file.

    Returns:
        The header fields.

    Raises:
        InvalidInputError: If the file does not start with ``ENVI``.
    """
    path = Path(path)
    text = path.read_text(errors='replace')
    if not text.lstrip().startswith('ENVI'):
        raise InvalidInputError(path, 'not an ENVI header (first line is not "ENVI")')
    fields: dict[str, str] = {}
    for match in re.finditer(
        r'^\s*([^=\n]+?)\s*=\s*(\{[^}]*\}|[^\n]*)', text, flags=re.MULTILINE
    ):
        fields[match.group(1).strip().lower()] = match.group(2).strip()
    return fields


def envi_data_file(header: str | os.PathLike[str]) -> Path:
    """Find the data file that belongs to an ENVI header.

    Args:
        header: The ``.hdr`` file.

    Returns:
        The data file (same stem, one of :data:`ENVI_DATA_EXTENSIONS`).

    Raises:
        MissingInputError: If the header has no data file next to it.
    """
    header = Path(header)
    stem = header.with_suffix('')
    for ext in ENVI_DATA_EXTENSIONS:
        candidate = stem.with_name(stem.name + ext)
        if candidate.is_file() and candidate != header:
            return candidate
    looked = ', '.join(stem.name + ext for ext in ENVI_DATA_EXTENSIONS)
    raise MissingInputError(
        header, f'ENVI header without its data file (looked for {looked})'
    )


def envi_header_file(data: str | os.PathLike[str]) -> Path | None:
    """Find the ENVI header of a data file (``x.hdr`` or ``x.dat.hdr``)."""
    data = Path(data)
    for candidate in (data.with_suffix('.hdr'), data.with_name(data.name + '.hdr')):
        if candidate.is_file():
            return candidate
    return None


def _parse_floats(value: str) -> list[float]:
    out = []
    for token in re.split(r'[\s,{}]+', value):
        try:
            out.append(float(token))
        except ValueError:
            continue
    return out


_ENVI_DTYPES = {
    '1': 'u1',
    '2': 'i2',
    '3': 'i4',
    '4': 'f4',
    '5': 'f8',
    '12': 'u2',
    '13': 'u4',
    '14': 'i8',
    '15': 'u8',
}


def read_envi_data(
    path: str | os.PathLike[str],
    fields: dict[str, str],
    bands: Sequence[int] | None = None,
) -> np.ndarray | None:
    """Read an ENVI cube's values directly (memory-mapped) as C x H x W.

    Much faster than GDAL's per-band reads of BIL/BIP files. Only the
    requested bands are copied.

    Args:
        path: The data file.
        fields: Its parsed header (:func:`read_envi_header`).
        bands: 0-based band indices, or None for all.

    Returns:
        The cube in the file's data type, or None if the header uses a
        feature this reader does not handle (the caller then uses GDAL).

    Raises:
        InvalidInputError: If the data file is smaller than the header says.
    """
    try:
        samples, lines, count = (int(fields[k]) for k in ('samples', 'lines', 'bands'))
        kind = _ENVI_DTYPES[fields['data type'].strip()]
        offset = int(fields.get('header offset', '0') or 0)
        order = '>' if fields.get('byte order', '0').strip() == '1' else '<'
        interleave = fields.get('interleave', 'bsq').strip().lower()
    except (KeyError, ValueError):
        return None
    if interleave not in ('bsq', 'bil', 'bip'):
        return None
    dtype = np.dtype(order + kind)
    needed = offset + samples * lines * count * dtype.itemsize
    size = Path(path).stat().st_size
    if size < needed:
        raise InvalidInputError(
            path, f'data file has {size} bytes, its header needs {needed}'
        )
    shape = {
        'bsq': (count, lines, samples),
        'bil': (lines, count, samples),
        'bip': (lines, samples, count),
    }[interleave]
    raw = np.memmap(path, dtype=dtype, mode='r', offset=offset, shape=shape)
    index = slice(None) if bands is None else list(bands)
    if interleave == 'bsq':
        cube = raw[index]
    elif interleave == 'bil':
        cube = raw[:, index].transpose(1, 0, 2)
    else:
        cube = raw[:, :, index].transpose(2, 0, 1)
    out = np.ascontiguousarray(cube, dtype=dtype.newbyteorder('='))
    del raw
    return out


def nodata_mask(
    image: np.ndarray, nodata: Sequence[float] = NODATA_VALUES
) -> np.ndarray:
    """Flag no-data values of a band-first cube.

    Args:
        image: C x H x W array.
        nodata: Sentinel values (compared with a relative tolerance of 1e-6 so
            that float32-stored 1e-34 matches).

    Returns:
        bool C x H x W array, True where a value is no-data or not finite.
    """
    if image.dtype.kind in 'iu':
        bad = np.zeros(image.shape, dtype=bool)
        for value in nodata:
            if value == int(value):
                bad |= image == int(value)
        return bad
    bad = ~np.isfinite(image)
    for value in nodata:
        tol = abs(value) * 1e-6
        bad |= (image >= value - tol) & (image <= value + tol)
    return bad


def fill_nodata(
    image: np.ndarray, bad: np.ndarray, fill: str | float = 'mean'
) -> np.ndarray:
    """Replace no-data values in place.

    Args:
        image: float C x H x W array.
        bad: bool C x H x W array of no-data values.
        fill: ``'mean'`` for the band's mean over its valid values (0 when a
            band has none), or a constant.

    Returns:
        ``image``, filled.
    """
    if not bad.any():
        return image
    if fill == 'mean':
        for c in np.flatnonzero(bad.reshape(bad.shape[0], -1).any(axis=1)):
            good = ~bad[c]
            value = float(image[c][good].mean()) if good.any() else 0.0
            image[c][bad[c]] = value
    else:
        image[bad] = float(fill)
    return image


class HyperspectralScene:
    """One hyperspectral scene read from ``.mat``, ENVI or GeoTIFF.

    The scene becomes a band-first float32 cube with its no-data pixels filled
    and flagged, its ground-truth map when the file carries one, and its
    georeferencing when the file has it:

    * ``.mat`` files with keys ``data`` (H x W x C) and ``map`` (H x W), the
      layout of the classic single-scene anomaly-detection benchmarks (San Diego,
      HYDICE, ABU) and of STAD's HAD100 copy. MATLAB v7.3 (HDF5) files are read
      with h5py. ``.mat`` files carry no georeferencing.
    * ENVI cubes (``.hdr`` + data file, BSQ/BIL/BIP, any ENVI data type) through
      GDAL's ENVI driver (rasterio); the CRS and the affine transform come from
      the header's ``map info`` / ``coordinate system string`` (rotated grids
      included). Either the header or the data file may be given.
    * GeoTIFF (or any other raster GDAL reads) with its CRS and transform.

    A value is no-data when it equals one of :data:`NODATA_VALUES` (-9999 and
    1e-34, the two sentinels of the AVIRIS products in HAD100), the header's
    ``data ignore value`` or the raster's nodata, or is not finite. A pixel is
    invalid (``valid_mask`` False) when any of its bands is no-data. No-data
    values are replaced by the mean of that band's valid values (``fill='mean'``,
    the default; 0 when a band has no valid value) or by a constant, never left
    as sentinels.

    Attributes:
        path: The file read (for ENVI, the data file; a URL or GDAL virtual
            path as its GDAL path string).
        image: float32 C x H x W array, no-data filled.
        mask: int64 H x W binary ground truth (``.mat`` ``map``), else None.
        crs: CRS as an authority string (``'EPSG:32611'``) or WKT, else None.
        transform: The 6 affine coefficients (rasterio order a, b, c, d, e, f),
            else None.
        valid_mask: bool H x W, False where any band was no-data.
        num_invalid: Number of invalid pixels.
        num_bands_in_file: Band count of the file before band selection.
        interleave: ENVI/GDAL interleave (``'bil'``, ``'bip'``, ``'bsq'``) or None.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        bands: Sequence[int] | None = None,
        nodata: Sequence[float] = NODATA_VALUES,
        fill: str | float = 'mean',
        expected_bands: int | None = None,
    ) -> None:
        """Read a scene.

        Args:
            path: ``.mat``, ENVI header or data file, or GeoTIFF.
            bands: 0-based indices of the bands to keep (in the file's order),
                or None for all.
            nodata: No-data sentinels, in addition to the file's own.
            fill: ``'mean'`` or a constant, see :func:`fill_nodata`.
            expected_bands: If given, the band count the file must have.

        Raises:
            MissingInputError: If the file (or an ENVI header's data file) is missing.
            InvalidInputError: If the file is unreadable, has the wrong band
                count or a band index is out of range.
        """
        from ..export.sources import check_source, is_virtual

        if is_virtual(path):  # a URL or GDAL virtual path: checked with a GDAL open
            path = check_source(path)
        else:
            path = Path(path)
            if not path.exists():
                raise MissingInputError(path, 'hyperspectral scene not found')
        self.path: Path | str = path
        self.mask: np.ndarray | None = None
        self.crs: str | None = None
        self.transform: tuple[float, ...] | None = None
        self.interleave: str | None = None
        extra_nodata: list[float] = []
        if isinstance(path, Path) and path.suffix.lower() == '.mat':
            self.path = path
            image = self._read_mat(path)
        else:
            image, extra_nodata = self._read_raster(path, bands, expected_bands)
            bands = expected_bands = None  # already applied while reading
        if bands is not None or expected_bands is not None:
            image = self._select(image, bands, expected_bands)
        image = np.ascontiguousarray(image)
        bad = nodata_mask(image, [*nodata, *extra_nodata])
        image = image.astype(np.float32)
        self.image: np.ndarray = fill_nodata(image, bad, fill)
        self.valid_mask: np.ndarray = ~bad.any(axis=0)
        self.num_invalid = int((~self.valid_mask).sum())

    def _select(
        self, image: np.ndarray, bands: Sequence[int] | None, expected: int | None
    ) -> np.ndarray:
        count = image.shape[0]
        self.num_bands_in_file = count
        if expected is not None and count != expected:
            raise InvalidInputError(
                self.path, f'has {count} bands, expected {expected}'
            )
        if bands is None:
            return image
        bands = list(bands)
        bad = [b for b in bands if not -count <= b < count]
        if bad:
            raise InvalidInputError(
                self.path,
                f'band index {bad[0]} out of range: the file has {count} bands',
            )
        return image[bands]

    def _read_mat(self, path: Path) -> np.ndarray:
        arrays = _mat_arrays(path)
        picked = _pick(arrays, _MAT_DATA_KEYS, 3)
        if picked is None:
            raise InvalidInputError(
                path,
                f'no H x W x C hyperspectral cube (expected key "data", found '
                f'{sorted(arrays)})',
            )
        data_key, data = picked
        rest = {k: v for k, v in arrays.items() if k != data_key}
        found = _pick(rest, _MAT_MAP_KEYS, 2)
        if found is not None:
            gt = found[1]
            if gt.shape != data.shape[:2]:
                raise InvalidInputError(
                    path,
                    f'ground-truth map {found[0]!r} is {gt.shape}, cube is '
                    f'{data.shape[:2]}',
                )
            self.mask = (gt != 0).astype(np.int64)
        self.num_bands_in_file = data.shape[2]
        return np.transpose(data, (2, 0, 1))

    def _read_raster(
        self, path: Path | str, bands: Sequence[int] | None, expected: int | None
    ) -> tuple[np.ndarray, list[float]]:
        import rasterio
        from rasterio.errors import NotGeoreferencedWarning, RasterioIOError

        from ..export.sources import reading_env

        extra: list[float] = []
        header: Path | None = None
        fields: dict[str, str] = {}
        if isinstance(path, str):  # remote (GDAL path): no ENVI side files
            header = None
        elif path.suffix.lower() == '.hdr':
            header = path
            path = envi_data_file(path)
        else:
            header = envi_header_file(path)
        self.path = path
        if header is not None:
            fields = read_envi_header(header)
            if 'data ignore value' in fields:
                extra.extend(_parse_floats(fields['data ignore value']))
            self.interleave = fields.get('interleave', '').strip().lower() or None
        try:
            with warnings.catch_warnings():
                warnings.simplefilter('ignore', NotGeoreferencedWarning)
                # ENVI headers are sidecar files: GDAL must be allowed to list the
                # folder, which TorchGeo's CLI forbids process-wide
                # (GDAL_DISABLE_READDIR_ON_OPEN=EMPTY_DIR).
                with (
                    rasterio.Env(GDAL_DISABLE_READDIR_ON_OPEN='FALSE'),
                    reading_env([path]),  # remote: cloud options (docs/remote.md)
                    rasterio.open(path) as src,
                ):
                    count = src.count
                    self.num_bands_in_file = count
                    if expected is not None and count != expected:
                        raise InvalidInputError(
                            header or path, f'has {count} bands, expected {expected}'
                        )
                    if bands is not None:
                        bands = list(bands)
                        wrong = [b for b in bands if not 0 <= b < count]
                        if wrong:
                            raise InvalidInputError(
                                header or path,
                                f'band index {wrong[0]} out of range: the file '
                                f'has {count} bands',
                            )
                    image = None
                    if header is not None and src.driver == 'ENVI':
                        image = read_envi_data(path, fields, bands)
                    if image is None:
                        indexes = [b + 1 for b in bands] if bands is not None else None
                        image = src.read(indexes) if indexes else src.read()
                    if src.nodata is not None and not math.isnan(src.nodata):
                        extra.append(float(src.nodata))
                    if self.interleave is None:
                        interleave = src.tags(ns='IMAGE_STRUCTURE').get('INTERLEAVE')
                        self.interleave = interleave.lower() if interleave else None
                    if src.crs is not None:
                        self.crs = src.crs.to_string()
                        self.transform = tuple(float(v) for v in src.transform[:6])
        except RasterioIOError as err:
            cause: BaseException = err
            while cause.__cause__ is not None:  # GDAL's own message (file, block)
                cause = cause.__cause__
            detail = ' '.join(str(cause).split())
            raise InvalidInputError(
                path, f'cannot read the raster (truncated or corrupt file?): {detail}'
            ) from err
        return image, extra

    def to_sample(self) -> dict[str, Any]:
        """Return the scene as a sample dict of tensors.

        Returns:
            ``image`` float32 C x H x W, ``valid_mask`` bool H x W, ``mask``
            int64 H x W when present, ``crs`` and ``transform`` (float64, 6)
            when georeferenced.
        """
        sample: dict[str, Any] = {
            'image': torch.from_numpy(self.image),
            'valid_mask': torch.from_numpy(self.valid_mask),
        }
        if self.mask is not None:
            sample['mask'] = torch.from_numpy(self.mask)
        if self.crs is not None and self.transform is not None:
            sample['crs'] = self.crs
            sample['transform'] = torch.tensor(self.transform, dtype=torch.float64)
        return sample

    @property
    def shape(self) -> tuple[int, int, int]:
        """The cube's (C, H, W)."""
        c, h, w = self.image.shape
        return c, h, w
