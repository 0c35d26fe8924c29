"""Georeferenced outputs: raster and vector writers, tiled prediction, the prediction writer."""

from .atomic import atomic_output
from .geometry import (
    boxes_to_polygons,
    detections_to_geodataframe,
    mask_to_polygons,
    oriented_boxes_to_polygons,
)
from .raster import RasterStack, RasterWriter, crs_to_string, open_inputs, write_raster
from .tiling import detect_raster, predict_raster
from .vector import write_vector
from .writer import GeoPredictionWriter

__all__ = (
    'GeoPredictionWriter',
    'RasterStack',
    'RasterWriter',
    'atomic_output',
    'boxes_to_polygons',
    'crs_to_string',
    'detect_raster',
    'detections_to_geodataframe',
    'mask_to_polygons',
    'open_inputs',
    'oriented_boxes_to_polygons',
    'predict_raster',
    'write_raster',
    'write_vector',
)
