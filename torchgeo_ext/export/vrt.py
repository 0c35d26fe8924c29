"""GDAL VRT mosaics: many GeoTIFFs of one CRS read as one raster, written atomically."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

import rasterio
from rasterio.transform import Affine

from ..errors import InvalidInputError
from .atomic import atomic_output
from .raster import crs_to_string

__all__ = ['write_vrt_mosaic']


def _band_xml(band: int, dtype: str, nodata: float | None, sources: list[str]) -> str:
    gdal_type = {
        'uint8': 'Byte',
        'int8': 'Int8',
        'uint16': 'UInt16',
        'int16': 'Int16',
        'uint32': 'UInt32',
        'int32': 'Int32',
        'float32': 'Float32',
        'float64': 'Float64',
    }[dtype]
    lines = [f'  <VRTRasterBand dataType="{gdal_type}" band="{band}">']
    if nodata is not None:
        value = 'nan' if math.isnan(nodata) else repr(float(nodata))
        lines.append(f'    <NoDataValue>{value}</NoDataValue>')
    lines += sources
    lines.append('  </VRTRasterBand>')
    return '\n'.join(lines)


def write_vrt_mosaic(
    rasters: Sequence[str | os.PathLike[str]], path: str | os.PathLike[str]
) -> Path:
    """Write a VRT that mosaics GeoTIFFs of one CRS, resolution and band layout.

    Sources are referenced relative to the VRT when they sit in its folder
    (or below), so the folder can be moved as a whole. Where rasters overlap,
    the later one wins (GDAL's rule) except at its nodata pixels.

    Args:
        rasters: The GeoTIFFs (at least one).
        path: The ``.vrt`` to write.

    Returns:
        The VRT path.

    Raises:
        InvalidInputError: If the rasters differ in CRS, pixel size, rotation,
            band count or dtype.
    """
    if not rasters:
        raise ValueError('a mosaic needs at least one raster')
    out = Path(path)
    infos = []
    for raster in rasters:
        with rasterio.open(raster) as src:
            infos.append((Path(raster), src.profile, src.transform, src.bounds))
    _check_mosaickable(infos)
    first, ft = infos[0][1], infos[0][2]
    west = min(b.left for *_, b in infos)
    north = max(b.top for *_, b in infos)
    east = max(b.right for *_, b in infos)
    south = min(b.bottom for *_, b in infos)
    width = round((east - west) / ft.a)
    height = round((south - north) / ft.e)
    sources: dict[int, list[str]] = {b: [] for b in range(1, first['count'] + 1)}
    for raster, profile, t, _ in infos:
        col = round((t.c - west) / ft.a)
        row = round((t.f - north) / ft.e)
        name, relative = _source_name(raster, out)
        w, h = profile['width'], profile['height']
        for band, listed in sources.items():
            listed.append(
                '    <SimpleSource>\n'
                f'      <SourceFilename relativeToVRT="{relative}">{escape(name)}'
                '</SourceFilename>\n'
                f'      <SourceBand>{band}</SourceBand>\n'
                f'      <SrcRect xOff="0" yOff="0" xSize="{w}" ySize="{h}"/>\n'
                f'      <DstRect xOff="{col}" yOff="{row}" xSize="{w}" ySize="{h}"/>\n'
                '    </SimpleSource>'
            )
    geo = ', '.join(repr(float(v)) for v in (west, ft.a, 0.0, north, 0.0, ft.e))
    srs = escape(crs_to_string(first['crs']))
    bands = [
        _band_xml(b, first['dtype'], first.get('nodata'), srcs)
        for b, srcs in sources.items()
    ]
    text = '\n'.join(
        [
            f'<VRTDataset rasterXSize="{width}" rasterYSize="{height}">',
            f'  <SRS dataAxisToSRSAxisMapping="1,2">{srs}</SRS>',
            f'  <GeoTransform>{geo}</GeoTransform>',
            *bands,
            '</VRTDataset>',
            '',
        ]
    )
    with atomic_output(out) as tmp:
        tmp.write_text(text)
    return out


def _check_mosaickable(infos: list[tuple[Path, Any, Affine, Any]]) -> None:
    """Raise unless every raster has the first one's CRS, pixel size, bands and dtype."""
    first_path, first, ft, _ = infos[0]
    for raster, profile, t, _ in infos[1:]:
        same = (
            profile['crs'] == first['crs']
            and profile['count'] == first['count']
            and profile['dtype'] == first['dtype']
            and math.isclose(t.a, ft.a, rel_tol=1e-9)
            and math.isclose(t.e, ft.e, rel_tol=1e-9)
            and t.b == ft.b == 0
            and t.d == ft.d == 0
        )
        if not same:
            raise InvalidInputError(
                raster,
                f'cannot be mosaicked with {first_path}: CRS, pixel size, rotation, '
                'band count and dtype must agree',
            )


def _source_name(raster: Path, vrt: Path) -> tuple[str, int]:
    """How the VRT names a source: relative to it when beside or below it, else absolute.

    Returns:
        The name and GDAL's ``relativeToVRT`` flag.
    """
    try:
        name = os.path.relpath(raster.absolute(), vrt.absolute().parent)
    except ValueError:  # another drive
        return os.fspath(raster.absolute()), 0
    if name.startswith('..'):
        return os.fspath(raster.absolute()), 0
    return name, 1
