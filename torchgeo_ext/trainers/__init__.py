"""Lightning tasks (TorchGeo ``BaseTask`` subclasses), one module per task family."""

from .base import PluginTask, load_task
from .segmentation import SegmentationTask
from .detection import GHOSTTask, SuperYOLOTask
from .oriented_detection import E2EMFDTask, OrientedDetectionTask
from .anomaly import AnomalyDetectionTask
