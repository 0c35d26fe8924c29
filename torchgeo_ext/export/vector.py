"""Vector writing: GeoPackage, GeoJSON or GeoParquet chosen by extension, atomically."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import geopandas as gpd

from ..errors import InvalidInputError
from .atomic import atomic_output

__all__ = ['VECTOR_DRIVERS', 'vector_driver', 'write_vector']

#: File extension -> OGR driver ('Parquet' is written through geopandas/pyarrow).
VECTOR_DRIVERS = {
    '.gpkg': 'GPKG',
    '.geojson': 'GeoJSON',
    '.json': 'GeoJSON',
    '.parquet': 'Parquet',
    '.geoparquet': 'Parquet',
}


def vector_driver(path: str | os.PathLike[str]) -> str:
    """Return the driver for an output path from its extension.

    Args:
        path: Output file.

    Returns:
        'GPKG', 'GeoJSON' or 'Parquet'.

    Raises:
        InvalidInputError: If the extension is not one of :data:`VECTOR_DRIVERS`.
    """
    suffix = Path(path).suffix.lower()
    try:
        return VECTOR_DRIVERS[suffix]
    except KeyError:
        known = ', '.join(VECTOR_DRIVERS)
        raise InvalidInputError(
            path,
            f'unknown vector format {suffix or "(no extension)"!r}; use one of {known}',
        ) from None


def write_vector(
    path: str | os.PathLike[str], gdf: gpd.GeoDataFrame, *, layer: str | None = None
) -> Path:
    """Write a GeoDataFrame atomically, in its own CRS, in the format of the extension.

    ``.gpkg`` is GeoPackage, ``.geojson``/``.json`` GeoJSON (GDAL reprojects
    GeoJSON to EPSG:4326 only when asked; here the CRS is kept and recorded),
    ``.parquet``/``.geoparquet`` GeoParquet (needs pyarrow). Inside
    :func:`~torchgeo_ext.export.sources.recording_sources` the inputs' STAC
    item and assets are recorded: GeoPackage layer metadata, the GeoJSON
    layer ``description`` (JSON), GeoParquet pandas attributes.

    Args:
        path: Output file; an existing file is replaced.
        gdf: The features.
        layer: Layer name (GeoPackage), default the file stem.

    Returns:
        The output path.

    Raises:
        InvalidInputError: For an unknown extension or an unwritable path.
        ValueError: If *gdf* has no CRS.
    """
    driver = vector_driver(path)
    if gdf.crs is None:
        raise ValueError(f'{path}: the GeoDataFrame has no CRS')
    import json

    from .sources import recorded_sources

    out = Path(path)
    sources = recorded_sources()
    with atomic_output(out) as tmp:
        if driver == 'Parquet':
            if sources:  # stored as the file's pandas attrs
                gdf = gdf.copy()
                gdf.attrs.update(sources)
            gdf.to_parquet(tmp, index=False)
        else:
            kwargs: dict[str, Any] = {'driver': driver, 'engine': 'pyogrio'}
            if driver == 'GPKG':
                kwargs['layer'] = layer or out.stem
                if sources:
                    kwargs['layer_metadata'] = sources
            elif driver == 'GeoJSON':
                kwargs['RFC7946'] = 'NO'
                kwargs['WRITE_NAME'] = 'NO'
                if sources:  # GeoJSON has no metadata: the layer description
                    kwargs['DESCRIPTION'] = json.dumps(sources)
            gdf.to_file(tmp, index=False, **kwargs)
    return out
