"""Georeferenced outputs (raster and vector writers, atomic files) and where inputs live."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..lazy import lazy_exports

if TYPE_CHECKING:  # real imports for type checkers; at run time names load on first use
    from .atomic import atomic_output
    from .checkpoint_io import AtomicCheckpointIO
    from .geometry import (
        boxes_to_polygons,
        detections_to_geodataframe,
        mask_to_polygons,
        oriented_boxes_to_polygons,
    )
    from .http_server import LocalRangeServer
    from .raster import (
        RasterStack,
        RasterWriter,
        crs_to_string,
        open_inputs,
        write_raster,
    )
    from .sources import AssetPath, check_source, gdal_path, recording_sources
    from .stac import stac_assets
    from .vector import write_vector
    from .vrt import write_vrt_mosaic
    from .writer import GeoPredictionWriter

# Public name -> module that defines it. A new public name adds one line here and
# one import above (tests/test_architecture.py checks that they agree).
_EXPORTS: dict[str, str] = {
    'atomic_output': 'torchgeo_ext.export.atomic',
    'AtomicCheckpointIO': 'torchgeo_ext.export.checkpoint_io',
    'boxes_to_polygons': 'torchgeo_ext.export.geometry',
    'detections_to_geodataframe': 'torchgeo_ext.export.geometry',
    'mask_to_polygons': 'torchgeo_ext.export.geometry',
    'oriented_boxes_to_polygons': 'torchgeo_ext.export.geometry',
    'RasterStack': 'torchgeo_ext.export.raster',
    'RasterWriter': 'torchgeo_ext.export.raster',
    'crs_to_string': 'torchgeo_ext.export.raster',
    'open_inputs': 'torchgeo_ext.export.raster',
    'write_raster': 'torchgeo_ext.export.raster',
    'LocalRangeServer': 'torchgeo_ext.export.http_server',
    'AssetPath': 'torchgeo_ext.export.sources',
    'check_source': 'torchgeo_ext.export.sources',
    'gdal_path': 'torchgeo_ext.export.sources',
    'recording_sources': 'torchgeo_ext.export.sources',
    'stac_assets': 'torchgeo_ext.export.stac',
    'write_vector': 'torchgeo_ext.export.vector',
    'write_vrt_mosaic': 'torchgeo_ext.export.vrt',
    'GeoPredictionWriter': 'torchgeo_ext.export.writer',
}

__all__ = tuple(sorted(_EXPORTS))

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
