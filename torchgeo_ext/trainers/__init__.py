"""Lightning tasks (TorchGeo ``BaseTask`` subclasses), one module per task family."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # real imports for type checkers; at run time names load on first use
    from .anomaly import AnomalyDetectionTask
    from .base import PluginTask, load_task
    from .classification import PatchClassificationTask
    from .detection import GHOSTTask, SuperYOLOTask
    from .fusionsam import FusionSAMTask
    from .oriented_detection import E2EMFDTask, OrientedDetectionTask
    from .segmentation import SegmentationTask
    from .tracking import TrackingTask

# Public name -> module that defines it. A new public name adds one line here and
# one import above (tests/test_architecture.py checks that they agree).
_EXPORTS: dict[str, str] = {
    'AnomalyDetectionTask': 'torchgeo_ext.trainers.anomaly',
    'PluginTask': 'torchgeo_ext.trainers.base',
    'load_task': 'torchgeo_ext.trainers.base',
    'PatchClassificationTask': 'torchgeo_ext.trainers.classification',
    'GHOSTTask': 'torchgeo_ext.trainers.detection',
    'SuperYOLOTask': 'torchgeo_ext.trainers.detection',
    'FusionSAMTask': 'torchgeo_ext.trainers.fusionsam',
    'E2EMFDTask': 'torchgeo_ext.trainers.oriented_detection',
    'OrientedDetectionTask': 'torchgeo_ext.trainers.oriented_detection',
    'SegmentationTask': 'torchgeo_ext.trainers.segmentation',
    'TrackingTask': 'torchgeo_ext.trainers.tracking',
}

__all__ = tuple(sorted(_EXPORTS))


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
