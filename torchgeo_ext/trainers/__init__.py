"""Lightning tasks (TorchGeo ``BaseTask`` subclasses), one module per task family."""

from .anomaly import AnomalyDetectionTask
from .base import PluginTask, load_task
from .detection import GHOSTTask, SuperYOLOTask
from .oriented_detection import E2EMFDTask, OrientedDetectionTask
from .segmentation import SegmentationTask
from .tracking import TrackingTask

__all__ = (
    'AnomalyDetectionTask',
    'E2EMFDTask',
    'GHOSTTask',
    'OrientedDetectionTask',
    'PluginTask',
    'SegmentationTask',
    'SuperYOLOTask',
    'TrackingTask',
    'load_task',
)
