"""Tests of the oriented-box geometry in torchgeo_ext.ops.obb."""

import math

import pytest
import shapely
import torch

from torchgeo_ext.ops.obb import (
    batched_rotated_nms,
    obb_to_poly,
    poly_area,
    poly_iou,
    poly_iou_pairwise,
    poly_to_obb,
    poly_to_xyxy,
    polygons_to_mask,
    probiou,
    regularize_obb,
    rotated_nms,
)


def shapely_iou(a: list[float], b: list[float]) -> float:
    pa = shapely.Polygon(list(zip(a[0::2], a[1::2])))
    pb = shapely.Polygon(list(zip(b[0::2], b[1::2])))
    union = pa.union(pb).area
    return pa.intersection(pb).area / union if union > 0 else 0.0


def random_obbs(n: int, seed: int = 0, spread: float = 20.0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    centre = torch.rand(n, 2, generator=g, dtype=torch.float64) * spread
    size = torch.rand(n, 2, generator=g, dtype=torch.float64) * 15 + 1
    angle = (torch.rand(n, 1, generator=g, dtype=torch.float64) - 0.5) * 2 * math.pi
    return torch.cat((centre, size, angle), dim=1)


def test_obb_to_poly_axis_aligned() -> None:
    poly = obb_to_poly(torch.tensor([[5.0, 4.0, 4.0, 2.0, 0.0]]))
    expected = torch.tensor([[3.0, 3.0, 7.0, 3.0, 7.0, 5.0, 3.0, 5.0]])
    torch.testing.assert_close(poly, expected)


def test_obb_to_poly_quarter_turn() -> None:
    # w side along +y after a positive quarter turn (clockwise on screen)
    poly = obb_to_poly(torch.tensor([[0.0, 0.0, 4.0, 2.0, math.pi / 2]]))
    expected = torch.tensor([[1.0, -2.0, 1.0, 2.0, -1.0, 2.0, -1.0, -2.0]])
    torch.testing.assert_close(poly, expected, atol=1e-6, rtol=0)


def test_poly_to_obb_round_trip() -> None:
    obb = regularize_obb(random_obbs(50))
    back = poly_to_obb(obb_to_poly(obb))
    torch.testing.assert_close(back, obb, atol=1e-9, rtol=1e-9)


def test_poly_to_obb_is_long_edge() -> None:
    obb = poly_to_obb(obb_to_poly(random_obbs(100, seed=1)))
    assert (obb[:, 2] >= obb[:, 3]).all()
    assert (obb[:, 4] >= -math.pi / 2).all()
    assert (obb[:, 4] < math.pi / 2).all()


def test_poly_to_obb_quadrilateral_enclosing() -> None:
    # a non-rectangular quadrilateral: result is an enclosing rectangle
    poly = torch.tensor([[0.0, 0.0, 4.0, 0.0, 5.0, 3.0, 0.0, 2.0]], dtype=torch.float64)
    rect = obb_to_poly(poly_to_obb(poly))
    qa = shapely.Polygon(poly.reshape(4, 2).tolist())
    ra = shapely.Polygon(rect.reshape(4, 2).tolist())
    assert ra.buffer(1e-9).contains(qa)


def test_regularize_obb_same_polygon() -> None:
    obb = random_obbs(20, seed=2)
    reg = regularize_obb(obb)
    iou = poly_iou_pairwise(obb_to_poly(obb), obb_to_poly(reg))
    torch.testing.assert_close(iou, torch.ones(20, dtype=torch.float64))


def test_poly_area() -> None:
    obb = random_obbs(10)
    torch.testing.assert_close(poly_area(obb_to_poly(obb)), obb[:, 2] * obb[:, 3])


def test_poly_iou_hand_computed() -> None:
    a = torch.tensor([[0.0, 0, 2, 0, 2, 2, 0, 2]])
    b = torch.tensor(
        [
            [1.0, 1, 3, 1, 3, 3, 1, 3],  # quarter overlap: 1 / 7
            [5.0, 5, 6, 5, 6, 6, 5, 6],  # disjoint
            [0.0, 0, 2, 0, 2, 2, 0, 2],  # identical
            [0.0, 2, 2, 2, 2, 0, 0, 0],  # identical, other orientation
            [0.5, 0.5, 1.5, 0.5, 1.5, 1.5, 0.5, 1.5],  # inside: 1 / 4
            [2.0, 0, 4, 0, 4, 2, 2, 2],  # touching edge
            [2.0, 2, 4, 2, 4, 4, 2, 4],  # touching corner
            [0.0, 0, 1, 0, 1, 2, 0, 2],  # inside, sharing three edges: 1 / 2
            [2.0, 0, 2, 2, 0, 2, 0, 0],  # identical, corners rolled
            [1.0, -1, 2, 0, 1, 1, 0, 0],  # diamond on the edge: 1 / 2 in, 1 / 5
        ]
    )
    iou = poly_iou(a, b)
    expected = torch.tensor([[1 / 7, 0.0, 1.0, 1.0, 0.25, 0.0, 0.0, 0.5, 1.0, 0.2]])
    torch.testing.assert_close(iou, expected, atol=1e-6, rtol=0)
    # a diamond inside the square: area 2 of 4
    diamond = torch.tensor([[1.0, 0, 2, 1, 1, 2, 0, 1]])
    torch.testing.assert_close(poly_iou(a, diamond), torch.tensor([[0.5]]))


def test_poly_iou_against_shapely() -> None:
    p1 = obb_to_poly(random_obbs(40, seed=3))
    p2 = obb_to_poly(random_obbs(30, seed=4))
    iou = poly_iou(p1, p2)
    assert iou.shape == (40, 30)
    expected = torch.tensor(
        [[shapely_iou(a, b) for b in p2.tolist()] for a in p1.tolist()],
        dtype=torch.float64,
    )
    assert (expected > 0).sum() > 50  # many overlapping pairs exercised
    torch.testing.assert_close(iou, expected, atol=1e-6, rtol=0)


def test_poly_iou_chunked_and_empty() -> None:
    p1 = obb_to_poly(random_obbs(7, seed=5))
    p2 = obb_to_poly(random_obbs(9, seed=6))
    torch.testing.assert_close(poly_iou(p1, p2, chunk=10), poly_iou(p1, p2))
    assert poly_iou(p1[:0], p2).shape == (0, 9)


def test_poly_to_xyxy() -> None:
    poly = torch.tensor([[1.0, 5, 3, 2, 6, 4, 2, 7]])
    torch.testing.assert_close(poly_to_xyxy(poly), torch.tensor([[1.0, 2, 6, 7]]))


def test_probiou() -> None:
    a = torch.tensor([[0.0, 0, 8, 4, 0.3]])
    same = probiou(a, a)
    assert same.item() == pytest.approx(1.0, abs=1e-3)
    # parametrisation invariance: w/h swapped with a quarter turn, angle + pi
    alt = torch.tensor(
        [[0.0, 0, 4, 8, 0.3 + math.pi / 2], [0.0, 0, 8, 4, 0.3 + math.pi]]
    )
    torch.testing.assert_close(probiou(a, alt), same.expand(2), atol=1e-5, rtol=0)
    far = torch.tensor([[100.0, 100, 8, 4, 0.3]])
    assert probiou(a, far).item() < 1e-3
    # decreasing with distance, differentiable
    shifts = torch.tensor([0.5, 1.0, 2.0, 4.0], requires_grad=True)
    b = a.repeat(4, 1) + torch.stack([shifts] + [torch.zeros(4)] * 4, dim=1)
    values = probiou(a, b)
    assert (values[1:] < values[:-1]).all()
    values.sum().backward()
    assert shifts.grad is not None
    assert torch.isfinite(shifts.grad).all()


def test_rotated_nms_hand_computed() -> None:
    polys = obb_to_poly(
        torch.tensor(
            [
                [0.0, 0, 10, 4, 0.0],
                [0.5, 0, 10, 4, 0.0],  # IoU 0.905 with box 0
                [0.0, 0, 10, 4, math.pi / 2],  # IoU 0.25 with box 0
                [50.0, 50, 10, 4, 0.2],
            ]
        )
    )
    scores = torch.tensor([0.5, 0.9, 0.8, 0.1])
    keep = rotated_nms(polys, scores, 0.5)
    assert keep.tolist() == [1, 2, 3]
    assert rotated_nms(polys, scores, 0.2).tolist() == [1, 3]
    assert rotated_nms(polys[:0], scores[:0], 0.5).numel() == 0


def test_rotated_nms_matches_reference() -> None:
    polys = obb_to_poly(random_obbs(60, seed=7, spread=40))
    scores = torch.rand(60, generator=torch.Generator().manual_seed(0)).double()
    keep = rotated_nms(polys, scores, 0.3)
    # reference greedy NMS on the dense IoU matrix
    iou = poly_iou(polys, polys)
    order = scores.argsort(descending=True).tolist()
    ref: list[int] = []
    for i in order:
        if all(iou[i, k] <= 0.3 for k in ref):
            ref.append(i)
    assert keep.tolist() == ref


@pytest.mark.parametrize('offset', [0.0, 4_000_000.0])
def test_rotated_nms_clustered_matches_reference(offset: float) -> None:
    # Detector-like clusters (jittered copies of each object): most candidate pairs
    # overlap, so the area bound and the exact IoU both decide; at UTM-sized offsets
    # in float32 the bound must not drop a pair the exact IoU suppresses.
    g = torch.Generator().manual_seed(1)
    base = random_obbs(30, seed=8, spread=200).repeat_interleave(8, 0)
    jitter = torch.randn(240, 5, generator=g, dtype=torch.float64)
    obbs = base + jitter * torch.tensor([1.5, 1.5, 1.0, 1.0, 0.05], dtype=torch.float64)
    obbs[:, 2:4] = obbs[:, 2:4].abs() + 0.5
    polys = (obb_to_poly(obbs) + offset).float()
    scores = torch.rand(240, generator=g)
    for threshold in (0.3, 0.5, 0.7):
        iou = poly_iou(polys, polys)
        ref: list[int] = []
        for i in scores.argsort(descending=True).tolist():
            if all(iou[i, k] <= threshold for k in ref):
                ref.append(i)
        assert rotated_nms(polys, scores, threshold).tolist() == ref


def test_batched_rotated_nms() -> None:
    polys = obb_to_poly(torch.tensor([[0.0, 0, 10, 4, 0.0], [0.5, 0, 10, 4, 0.0]] * 2))
    scores = torch.tensor([0.9, 0.8, 0.7, 0.6])
    labels = torch.tensor([0, 0, 1, 1])
    keep = batched_rotated_nms(polys, scores, labels, 0.5)
    assert keep.tolist() == [0, 2]
    assert keep.dtype == torch.long
    empty = batched_rotated_nms(polys[:0], scores[:0], labels[:0], 0.5)
    assert empty.numel() == 0


def test_polygons_to_mask() -> None:
    polys = torch.tensor([[1.0, 1, 4, 1, 4, 3, 1, 3], [6.0, 4, 8, 6, 6, 8, 4, 6]])
    mask = polygons_to_mask(polys, 9, 10)
    assert mask.shape == (9, 10)
    assert mask[1:3, 1:4].all()
    # rectangle 3 x 2 = 6 pixels; diamond |x - 6| + |y - 6| <= 2: the 12 pixel
    # centres with |dx| + |dy| <= 2 (boundary included)
    assert mask[:3].sum() == 6
    assert mask[3:].sum() == 12
    assert mask[5, 5]
    assert mask[4, 5]
    assert not mask[4, 4]
    assert not polygons_to_mask(polys[:0], 3, 3).any()
