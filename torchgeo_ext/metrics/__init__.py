"""Evaluation metrics not provided by torchmetrics: oriented mAP, tracking, anomaly scores."""
from .tracking import OTBMetric
from .detection import OrientedMeanAveragePrecision
from .anomaly import anomaly_metrics, auc_d_f, auc_tau
