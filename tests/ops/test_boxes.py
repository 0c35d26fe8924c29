"""Tests of the axis-aligned box helpers in torchgeo_ext.ops.boxes."""

import math

import pytest
import torch

from torchgeo_ext.ops.boxes import (
    bbox_ciou,
    bbox_iou,
    box_area,
    box_iou,
    cxcywh_to_xyxy,
    xyxy_to_cxcywh,
)


def test_conversions_round_trip() -> None:
    xyxy = torch.tensor([[1.0, 2.0, 5.0, 8.0]])
    cxcywh = xyxy_to_cxcywh(xyxy)
    torch.testing.assert_close(cxcywh, torch.tensor([[3.0, 5.0, 4.0, 6.0]]))
    torch.testing.assert_close(cxcywh_to_xyxy(cxcywh), xyxy)
    assert box_area(xyxy).item() == 24.0


def test_box_iou_matrix() -> None:
    a = torch.tensor([[0.0, 0, 2, 2]])
    b = torch.tensor([[1.0, 1, 3, 3], [0.0, 0, 2, 2], [5.0, 5, 6, 6]])
    torch.testing.assert_close(
        box_iou(a, b), torch.tensor([[1 / 7, 1.0, 0.0]]), atol=1e-6, rtol=0
    )


def test_giou_diou_ciou_hand_computed() -> None:
    a = torch.tensor([0.0, 0, 2, 2])
    b = torch.tensor([1.0, 1, 3, 3])
    iou = 1 / 7
    # enclosing box 3 x 3 = 9, union 7
    assert bbox_iou(a, b, 'giou').item() == pytest.approx(iou - 2 / 9, abs=1e-6)
    # centre distance^2 = 2, diagonal^2 = 18; same aspect ratio so v = 0
    assert bbox_iou(a, b, 'diou').item() == pytest.approx(iou - 2 / 18, abs=1e-6)
    assert bbox_ciou(a, b).item() == pytest.approx(iou - 2 / 18, abs=1e-6)
    # aspect-ratio term for different shapes, same centre
    c = torch.tensor([0.0, 0, 4, 2])
    d = torch.tensor([1.0, 0, 3, 2])
    v = 4 / math.pi**2 * (math.atan(1.0) - math.atan(2.0)) ** 2
    iou2 = 0.5
    expected = iou2 - v * v / (v - iou2 + 1)
    assert bbox_ciou(c, d).item() == pytest.approx(expected, abs=1e-5)
    with pytest.raises(ValueError, match='unknown'):
        bbox_iou(a, b, 'xiou')


def test_ciou_gradient() -> None:
    a = torch.tensor([[0.0, 0, 2, 2]], requires_grad=True)
    b = torch.tensor([[1.0, 1, 3, 4]])
    (1 - bbox_ciou(a, b)).sum().backward()
    assert a.grad is not None
    assert torch.isfinite(a.grad).all()
