"""Evaluation metrics not provided by torchmetrics: oriented mAP, tracking, anomaly scores."""

from .anomaly import anomaly_metrics, auc_d_f, auc_tau
from .detection import OrientedMeanAveragePrecision
from .tracking import OTBMetric

__all__ = (
    'OTBMetric',
    'OrientedMeanAveragePrecision',
    'anomaly_metrics',
    'auc_d_f',
    'auc_tau',
)
