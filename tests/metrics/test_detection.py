"""Tests of the oriented mAP in torchgeo_ext.metrics.detection."""

import math

import pytest
import torch

from torchgeo_ext.metrics.detection import (
    OrientedMeanAveragePrecision,
    average_precision,
    oriented_average_precision,
)
from torchgeo_ext.ops.obb import obb_to_poly


def poly(
    cx: float, cy: float, w: float = 10, h: float = 4, a: float = 0.0
) -> list[float]:
    return obb_to_poly(torch.tensor([cx, cy, w, h, a])).tolist()


def case() -> tuple[list[dict[str, torch.Tensor]], list[dict[str, torch.Tensor]]]:
    # class 0: GT A, B. ranked detections: A (tp), empty (fp), A again (fp), B (tp)
    # class 1: one GT, no detection; class 2: nothing at all
    # class 0 detection on a difficult GT is ignored
    preds = [
        {
            'prediction_bbox': torch.tensor(
                [
                    poly(10, 10, a=0.3),
                    poly(80, 80),
                    poly(10.5, 10, a=0.3),
                    poly(40, 40, a=-0.5),
                    poly(60, 10),
                ]
            ),
            'prediction_score': torch.tensor([0.9, 0.8, 0.7, 0.6, 0.95]),
            'prediction_label': torch.tensor([0, 0, 0, 0, 0]),
        }
    ]
    targets = [
        {
            'bbox': torch.tensor(
                [poly(10, 10, a=0.3), poly(40, 40, a=-0.5), poly(5, 60), poly(60, 10)]
            ),
            'label': torch.tensor([0, 0, 1, 0]),
            'difficult': torch.tensor([False, False, False, True]),
        }
    ]
    return preds, targets


def test_average_precision_methods() -> None:
    recall = torch.tensor([0.5, 0.5, 0.5, 1.0])
    precision = torch.tensor([1.0, 0.5, 1 / 3, 0.5])
    assert average_precision(recall, precision, 'auc') == pytest.approx(0.75)
    assert average_precision(recall, precision, 'voc07') == pytest.approx(8.5 / 11)
    with pytest.raises(ValueError, match='unknown'):
        average_precision(recall, precision, 'coco')


def test_oriented_average_precision_hand_computed() -> None:
    preds, targets = case()
    ap = oriented_average_precision(preds, targets, 3, 0.5, 'auc')
    assert ap[0].item() == pytest.approx(0.75)
    assert ap[1].item() == 0.0
    assert math.isnan(ap[2].item())
    ap07 = oriented_average_precision(preds, targets, 3, 0.5, 'voc07')
    assert ap07[0].item() == pytest.approx(8.5 / 11)


def test_threshold_is_strict() -> None:
    # IoU exactly at the threshold is not a match (DOTA devkit rule)
    gt = torch.tensor([poly(0, 0, 4, 2)])
    det = torch.tensor([poly(4 / 3, 0, 4, 2)])  # overlap 8/3 of 8: IoU 0.5
    preds = [
        {
            'prediction_bbox': det,
            'prediction_score': torch.ones(1),
            'prediction_label': torch.zeros(1, dtype=torch.long),
        }
    ]
    targets = [{'bbox': gt, 'label': torch.zeros(1, dtype=torch.long)}]
    assert oriented_average_precision(preds, targets, 1, 0.5, 'auc')[0] == 0.0
    assert oriented_average_precision(preds, targets, 1, 0.49, 'auc')[0] == 1.0


def test_metric_class() -> None:
    preds, targets = case()
    metric = OrientedMeanAveragePrecision(num_classes=3, iou_thresholds=(0.5, 0.75))
    # split across two updates (second with an empty image)
    metric.update(preds, targets)
    metric.update(
        [
            {
                'prediction_bbox': torch.zeros(0, 8),
                'prediction_score': torch.zeros(0),
                'prediction_label': torch.zeros(0, dtype=torch.long),
            }
        ],
        [{'bbox': torch.zeros(0, 8), 'label': torch.zeros(0, dtype=torch.long)}],
    )
    out = metric.compute()
    assert out['map_50'].item() == pytest.approx((8.5 / 11) / 2)
    assert out['map_voc07'].item() == pytest.approx((8.5 / 11) / 2)
    assert out['map_auc'].item() == pytest.approx(0.375)
    assert out['map_per_class'].shape == (3,)
    assert 'map_75' in out
    assert out['map'].item() == pytest.approx(
        (out['map_50'] + out['map_75']).item() / 2
    )
    metric.reset()
    with pytest.raises(ValueError, match='one entry'):
        metric.update(preds, [])


def test_metric_perfect_and_empty() -> None:
    metric = OrientedMeanAveragePrecision(num_classes=2, method='auc')
    boxes = torch.tensor([poly(10, 10), poly(50, 50, a=1.0)])
    labels = torch.tensor([0, 1])
    metric.update(
        [
            {
                'prediction_bbox': boxes,
                'prediction_score': torch.tensor([0.9, 0.8]),
                'prediction_label': labels,
            }
        ],
        [{'bbox': boxes, 'label': labels}],
    )
    assert metric.compute()['map'].item() == pytest.approx(1.0)
    empty = OrientedMeanAveragePrecision(num_classes=2)
    with pytest.warns(UserWarning, match='before the ``update``'):
        assert empty.compute()['map'].item() == 0.0
    with pytest.raises(ValueError, match='unknown'):
        OrientedMeanAveragePrecision(num_classes=2, method='x')


def test_duplicates_and_best_match_rule() -> None:
    # two GT side by side; det 1 (best) and det 2 (duplicate) both claim GT A;
    # det 3 overlaps GT B best. Duplicates are false positives even though GT B
    # is free (VOC rule: only the best-overlapping box counts).
    gt = torch.tensor([poly(10, 10), poly(30, 10)])
    dets = torch.tensor([poly(10, 10), poly(11, 10), poly(30, 10)])
    preds = [
        {
            'prediction_bbox': dets,
            'prediction_score': torch.tensor([0.9, 0.8, 0.7]),
            'prediction_label': torch.zeros(3, dtype=torch.long),
        }
    ]
    targets = [{'bbox': gt, 'label': torch.zeros(2, dtype=torch.long)}]
    # ranked: tp, fp, tp -> precision 1, 1/2, 2/3 at recall 1/2, 1/2, 1
    ap = oriented_average_precision(preds, targets, 1, 0.5, 'auc')
    assert ap[0].item() == pytest.approx(0.5 * 1 + 0.5 * 2 / 3)
