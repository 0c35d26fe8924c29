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
