"""Raster pipelines: run a model over rasters of any size and write georeferenced results.

Names resolve lazily (PEP 562): ``torchgeo-ext anomaly --method rx`` imports no Lightning.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..lazy import lazy_exports

if TYPE_CHECKING:  # real imports for type checkers; at run time names load on first use
    from .anomaly import (
        AnomalyResult,
        anomaly_raster,
        detect_anomalies,
        raster_statistics,
        rx_raster,
        score_threshold,
    )
    from .arrays import predict_array
    from .batch import (
        BatchInput,
        BatchRecord,
        collect_inputs,
        launch_ranks,
        predict_many,
    )
    from .checkpoint_detection import detect_with_checkpoint
    from .classification import (
        DensePatchClassifier,
        classification_map,
        classify_raster,
        classify_scene,
    )
    from .detection import detect_raster, merge_tile_detections
    from .sam import refine_with_sam
    from .segmentation import SegmentResult, segment_raster
    from .tiling import axis_weights, blend_weights, predict_raster, tile_grid

# Public name -> module that defines it. A new public name adds one line here and
# one import above (tests/test_architecture.py checks that they agree).
_EXPORTS: dict[str, str] = {
    'AnomalyResult': 'torchgeo_ext.pipelines.anomaly',
    'anomaly_raster': 'torchgeo_ext.pipelines.anomaly',
    'detect_anomalies': 'torchgeo_ext.pipelines.anomaly',
    'raster_statistics': 'torchgeo_ext.pipelines.anomaly',
    'rx_raster': 'torchgeo_ext.pipelines.anomaly',
    'score_threshold': 'torchgeo_ext.pipelines.anomaly',
    'predict_array': 'torchgeo_ext.pipelines.arrays',
    'BatchInput': 'torchgeo_ext.pipelines.batch',
    'BatchRecord': 'torchgeo_ext.pipelines.batch',
    'collect_inputs': 'torchgeo_ext.pipelines.batch',
    'launch_ranks': 'torchgeo_ext.pipelines.batch',
    'predict_many': 'torchgeo_ext.pipelines.batch',
    'DensePatchClassifier': 'torchgeo_ext.pipelines.classification',
    'classification_map': 'torchgeo_ext.pipelines.classification',
    'classify_raster': 'torchgeo_ext.pipelines.classification',
    'classify_scene': 'torchgeo_ext.pipelines.classification',
    'detect_raster': 'torchgeo_ext.pipelines.detection',
    'merge_tile_detections': 'torchgeo_ext.pipelines.detection',
    'refine_with_sam': 'torchgeo_ext.pipelines.sam',
    'SegmentResult': 'torchgeo_ext.pipelines.segmentation',
    'segment_raster': 'torchgeo_ext.pipelines.segmentation',
    'detect_with_checkpoint': 'torchgeo_ext.pipelines.checkpoint_detection',
    'axis_weights': 'torchgeo_ext.pipelines.tiling',
    'blend_weights': 'torchgeo_ext.pipelines.tiling',
    'predict_raster': 'torchgeo_ext.pipelines.tiling',
    'tile_grid': 'torchgeo_ext.pipelines.tiling',
}

__all__ = tuple(sorted(_EXPORTS))

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
