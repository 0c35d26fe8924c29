"""Tests of the YOLOv5 loss in torchgeo_ext.losses.yolo, and of the torchvision box ops it uses."""

import math

import pytest
import torch
from torchvision.ops import box_convert, box_iou, complete_box_iou_loss

from torchgeo_ext.losses.yolo import YOLOv5Loss

ANCHORS = torch.tensor([[10.0, 13.0], [16.0, 30.0], [33.0, 23.0]])


def test_target_assignment() -> None:
    loss = YOLOv5Loss(ANCHORS, 4, num_classes=3)
    raw = torch.zeros(1, 3, 8, 8, 8)
    # Centre (9.2, 14.6) px = cell (2.3, 3.65): own cell (2, 3), left (1, 3)
    # because x % 1 < 0.5, and below (2, 4) because (8 - 3.65) % 1 < 0.5.
    box = torch.tensor([[4.2, 8.1, 14.2, 21.1]])  # 10 x 13 px
    b, a, gj, gi, tbox, _anchors, cls = loss.build_targets(
        raw, [box], [torch.tensor([2])]
    )
    cells = {(int(j), int(i)) for j, i in zip(gj, gi)}
    assert cells == {(3, 2), (3, 1), (4, 2)}
    # Every anchor is within the size ratio 4 of a 10 x 13 box.
    assert set(a.tolist()) == {0, 1, 2}
    assert len(b) == 9
    assert (cls == 2).all()
    assert torch.allclose(tbox[:, 2:], torch.tensor([2.5, 3.25]).expand(9, 2))
    # A 200-px box matches no 10-33 px anchor.
    b, *_ = loss.build_targets(
        raw, [torch.tensor([[0.0, 0.0, 200.0, 200.0]])], [torch.tensor([0])]
    )
    assert len(b) == 0


def test_loss_terms() -> None:
    loss = YOLOv5Loss(
        ANCHORS, 4, num_classes=2, box_gain=1.0, obj_gain=1.0, cls_gain=1.0
    )
    box = torch.tensor(
        [[8.0, 8.0, 18.0, 21.0]]
    )  # 10 x 13 = anchor 0, centre cell (3, 3.625)
    raw = torch.full((1, 3, 8, 8, 7), -20.0)
    # A perfect prediction for anchor 0 in every assigned cell.
    _, a, gj, gi, tbox, anchors, _ = loss.build_targets(raw, [box], [torch.tensor([1])])
    for ai, j, i, t, anc in zip(a, gj, gi, tbox, anchors):
        xy = torch.logit((t[:2] + 0.5) / 2)
        wh = torch.logit(torch.sqrt(t[2:] / anc) / 2)
        raw[0, ai, j, i, :4] = torch.cat((xy, wh))
        raw[0, ai, j, i, 4] = 20.0
        raw[0, ai, j, i, 6] = 20.0
    _total, parts = loss(raw, [box], [torch.tensor([1])])
    assert parts['loss_box'] < 1e-4
    assert parts['loss_obj'] < 1e-4
    assert parts['loss_cls'] < 1e-4
    empty, parts = loss(
        torch.zeros(2, 3, 4, 4, 7),
        [torch.zeros(0, 4)] * 2,
        [torch.zeros(0, dtype=torch.long)] * 2,
    )
    # No objects: only objectness, BCE(0 logit, 0 target) = log 2, times the batch size.
    assert empty == pytest.approx(2 * math.log(2))
    assert parts['loss_box'] == 0


def test_torchvision_box_ops_hand_computed() -> None:
    # The values the hand-written helpers these replace were tested against.
    xyxy = torch.tensor([[1.0, 2.0, 5.0, 8.0]])
    cxcywh = box_convert(xyxy, 'xyxy', 'cxcywh')
    torch.testing.assert_close(cxcywh, torch.tensor([[3.0, 5.0, 4.0, 6.0]]))
    torch.testing.assert_close(box_convert(cxcywh, 'cxcywh', 'xyxy'), xyxy)
    a = torch.tensor([[0.0, 0, 2, 2]])
    b = torch.tensor([[1.0, 1, 3, 3], [0.0, 0, 2, 2], [5.0, 5, 6, 6]])
    torch.testing.assert_close(
        box_iou(a, b), torch.tensor([[1 / 7, 1.0, 0.0]]), atol=1e-6, rtol=0
    )
    # CIoU: centre distance^2 = 2, diagonal^2 = 18, same aspect ratio so v = 0.
    ciou = 1 - complete_box_iou_loss(a[0], b[0])
    assert ciou.item() == pytest.approx(1 / 7 - 2 / 18, abs=1e-6)
    # Aspect-ratio term for different shapes, same centre.
    c = torch.tensor([0.0, 0, 4, 2])
    d = torch.tensor([1.0, 0, 3, 2])
    v = 4 / math.pi**2 * (math.atan(1.0) - math.atan(2.0)) ** 2
    expected = 0.5 - v * v / (v - 0.5 + 1)
    assert (1 - complete_box_iou_loss(c, d)).item() == pytest.approx(expected, abs=1e-5)
    p = torch.tensor([[0.0, 0, 2, 2]], requires_grad=True)
    complete_box_iou_loss(p, torch.tensor([[1.0, 1, 3, 4]])).sum().backward()
    assert p.grad is not None
    assert torch.isfinite(p.grad).all()
