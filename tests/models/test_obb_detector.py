"""Tests of the YOLOv8-OBB-style detector in torchgeo_ext.models.obb_detector."""

import math

import torch

from torchgeo_ext.models.obb_detector import (
    dist_to_obb,
    obb_to_dist,
    postprocess,
    scaled_channels,
    scaled_depth,
    yolov8n_obb,
)


def test_scaling_rules() -> None:
    assert [scaled_channels(c, 0.25) for c in (64, 128, 256, 512, 1024)] == [
        16,
        32,
        64,
        128,
        256,
    ]
    assert scaled_depth(3, 0.33) == 1
    assert scaled_depth(6, 0.33) == 2


def test_parameter_count_yolov8n_obb() -> None:
    # YOLOv8n-OBB on DOTA (15 classes): 3.085M parameters (+16 fixed DFL bins
    # in implementations that hold them in a frozen convolution)
    model = yolov8n_obb(num_classes=15)
    assert sum(p.numel() for p in model.parameters()) == 3_085_424


def test_dist_obb_inverse() -> None:
    boxes = torch.tensor([[10.0, 12.0, 8.0, 4.0, 0.4], [3.0, 3.0, 6.0, 2.0, -1.2]])
    anchors = torch.tensor([[11.0, 12.5], [2.5, 3.5]])
    dist = obb_to_dist(boxes, anchors)
    assert (dist > 0).all()
    back = dist_to_obb(dist, boxes[:, 4:], anchors)
    torch.testing.assert_close(back, boxes)


def test_forward_shapes_and_postprocess() -> None:
    model = yolov8n_obb(num_classes=5)
    model.eval()
    out = model(torch.randn(2, 3, 100, 130))  # padded to 128 x 160
    anchors = 16 * 20 + 8 * 10 + 4 * 5
    assert out.distri.shape == (2, anchors, 64)
    assert out.scores.shape == (2, anchors, 5)
    assert out.angle.shape == (2, anchors, 1)
    assert (out.angle >= -math.pi / 4).all()
    assert (out.angle < 3 * math.pi / 4).all()
    results = postprocess(
        out, 16, score_threshold=0.0, max_detections=7, max_candidates=50
    )
    assert len(results) == 2
    for res in results:
        assert res['prediction_bbox'].shape[1] == 8
        assert res['prediction_bbox'].shape[0] <= 7
        assert res['prediction_label'].dtype == torch.long
        scores = res['prediction_score']
        assert (scores[:-1] >= scores[1:]).all()
