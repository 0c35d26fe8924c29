"""Evaluation metrics not provided by torchmetrics: oriented mAP, tracking, anomaly scores."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..lazy import lazy_exports

if TYPE_CHECKING:  # real imports for type checkers; at run time names load on first use
    from .anomaly import AnomalyMetrics, anomaly_metrics, auc_d_f, auc_tau
    from .detection import OrientedMeanAveragePrecision
    from .tracking import OTBMetric

# Public name -> module that defines it. A new public name adds one line here and
# one import above (tests/test_architecture.py checks that they agree).
_EXPORTS: dict[str, str] = {
    'AnomalyMetrics': 'torchgeo_ext.metrics.anomaly',
    'anomaly_metrics': 'torchgeo_ext.metrics.anomaly',
    'auc_d_f': 'torchgeo_ext.metrics.anomaly',
    'auc_tau': 'torchgeo_ext.metrics.anomaly',
    'OrientedMeanAveragePrecision': 'torchgeo_ext.metrics.detection',
    'OTBMetric': 'torchgeo_ext.metrics.tracking',
}

__all__ = tuple(sorted(_EXPORTS))

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
