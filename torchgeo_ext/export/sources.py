"""Where input rasters live: local files, GDAL virtual file systems and URLs."""

from __future__ import annotations

import contextlib
import json
import os
import re
from collections.abc import Iterator, Sequence
from contextvars import ContextVar
from typing import Any, Self

from ..errors import InvalidInputError, MissingInputError

__all__ = [
    'CLOUD_READ_OPTIONS',
    'AssetPath',
    'block_windows',
    'check_source',
    'check_vector_source',
    'gdal_path',
    'is_network',
    'is_virtual',
    'reading_env',
    'recorded_sources',
    'recording_sources',
    'source_name',
    'sources_metadata',
]

#: URL scheme -> GDAL virtual file system prefix.
SCHEMES = {
    'http://': '/vsicurl/http://',
    'https://': '/vsicurl/https://',
    's3://': '/vsis3/',
    'gs://': '/vsigs/',
    'az://': '/vsiaz/',
}

#: Virtual file systems that read over the network (GDAL's names).
NETWORK_PREFIXES = (
    '/vsicurl/',
    '/vsis3/',
    '/vsigs/',
    '/vsiaz/',
    '/vsiadls/',
    '/vsioss/',
    '/vsiswift/',
    '/vsiwebhdfs/',
    '/vsihdfs/',
)

#: GDAL options for rasters read over the network (why: docs/remote.md).
CLOUD_READ_OPTIONS: dict[str, str | int] = {
    # Opening /vsicurl/a.tif otherwise lists the "folder" (one GET or LIST per
    # open) to look for side files (.aux.xml, .ovr, .msk) that COGs do not have.
    'GDAL_DISABLE_READDIR_ON_OPEN': 'EMPTY_DIR',
    # Only these names are requested at all: no probing for side files.
    'CPL_VSIL_CURL_ALLOWED_EXTENSIONS': '.tif,.tiff,.vrt,.jp2,.img,.zip,.TIF,.TIFF',
    # Adjacent blocks of one window in one HTTP range request.
    'GDAL_HTTP_MERGE_CONSECUTIVE_RANGES': 'YES',
    'GDAL_HTTP_MULTIPLEX': 'YES',
    # Fetched byte ranges are kept per file: overlapping tiles re-read no bytes.
    'VSI_CACHE': 'TRUE',
    'VSI_CACHE_SIZE': str(64 * 2**20),
    # Decoded blocks: bounded, so several ranks per node do not each take 5 % of RAM.
    'GDAL_CACHEMAX': 256 * 2**20,
    # Object stores answer 429/5xx under load: retry instead of failing the run.
    'GDAL_HTTP_MAX_RETRY': '3',
    'GDAL_HTTP_RETRY_DELAY': '1',
}

_VSI = re.compile(r'^/vsi[a-z0-9_]+/')


class AssetPath(str):
    """The GDAL path of one STAC asset, remembering which item and key it is.

    It is a ``str`` (any pipeline takes it as a path); :func:`open_inputs
    <torchgeo_ext.export.raster.open_inputs>` warps assets of other
    resolutions to the first one's grid, and the outputs record the item id
    and asset hrefs.
    """

    item_id: str
    key: str
    href: str

    def __new__(cls, href: str, *, item_id: str, key: str) -> Self:
        """Create the GDAL path of an asset.

        Args:
            href: The asset's absolute href (URL or local path).
            item_id: The STAC item's id.
            key: The asset's key in the item.

        Returns:
            The path.
        """
        path = super().__new__(cls, gdal_path(href))
        path.item_id, path.key, path.href = item_id, key, href
        return path


def gdal_path(path: str | os.PathLike[str]) -> str:
    """The path GDAL opens for a local path, URL or GDAL virtual path.

    ``http(s)://`` becomes ``/vsicurl/http(s)://``, ``s3://`` ``/vsis3/``,
    ``gs://`` ``/vsigs/``, ``az://`` ``/vsiaz/`` and ``file://`` a local path;
    ``/vsi.../`` paths are kept; local paths get ``~`` expanded.

    Args:
        path: The input as the user gave it.

    Returns:
        The GDAL path (a string: :class:`~pathlib.Path` would fold ``//``).
    """
    text = os.fspath(path).strip()
    lower = text.lower()
    for scheme, prefix in SCHEMES.items():
        if lower.startswith(scheme):
            return prefix + text[len(scheme) :]
    if lower.startswith('file://'):
        return text[len('file://') :]
    if _VSI.match(text):
        return text
    return os.path.expanduser(text)


def is_virtual(path: str | os.PathLike[str]) -> bool:
    """Whether a path is no plain local file (a URL or a GDAL virtual path).

    Args:
        path: An input path.

    Returns:
        True for URLs and ``/vsi.../`` paths.
    """
    return bool(_VSI.match(gdal_path(path)))


def is_network(path: str | os.PathLike[str]) -> bool:
    """Whether GDAL reads a path over the network (also inside ``/vsizip/``).

    Args:
        path: An input path.

    Returns:
        True if any network file system appears in its GDAL path.
    """
    text = gdal_path(path)
    return any(prefix in text for prefix in NETWORK_PREFIXES)


def source_name(path: str | os.PathLike[str]) -> str:
    """A short name of an input: its file name without extension or URL query.

    Args:
        path: An input path.

    Returns:
        The name (``B04`` for ``https://host/x/B04.tif?sig=...``).
    """
    if isinstance(path, AssetPath):
        return path.key
    text = gdal_path(path).split('?', 1)[0].rstrip('/')
    base = text.rpartition('/')[2]
    return base.rpartition('.')[0] or base


def reading_env(paths: Sequence[str | os.PathLike[str]]) -> Any:
    """The GDAL environment for reading *paths*.

    :data:`CLOUD_READ_OPTIONS` when any of them is read over the network,
    else nothing changed (local ENVI scenes need their folder listed).

    Args:
        paths: The inputs.

    Returns:
        A context manager (a ``rasterio.Env`` or a null context).
    """
    if not any(is_network(p) for p in paths):
        return contextlib.nullcontext()
    import rasterio

    return rasterio.Env(**CLOUD_READ_OPTIONS)


def _gdal_reason(error: BaseException) -> str:
    """GDAL's own message (the innermost cause), on one line."""
    cause = error
    while cause.__cause__ is not None:
        cause = cause.__cause__
    return ' '.join(str(cause).split())


def check_source(path: str | os.PathLike[str], *, open_local: bool = True) -> str:
    """Check that GDAL can open an input, and return its GDAL path.

    Args:
        path: A local path, URL or GDAL virtual path.
        open_local: Open local files too; False only checks that they exist
            (for formats read without GDAL: ``.mat`` scenes, ENVI headers).

    Returns:
        The GDAL path.

    Raises:
        MissingInputError: If a local file does not exist, or a server
            answers that the file does not exist.
        InvalidInputError: If GDAL cannot open it as a raster (GDAL's reason
            is part of the message).
    """
    target = gdal_path(path)
    if not is_virtual(target) and not os.path.exists(target):
        raise MissingInputError(path, 'no such file')
    if not open_local and not is_virtual(target):
        return target
    import rasterio
    from rasterio.errors import RasterioIOError

    try:
        with reading_env([target]), rasterio.open(target):
            pass
    except RasterioIOError as error:
        reason = _gdal_reason(error)
        if is_virtual(target) and re.search(r'\b404\b|does not exist', reason):
            raise MissingInputError(path, f'not found ({reason})') from None
        problem = (
            'GDAL cannot open it'
            if is_virtual(target)
            else 'not a raster GDAL can read'
        )
        raise InvalidInputError(path, f'{problem} ({reason})') from None
    return target


def check_vector_source(path: str | os.PathLike[str]) -> str:
    """Check that OGR can open a vector input (URL, GDAL path), return its GDAL path.

    Args:
        path: A label file: local path, URL or GDAL virtual path.

    Returns:
        The GDAL path.

    Raises:
        MissingInputError: If it does not exist (a local file, or a server's 404).
        InvalidInputError: If OGR cannot open it (OGR's reason given).
    """
    target = gdal_path(path)
    if not is_virtual(target):
        if not os.path.exists(target):
            raise MissingInputError(path, 'no such file')
        return target
    import pyogrio
    from pyogrio.errors import DataSourceError

    try:
        pyogrio.read_info(target)
    except DataSourceError as error:
        reason = ' '.join(str(error).split())
        if re.search(r'\b404\b|does not exist|No such file', reason):
            raise MissingInputError(path, f'not found ({reason})') from None
        raise InvalidInputError(path, f'OGR cannot open it ({reason})') from None
    return target


def block_windows(
    width: int, height: int, block: tuple[int, int], size: int
) -> Iterator[Any]:
    """Windows of about *size* pixels whose edges fall on block boundaries.

    A window that starts inside a block makes GDAL fetch (and decode) that
    block for two windows; aligned windows fetch each block once. Useful for
    passes where the window grid is free (statistics, copies).

    Args:
        width: Raster width.
        height: Raster height.
        block: The raster's block shape ``(rows, columns)``.
        size: Wanted window side; rounded up to whole blocks.

    Yields:
        rasterio Windows covering the raster once, row by row.
    """
    from rasterio.windows import Window

    rows = max(1, -(-size // block[0])) * block[0]
    cols = max(1, -(-size // block[1])) * block[1]
    for r in range(0, height, rows):
        for c in range(0, width, cols):
            yield Window(c, r, min(cols, width - c), min(rows, height - r))  # type: ignore[call-arg]


#: Metadata of the inputs of the job running now (see :func:`recording_sources`).
_RECORDED: ContextVar[dict[str, str] | None] = ContextVar('_RECORDED', default=None)


def sources_metadata(paths: Sequence[str | os.PathLike[str]]) -> dict[str, str]:
    """Where a job's inputs came from, as output metadata (STAC assets only).

    Args:
        paths: The job's inputs.

    Returns:
        ``stac_item`` (the item id(s)) and ``stac_assets`` (JSON: asset key ->
        href), or an empty dict when no input is a STAC asset.
    """
    assets = [p for p in paths if isinstance(p, AssetPath)]
    if not assets:
        return {}
    items = list(dict.fromkeys(a.item_id for a in assets))
    return {
        'stac_item': ' '.join(items),
        'stac_assets': json.dumps({a.key: a.href for a in assets}),
    }


@contextlib.contextmanager
def recording_sources(paths: Sequence[str | os.PathLike[str]]) -> Iterator[None]:
    """Record where the inputs came from in every output written inside the block.

    :class:`~torchgeo_ext.export.raster.RasterWriter` adds the metadata of
    :func:`sources_metadata` to the GeoTIFF tags and
    :func:`~torchgeo_ext.export.vector.write_vector` to the vector file's
    metadata.

    Args:
        paths: The inputs of the job.

    Yields:
        Nothing.
    """
    token = _RECORDED.set(sources_metadata(paths) or None)
    try:
        yield
    finally:
        _RECORDED.reset(token)


def recorded_sources() -> dict[str, str]:
    """The metadata recorded by the enclosing :func:`recording_sources`.

    Returns:
        The metadata (empty outside such a block or without STAC inputs).
    """
    return dict(_RECORDED.get() or {})
