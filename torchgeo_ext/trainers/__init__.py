"""Lightning tasks (TorchGeo ``BaseTask`` subclasses), one module per task family."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..lazy import lazy_exports

if TYPE_CHECKING:  # real imports for type checkers; at run time names load on first use
    from .anomaly import AnomalyDetectionTask, BSDMTask, STADTask
    from .base import PluginTask, load_task
    from .classification import PatchClassificationTask
    from .detection import GHOSTTask, SuperYOLOTask
    from .fusionsam import FusionSAMTask
    from .oriented_detection import E2EMFDTask, OrientedDetectionTask
    from .sap import SAPPriorTask, load_sap_prior
    from .segmentation import SegmentationTask
    from .tdds import TDDSRecorder, TrainSubset, tdds_scores
    from .tracking import TrackingTask

# Public name -> module that defines it. A new public name adds one line here and
# one import above (tests/test_architecture.py checks that they agree).
_EXPORTS: dict[str, str] = {
    'AnomalyDetectionTask': 'torchgeo_ext.trainers.anomaly',
    'BSDMTask': 'torchgeo_ext.trainers.anomaly',
    'STADTask': 'torchgeo_ext.trainers.anomaly',
    'PluginTask': 'torchgeo_ext.trainers.base',
    'load_task': 'torchgeo_ext.trainers.base',
    'PatchClassificationTask': 'torchgeo_ext.trainers.classification',
    'GHOSTTask': 'torchgeo_ext.trainers.detection',
    'SuperYOLOTask': 'torchgeo_ext.trainers.detection',
    'FusionSAMTask': 'torchgeo_ext.trainers.fusionsam',
    'E2EMFDTask': 'torchgeo_ext.trainers.oriented_detection',
    'OrientedDetectionTask': 'torchgeo_ext.trainers.oriented_detection',
    'SAPPriorTask': 'torchgeo_ext.trainers.sap',
    'load_sap_prior': 'torchgeo_ext.trainers.sap',
    'SegmentationTask': 'torchgeo_ext.trainers.segmentation',
    'TDDSRecorder': 'torchgeo_ext.trainers.tdds',
    'TrainSubset': 'torchgeo_ext.trainers.tdds',
    'tdds_scores': 'torchgeo_ext.trainers.tdds',
    'TrackingTask': 'torchgeo_ext.trainers.tracking',
}

__all__ = tuple(sorted(_EXPORTS))

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
