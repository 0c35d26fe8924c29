"""Paper models, one module each, and their shared building blocks."""
from .dianet import DIANet, dianet_w8, dianet_w18, dianet_w48
from .superyolo import SuperYOLO, superyolo_early, superyolo_ir, superyolo_mf, superyolo_rgb
from .lma import LMADetector, TwoStreamOBBDetector, lma_yolov8n_obb, two_stream_yolov8n_obb
from .e2emfd import E2EMFD, e2emfd_yolov8n_obb
from .obb_detector import OBBDetector, yolov8n_obb
from .rx import RX, rx_raster, rx_scores
from .local_anomaly import crd_scores, lrx_scores
from .bsdm import BSDM, bsdm_scores
from .stad import STADStudent, STADTeacher, stad_scores
from .anomaly import anomaly_raster, detect_anomalies
