"""Tests of the YOLOv8-OBB-style detector in torchgeo_ext.models.obb_detector."""

import math

import pytest
import torch

from torchgeo_ext.models.obb_detector import (
    OBBLoss,
    dist_to_obb,
    obb_to_dist,
    postprocess,
    scaled_channels,
    scaled_depth,
    yolov8n_obb,
)
from torchgeo_ext.ops.obb import obb_to_poly


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
    results = postprocess(out, 16, conf_threshold=0.0, max_det=7, max_candidates=50)
    assert len(results) == 2
    for res in results:
        assert res['prediction_bbox'].shape[1] == 8
        assert res['prediction_bbox'].shape[0] <= 7
        assert res['prediction_label'].dtype == torch.long
        scores = res['prediction_score']
        assert (scores[:-1] >= scores[1:]).all()


def test_assignment_inside_boxes() -> None:
    loss = OBBLoss(num_classes=2, topk=10)
    anchors = torch.tensor([[x + 0.5, 0.5] for x in range(10)])
    gt = torch.tensor([[[2.0, 0.5, 4.0, 1.0, 0.0], [8.0, 0.5, 2.0, 1.0, 0.0]]])
    boxes = gt[0, [0] * 5 + [1] * 5][None]
    scores = torch.full((1, 10, 2), 0.5)
    _target_boxes, target_scores, fg, idx = loss.assign(
        scores, boxes, anchors, gt, torch.tensor([[0, 1]]), torch.tensor([[True, True]])
    )
    # anchors with centres inside box 0 (x in 0..4) and box 1 (x in 7..9)
    assert fg[0].tolist() == [
        True,
        True,
        True,
        True,
        False,
        False,
        False,
        True,
        True,
        False,
    ]
    assert idx[0, 7].item() == 1
    assert target_scores[0, 1, 0] > 0
    assert target_scores[0, 1, 1] == 0
    assert target_scores[0, 7, 1] > 0


@pytest.mark.slow
def test_loss_decreases() -> None:
    torch.manual_seed(0)
    model = yolov8n_obb(num_classes=3)
    criterion = OBBLoss(3)
    x = torch.randn(2, 3, 64, 96)
    polys = [
        obb_to_poly(torch.tensor([[30.0, 30, 24, 10, 0.3], [70, 40, 16, 16, -0.4]])),
        torch.zeros(0, 8),
    ]
    labels = [torch.tensor([1, 2]), torch.zeros(0, dtype=torch.long)]
    opt = torch.optim.Adam(model.parameters(), 2e-3)
    losses = []
    for _ in range(6):
        total, parts = criterion(model(x), polys, labels)
        assert set(parts) == {'loss_box', 'loss_cls', 'loss_dfl'}
        opt.zero_grad()
        total.backward()
        opt.step()
        losses.append(total.item())
    assert losses[-1] < 0.7 * losses[0]
    # no ground truth at all still gives a finite, differentiable loss
    total, _ = criterion(model(x), [torch.zeros(0, 8)] * 2, [torch.zeros(0)] * 2)
    total.backward()
    assert torch.isfinite(total)
