import math

import pytest
import torch

from torchgeo_ext.metrics.tracking import (
    OTBMetric,
    box_iou_xywh,
    center_error_xywh,
    precision_at,
    precision_curve,
    success_auc,
    success_curve,
)


def test_iou_hand_computed() -> None:
    gt = torch.tensor([[0.0, 0, 10, 10], [0, 0, 10, 10], [0, 0, 10, 10], [0, 0, 4, 4]])
    pred = torch.tensor(
        [[0.0, 0, 10, 10], [5, 0, 10, 10], [20, 20, 5, 5], [1, 1, 2, 2]]
    )
    iou = box_iou_xywh(pred, gt)
    # 50 / 150, disjoint, 4 / 16 (contained)
    assert iou.tolist() == pytest.approx([1.0, 1 / 3, 0.0, 0.25])


def test_center_error_hand_computed() -> None:
    gt = torch.tensor([[0.0, 0, 10, 10], [0, 0, 10, 10]])
    pred = torch.tensor([[3.0, 4, 10, 10], [0, 0, 2, 2]])
    # centres (8, 9) vs (5, 5) -> 5; (1, 1) vs (5, 5) -> sqrt(32)
    assert center_error_xywh(pred, gt).tolist() == pytest.approx([5.0, math.sqrt(32)])
    bad = torch.tensor([[float('nan'), 0, 1, 1]])
    assert center_error_xywh(bad, gt[:1]).item() == math.inf


def test_perfect_tracker() -> None:
    gt = torch.tensor([[10.0, 10, 20, 30]] * 5)
    assert success_auc(gt, gt) == pytest.approx(20 / 21)
    assert precision_at(gt, gt) == 1.0


def test_success_curve_hand_computed() -> None:
    gt = torch.tensor([[0.0, 0, 10, 10]] * 4)
    # overlaps 1, 1/3, 0.5, 0
    pred = torch.tensor(
        [[0.0, 0, 10, 10], [5, 0, 10, 10], [0, 0, 5, 10], [50, 50, 10, 10]]
    )
    curve = success_curve(pred, gt)
    assert curve.shape == (21,)
    # threshold 0: 3 of 4 > 0; 0.30: 3; 0.35: 2 (0.5, 1); 0.5: 1 (strict >); 1.0: 0
    assert curve[0] == 0.75
    assert curve[6] == 0.75  # 0.30
    assert curve[7] == 0.5  # 0.35
    assert curve[10] == 0.25  # 0.50
    assert curve[20] == 0.0
    # AUC = mean over 21 thresholds of the count of overlaps above them / 4
    # overlap 1 is above 20 thresholds, 0.5 above 10 (0..0.45), 1/3 above 7
    assert success_auc(pred, gt) == pytest.approx((20 + 10 + 7 + 0) / 4 / 21)


def test_precision_hand_computed() -> None:
    gt = torch.tensor([[0.0, 0, 10, 10]] * 4)
    pred = torch.tensor(
        [[0.0, 0, 10, 10], [20, 0, 10, 10], [21, 0, 10, 10], [30, 40, 10, 10]]
    )
    # errors 0, 20, 21, 50
    assert precision_at(pred, gt) == 0.5  # <= 20
    assert precision_at(pred, gt, threshold=50) == 1.0
    curve = precision_curve(pred, gt)
    assert curve[19] == 0.25
    assert curve[20] == 0.5
    assert curve[21] == 0.75
    assert curve[49] == 0.75


def test_invalid_ground_truth_frames_skipped() -> None:
    gt = torch.tensor([[0.0, 0, 10, 10], [0, 0, 0, 0], [float('nan')] * 4])
    pred = torch.tensor([[0.0, 0, 10, 10], [100, 100, 5, 5], [100, 100, 5, 5]])
    assert precision_at(pred, gt) == 1.0
    assert success_auc(pred, gt) == pytest.approx(20 / 21)
    # exclude_first leaves no frame: zeros
    assert success_auc(pred, gt, exclude_first=True) == 0.0


def test_invalid_prediction_is_failure() -> None:
    gt = torch.tensor([[0.0, 0, 10, 10]] * 2)
    pred = torch.tensor([[0.0, 0, 10, 10], [0, 0, -1, 5]])
    assert precision_at(pred, gt) == 0.5
    assert success_curve(pred, gt)[0] == 0.5


def test_shape_errors() -> None:
    with pytest.raises(ValueError, match='N x 4'):
        success_auc(torch.zeros(3, 3), torch.zeros(3, 3))
    with pytest.raises(ValueError, match='predictions'):
        box_iou_xywh(torch.zeros(2, 4), torch.zeros(3, 4))


def test_metric_averages_sequences() -> None:
    metric = OTBMetric()
    gt1 = torch.tensor([[0.0, 0, 10, 10]] * 2)
    metric.update(gt1, gt1)  # perfect: AUC 20/21, DP 1
    gt2 = torch.tensor([[0.0, 0, 10, 10]] * 4)
    far = torch.tensor([[100.0, 100, 10, 10]] * 4)
    metric.update(far, gt2)  # failure: AUC 0, DP 0
    out = metric.compute()
    # sequences weigh the same regardless of length
    assert out['success_auc'].item() == pytest.approx(10 / 21)
    assert out['precision_20'].item() == pytest.approx(0.5)
    assert out['success_curve'].shape == (21,)
    assert out['precision_curve'].shape == (51,)
    metric.reset()
    metric.update(gt1, gt1)
    assert metric.compute()['precision_20'].item() == 1.0
