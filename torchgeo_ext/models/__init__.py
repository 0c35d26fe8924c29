"""Paper models, one module each, and their shared building blocks."""

from .anomaly import anomaly_raster, detect_anomalies
from .bsdm import BSDM, bsdm_scores
from .dianet import DIANet, dianet_w8, dianet_w18, dianet_w48
from .e2emfd import E2EMFD, e2emfd_yolov8n_obb
from .hyat import HyATracker, hyat_base, hyat_tiny
from .lma import (
    LMADetector,
    TwoStreamOBBDetector,
    lma_yolov8n_obb,
    two_stream_yolov8n_obb,
)
from .local_anomaly import crd_scores, lrx_scores
from .obb_detector import OBBDetector, yolov8n_obb
from .rx import RX, rx_raster, rx_scores
from .stad import STADStudent, STADTeacher, stad_scores
from .superyolo import (
    SuperYOLO,
    superyolo_early,
    superyolo_ir,
    superyolo_mf,
    superyolo_rgb,
)

__all__ = (
    'BSDM',
    'E2EMFD',
    'RX',
    'DIANet',
    'HyATracker',
    'LMADetector',
    'OBBDetector',
    'STADStudent',
    'STADTeacher',
    'SuperYOLO',
    'TwoStreamOBBDetector',
    'anomaly_raster',
    'bsdm_scores',
    'crd_scores',
    'detect_anomalies',
    'dianet_w8',
    'dianet_w18',
    'dianet_w48',
    'e2emfd_yolov8n_obb',
    'hyat_base',
    'hyat_tiny',
    'lma_yolov8n_obb',
    'lrx_scores',
    'rx_raster',
    'rx_scores',
    'stad_scores',
    'superyolo_early',
    'superyolo_ir',
    'superyolo_mf',
    'superyolo_rgb',
    'two_stream_yolov8n_obb',
    'yolov8n_obb',
)
