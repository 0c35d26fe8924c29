"""Raster pipelines: run a model over rasters of any size and write georeferenced results.

This is the one place where a model runs over a raster: tiled prediction
(:func:`predict_raster`), tiled detection with cross-tile merging
(:func:`detect_raster`), segmentation (:func:`segment_raster`) and anomaly scoring
(:func:`anomaly_raster`, :func:`rx_raster`). Names resolve lazily (PEP 562) so that
importing the package pulls in only what is used.
"""

from __future__ import annotations

import importlib
from typing import Any

# Public name -> module that defines it (absolute). Moved implementations update this map.
_EXPORTS: dict[str, str] = {
    'predict_raster': 'torchgeo_ext.export.tiling',
    'detect_raster': 'torchgeo_ext.export.tiling',
    'segment_raster': 'torchgeo_ext.commands.segment',
    'anomaly_raster': 'torchgeo_ext.models.anomaly',
    'detect_anomalies': 'torchgeo_ext.models.anomaly',
    'rx_raster': 'torchgeo_ext.models.rx',
    'raster_statistics': 'torchgeo_ext.models.rx',
}

__all__ = tuple(sorted(_EXPORTS))


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
    return getattr(importlib.import_module(_EXPORTS[name]), name)
