"""Non-maximum suppression that scales to dense scenes: sort-and-sweep candidate pairs."""

from __future__ import annotations

import itertools

import torch
from torch import Tensor

__all__ = [
    'batched_box_nms',
    'box_nms',
    'class_offsets',
    'greedy_suppression',
    'overlapping_pairs',
    'pair_intersection',
]

#: Candidate pairs :func:`overlapping_pairs` expands at once (bounds its memory).
PAIR_BUDGET = 1 << 22


def overlapping_pairs(boxes: Tensor) -> tuple[Tensor, Tensor]:
    """Index pairs ``i < j`` of axis-aligned boxes that overlap.

    Boxes are entered in every horizontal band (about twice the median box height)
    they reach, and each band is swept on x: a box is only proposed against boxes of
    its own band that start before it ends in x. A pair is reported once, in the
    band that holds the top of its overlap. Time and memory follow the number of
    boxes and of overlapping pairs (a plain x sweep proposes every box of a whole
    x column: quadratic in a dense scene).

    Args:
        boxes: Boxes (N, 4) xyxy.

    Returns:
        Index tensors ``i`` and ``j`` (int64), sorted by ``i`` then ``j``.
    """
    n = boxes.shape[0]
    device = boxes.device
    empty = torch.zeros(0, dtype=torch.long, device=device)
    if n == 0:
        return empty, empty
    b = boxes.double()
    height = float((b[:, 3] - b[:, 1]).median().clamp(min=0))
    band = 2 * height if height > 0 else 1.0
    top = b[:, 1].min()
    first_band = ((b[:, 1] - top) / band).floor().long()
    last_band = ((b[:, 3] - top) / band).floor().long()
    # one entry per (box, band it reaches)
    reach = last_band - first_band + 1
    entry_box = torch.repeat_interleave(torch.arange(n, device=device), reach)
    offset = torch.arange(len(entry_box), device=device)
    offset -= (torch.cumsum(reach, 0) - reach)[entry_box]
    entry_band = first_band[entry_box] + offset
    # sort entries by (band, x1): bands laid end to end on one axis
    left = b[:, 0].min()
    stride = 2 * (b[:, 2].max() - left) + 1
    key = entry_band * stride + (b[entry_box, 0] - left)
    key_end = entry_band * stride + (b[entry_box, 2] - left)
    order = key.argsort(stable=True)
    key, key_end, entry_box = key[order], key_end[order], entry_box[order]
    entry_band = entry_band[order]
    # entries after position p (same band) that start before p ends in x
    ends = torch.searchsorted(key.contiguous(), key_end.contiguous(), side='left')
    positions = torch.arange(len(key), device=device)
    counts = (ends - positions - 1).clamp(min=0)
    cumulative = torch.cumsum(counts, 0)
    total = int(cumulative[-1])
    # expand the proposals a bounded chunk at a time
    budget = PAIR_BUDGET
    marks = torch.arange(budget, max(total, budget), budget, device=device)
    edges = [0, *torch.searchsorted(cumulative, marks, side='right').tolist(), len(key)]
    found_i, found_j = [empty], [empty]
    for p0, p1 in itertools.pairwise(edges):
        chunk = counts[p0:p1]
        size = int(chunk.sum()) if p1 > p0 else 0
        if size == 0:
            continue
        first = torch.repeat_interleave(positions[p0:p1], chunk)
        starts = torch.cumsum(chunk, 0) - chunk
        second = first + 1 + torch.arange(size, device=device) - starts[first - p0]
        i, j = entry_box[first], entry_box[second]
        bi, bj = b[i], b[j]
        overlap = (
            (bi[:, 0] < bj[:, 2])
            & (bj[:, 0] < bi[:, 2])
            & (bi[:, 1] < bj[:, 3])
            & (bj[:, 1] < bi[:, 3])
        )
        # report each pair once: in the band of the top of the overlap
        overlap_top = torch.maximum(bi[:, 1], bj[:, 1])
        home = ((overlap_top - top) / band).floor().long()
        once = overlap & (home == entry_band[first])
        found_i.append(i[once])
        found_j.append(j[once])
    i, j = torch.cat(found_i), torch.cat(found_j)
    lo, hi = torch.minimum(i, j), torch.maximum(i, j)
    by_first = (lo * n + hi).argsort()
    return lo[by_first], hi[by_first]


def greedy_suppression(n: int, i: Tensor, j: Tensor) -> Tensor:
    """Greedy NMS over a sparse list of suppressing pairs.

    Args:
        n: Number of boxes, in rank order (best first).
        i: Positions (sorted ascending) of the suppressing boxes of each pair.
        j: Positions (``j > i``) of the boxes they suppress if ``i`` is kept.

    Returns:
        Positions (int64, ascending) of the kept boxes.
    """
    removed = torch.zeros(n, dtype=torch.bool)
    if i.numel():
        # Walk the suppressing boxes in rank order; a box can only be suppressed by
        # a better-ranked one, so its own fate is known when it is reached.
        firsts, counts = torch.unique_consecutive(i.cpu(), return_counts=True)
        groups = torch.split(j.cpu(), counts.tolist())
        flags = removed.numpy()
        for first, group in zip(firsts.tolist(), groups, strict=True):
            if not flags[first]:
                flags[group.numpy()] = True
    return (~removed).nonzero(as_tuple=True)[0]


def pair_intersection(boxes: Tensor, i: Tensor, j: Tensor) -> Tensor:
    """Intersection areas of the axis-aligned boxes ``boxes[i]`` and ``boxes[j]``.

    Args:
        boxes: Boxes (N, 4) xyxy.
        i: Indices (P,) of the first box of each pair.
        j: Indices (P,) of the second.

    Returns:
        Areas (P,), 0 for boxes that do not overlap.
    """
    lo = torch.maximum(boxes[i, :2], boxes[j, :2])
    hi = torch.minimum(boxes[i, 2:], boxes[j, 2:])
    return (hi - lo).clamp(min=0).prod(-1)


def class_offsets(coordinates: Tensor, labels: Tensor) -> Tensor:
    """Per-box shifts that move each class's boxes beyond every other class's.

    Adding the shift to the x coordinates of the boxes makes boxes of
    different labels disjoint, so one NMS over all of them is a class-wise NMS.

    Args:
        coordinates: Box coordinates (N, ...) in any layout (xyxy, polygons).
        labels: Class indices (N,).

    Returns:
        Shifts (N, 1) of the coordinates' dtype.
    """
    span = (coordinates.max() - coordinates.min()).abs() + 1
    return (labels.to(coordinates.dtype) * span * 2)[:, None]


def box_nms(boxes: Tensor, scores: Tensor, iou_threshold: float) -> Tensor:
    """Greedy NMS of axis-aligned boxes, linear in memory.

    torchvision's CPU NMS compares every kept box with every remaining one,
    which is quadratic in the number of kept boxes (minutes for a scene of
    100k objects). Here only pairs whose axis-aligned extents overlap are
    compared (:func:`overlapping_pairs`), then :func:`greedy_suppression`
    walks that sparse pair list in score order, so time and memory follow the
    number of boxes and of overlapping pairs. The kept boxes equal
    torchvision's ``nms`` (tested); :func:`~torchgeo_ext.ops.obb.rotated_nms`
    uses the same machinery with the exact polygon IoU.

    Args:
        boxes: Boxes (N, 4) xyxy.
        scores: Scores (N,).
        iou_threshold: Boxes overlapping a kept, higher-scoring box with an IoU
            strictly above this are discarded.

    Returns:
        Indices (int64) of the kept boxes, sorted by decreasing score.
    """
    n = boxes.shape[0]
    if n == 0:
        return torch.zeros(0, dtype=torch.long, device=boxes.device)
    order = scores.argsort(descending=True, stable=True)
    ranked = boxes[order]
    i, j = overlapping_pairs(ranked)
    if i.numel():
        inter = pair_intersection(ranked, i, j)
        area = (ranked[:, 2:] - ranked[:, :2]).prod(-1)
        over = inter > iou_threshold * (area[i] + area[j] - inter)
        i, j = i[over], j[over]
    return order[greedy_suppression(n, i, j).to(boxes.device)]


def batched_box_nms(
    boxes: Tensor, scores: Tensor, labels: Tensor, iou_threshold: float
) -> Tensor:
    """Class-wise :func:`box_nms`: boxes of different labels never suppress each other.

    Args:
        boxes: Boxes (N, 4) xyxy.
        scores: Scores (N,).
        labels: Class indices (N,).
        iou_threshold: IoU threshold of :func:`box_nms`.

    Returns:
        Indices (int64) of the kept boxes, sorted by decreasing score.
    """
    if boxes.shape[0] == 0:
        return torch.zeros(0, dtype=torch.long, device=boxes.device)
    return box_nms(boxes + class_offsets(boxes, labels), scores, iou_threshold)
