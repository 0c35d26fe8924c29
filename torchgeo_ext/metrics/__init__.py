"""Evaluation metrics not provided by torchmetrics: oriented mAP, tracking, anomaly scores."""
