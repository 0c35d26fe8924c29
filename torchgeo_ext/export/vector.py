"""Vector writing: GeoPackage, GeoJSON or GeoParquet chosen by extension, atomically."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd

from ..errors import InvalidInputError
from .atomic import atomic_output

__all__ = ['VECTOR_DRIVERS', 'vector_driver', 'vector_schema', 'write_vector']

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


def _geometry_type(gdf: gpd.GeoDataFrame) -> str:
    """The layer geometry type: the features' one, ``Polygon`` when there are none."""
    types = {t for t in gdf.geometry.geom_type.dropna().unique() if t}
    if not types:
        # Every vector output of this library is polygons; an empty one says so
        # too instead of 'Unknown' (callers writing other shapes pass theirs).
        return str(gdf.attrs.get('geometry_type', 'Polygon'))
    if len(types) == 1:
        return str(types.pop())
    if types <= {'Polygon', 'MultiPolygon'}:
        return 'MultiPolygon'
    return 'Unknown'


def vector_schema(gdf: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
    """The features with the column types every vector output is written with.

    Real-valued columns become float64 (GeoPackage ``REAL``; ``FLOAT``, float32,
    is skipped by fiona 1.10 and by QGIS on older GDAL). Columns of an empty
    frame that pandas typed as float because they have no values keep their
    own type where the frame says it (``gdf.attrs['string_columns']``).

    Args:
        gdf: The features.

    Returns:
        A frame with float64 real columns (*gdf* itself when nothing changes).
    """
    changes: dict[str, Any] = {}
    for name, dtype in gdf.dtypes.items():
        if name == gdf.geometry.name:
            continue
        if isinstance(dtype, np.dtype) and np.issubdtype(dtype, np.floating):
            if dtype != np.float64:
                changes[name] = np.float64
        elif isinstance(dtype, pd.Float32Dtype):
            changes[name] = pd.Float64Dtype()
    if len(gdf) == 0:
        for name in gdf.attrs.get('string_columns', ()):
            if name in gdf.columns and not pd.api.types.is_string_dtype(gdf[name]):
                changes[name] = 'str'
    return gdf.astype(changes) if changes else gdf


def write_vector(
    path: str | os.PathLike[str],
    gdf: gpd.GeoDataFrame,
    *,
    layer: str | None = None,
    geometry_type: str | None = None,
) -> Path:
    """Write a GeoDataFrame atomically, in its own CRS, in the format of the extension.

    ``.gpkg`` is GeoPackage, ``.geojson``/``.json`` GeoJSON (GDAL reprojects
    GeoJSON to EPSG:4326 only when asked; here the CRS is kept and recorded),
    ``.parquet``/``.geoparquet`` GeoParquet (needs pyarrow). Inside
    :func:`~torchgeo_ext.export.sources.recording_sources` the inputs' STAC
    item and assets are recorded: GeoPackage layer metadata, the GeoJSON
    layer ``description`` (JSON), GeoParquet pandas attributes.

    Every real-valued column is written as float64 (:func:`vector_schema`),
    and an empty frame keeps the schema of a full one: its columns' types
    and the geometry type (GeoPackage, GeoParquet; an empty GeoJSON file has
    no schema to keep).

    Args:
        path: Output file; an existing file is replaced.
        gdf: The features.
        layer: Layer name (GeoPackage), default the file stem.
        geometry_type: The layer's geometry type (default: the features',
            ``MultiPolygon`` for a mix of polygons and multipolygons,
            ``Polygon`` when there are no features).

    Returns:
        The output path.

    Raises:
        InvalidInputError: For an unknown extension or an unwritable path.
        OSError: Naming the output and the cause when the disk is full
            (:func:`~torchgeo_ext.export.atomic.write_error`).
        ValueError: If *gdf* has no CRS.
    """
    driver = vector_driver(path)
    if gdf.crs is None:
        raise ValueError(f'{path}: the GeoDataFrame has no CRS')
    import json

    from .sources import recorded_sources

    out = Path(path)
    sources = recorded_sources()
    geometry_type = geometry_type or _geometry_type(gdf)
    gdf = vector_schema(gdf)
    with atomic_output(out) as tmp:
        if driver == 'Parquet':
            if sources:  # stored as the file's pandas attrs
                gdf = gdf.copy()
                gdf.attrs.update(sources)
            gdf.to_parquet(tmp, index=False)
        else:
            kwargs: dict[str, Any] = {
                'driver': driver,
                'engine': 'pyogrio',
                'geometry_type': geometry_type,
                'promote_to_multi': geometry_type.startswith('Multi'),
            }
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
