"""Tests of the sparse (sort-and-sweep) NMS in torchgeo_ext.ops.nms."""

import pytest
import torch
from torchvision.ops import batched_nms, nms

from torchgeo_ext.ops.nms import (
    batched_box_nms,
    box_nms,
    greedy_suppression,
    overlapping_pairs,
)


def random_boxes(n: int, seed: int, spread: float = 300.0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    # clusters of jittered copies, like detector candidates
    centre = (torch.rand(n // 5, 2, generator=g) * spread).repeat_interleave(5, 0)
    centre = centre + torch.randn(n, 2, generator=g) * 3
    size = torch.rand(n, 2, generator=g) * 20 + 2
    return torch.cat((centre - size / 2, centre + size / 2), 1).double()


@pytest.mark.parametrize('budget', [1 << 22, 7])
def test_overlapping_pairs_match_brute_force(
    budget: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a small budget expands the sweep's proposals in many chunks
    monkeypatch.setattr('torchgeo_ext.ops.nms.PAIR_BUDGET', budget)
    xyxy = random_boxes(80, seed=8, spread=60)
    i, j = overlapping_pairs(xyxy)
    a, b = xyxy[:, None], xyxy[None]
    dense = (
        (a[..., 0] < b[..., 2])
        & (b[..., 0] < a[..., 2])
        & (a[..., 1] < b[..., 3])
        & (b[..., 1] < a[..., 3])
    ).triu(1)
    assert sorted(zip(i.tolist(), j.tolist(), strict=True)) == [
        tuple(x) for x in dense.nonzero().tolist()
    ]
    assert (i[1:] >= i[:-1]).all()
    empty = overlapping_pairs(xyxy[:0])
    assert empty[0].numel() == empty[1].numel() == 0


def test_overlapping_pairs_mixed_sizes_match_brute_force() -> None:
    # tall boxes reach many bands, tiny ones one; pairs must be found once each
    g = torch.Generator().manual_seed(5)
    centre = torch.rand(400, 2, generator=g, dtype=torch.float64) * 200
    size = torch.rand(400, 2, generator=g, dtype=torch.float64) * 6 + 0.5
    size[:20] *= torch.tensor([1.0, 30.0], dtype=torch.float64)  # tall
    size[20:40] *= torch.tensor([30.0, 1.0], dtype=torch.float64)  # wide
    xyxy = torch.cat((centre - size / 2, centre + size / 2), 1) + 4e6  # UTM-sized
    i, j = overlapping_pairs(xyxy)
    a, b = xyxy[:, None], xyxy[None]
    dense = (
        (a[..., 0] < b[..., 2])
        & (b[..., 0] < a[..., 2])
        & (a[..., 1] < b[..., 3])
        & (b[..., 1] < a[..., 3])
    ).triu(1)
    expected = [tuple(x) for x in dense.nonzero().tolist()]
    assert len(expected) > 300
    assert list(zip(i.tolist(), j.tolist(), strict=True)) == expected


@pytest.mark.parametrize('threshold', [0.1, 0.45, 0.7])
@pytest.mark.parametrize('seed', [0, 1])
def test_box_nms_equals_torchvision(threshold: float, seed: int) -> None:
    boxes = random_boxes(500, seed)
    scores = torch.rand(500, generator=torch.Generator().manual_seed(seed)).double()
    assert (
        box_nms(boxes, scores, threshold).tolist()
        == nms(boxes, scores, threshold).tolist()
    )


def test_batched_box_nms_equals_torchvision() -> None:
    boxes = random_boxes(600, seed=3)
    g = torch.Generator().manual_seed(3)
    scores = torch.rand(600, generator=g).double()
    labels = torch.randint(0, 4, (600,), generator=g)
    got = batched_box_nms(boxes, scores, labels, 0.5)
    assert got.tolist() == batched_nms(boxes, scores, labels, 0.5).tolist()
    assert batched_box_nms(boxes[:0], scores[:0], labels[:0], 0.5).numel() == 0


def test_greedy_suppression_chain() -> None:
    # 0 suppresses 1, 1 would suppress 2 but is gone, so 2 stays; 3 has no pair
    i, j = torch.tensor([0, 1]), torch.tensor([1, 2])
    assert greedy_suppression(4, i, j).tolist() == [0, 2, 3]
