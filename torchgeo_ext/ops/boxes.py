"""Axis-aligned box geometry: format conversions and IoU variants.

Boxes are ``xyxy`` (x_min, y_min, x_max, y_max) unless the function name says
otherwise, in pixel coordinates. Element-wise functions broadcast over the
leading dimensions, so ``bbox_iou(a[:, None], b[None])`` gives an (N, M)
matrix.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def xyxy_to_cxcywh(boxes: Tensor) -> Tensor:
    """Convert corner boxes to centre-size boxes.

    Args:
        boxes: Boxes (..., 4) as x_min, y_min, x_max, y_max.

    Returns:
        Boxes (..., 4) as cx, cy, w, h.
    """
    x1, y1, x2, y2 = boxes.unbind(-1)
    return torch.stack(((x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1), dim=-1)


def cxcywh_to_xyxy(boxes: Tensor) -> Tensor:
    """Convert centre-size boxes to corner boxes.

    Args:
        boxes: Boxes (..., 4) as cx, cy, w, h.

    Returns:
        Boxes (..., 4) as x_min, y_min, x_max, y_max.
    """
    cx, cy, w, h = boxes.unbind(-1)
    return torch.stack((cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2), dim=-1)


def box_area(boxes: Tensor) -> Tensor:
    """Area of corner boxes (zero for inverted boxes).

    Args:
        boxes: Boxes (..., 4) in xyxy.

    Returns:
        Areas (...).
    """
    return (boxes[..., 2] - boxes[..., 0]).clamp(min=0) * (
        boxes[..., 3] - boxes[..., 1]
    ).clamp(min=0)


def box_iou(boxes1: Tensor, boxes2: Tensor, eps: float = 1e-7) -> Tensor:
    """Pairwise IoU matrix of two sets of corner boxes.

    Args:
        boxes1: Boxes (N, 4) in xyxy.
        boxes2: Boxes (M, 4) in xyxy.
        eps: Added to the union to avoid division by zero.

    Returns:
        IoU matrix (N, M).
    """
    return bbox_iou(boxes1[:, None], boxes2[None], eps=eps)


def bbox_iou(
    box1: Tensor, box2: Tensor, kind: str = 'iou', eps: float = 1e-7
) -> Tensor:
    """Element-wise IoU or one of its generalisations (GIoU, DIoU, CIoU).

    Args:
        box1: Boxes (..., 4) in xyxy.
        box2: Boxes (..., 4) in xyxy, broadcastable with ``box1``.
        kind: ``'iou'``, ``'giou'``, ``'diou'`` or ``'ciou'``.
        eps: Small constant for numerical stability.

    Returns:
        The chosen overlap measure (...), in [-1, 1] (IoU in [0, 1]).

    Raises:
        ValueError: If ``kind`` is unknown.
    """
    if kind not in ('iou', 'giou', 'diou', 'ciou'):
        raise ValueError(f'unknown IoU kind {kind!r}')
    b1x1, b1y1, b1x2, b1y2 = box1.unbind(-1)
    b2x1, b2y1, b2x2, b2y2 = box2.unbind(-1)
    w1, h1 = b1x2 - b1x1, b1y2 - b1y1
    w2, h2 = b2x2 - b2x1, b2y2 - b2y1
    inter = (torch.minimum(b1x2, b2x2) - torch.maximum(b1x1, b2x1)).clamp(min=0) * (
        torch.minimum(b1y2, b2y2) - torch.maximum(b1y1, b2y1)
    ).clamp(min=0)
    union = w1 * h1 + w2 * h2 - inter + eps
    iou = inter / union
    if kind == 'iou':
        return iou
    cw = torch.maximum(b1x2, b2x2) - torch.minimum(b1x1, b2x1)
    ch = torch.maximum(b1y2, b2y2) - torch.minimum(b1y1, b2y1)
    if kind == 'giou':
        hull = cw * ch + eps
        return iou - (hull - union) / hull
    diag2 = cw**2 + ch**2 + eps
    centre2 = ((b2x1 + b2x2 - b1x1 - b1x2) ** 2 + (b2y1 + b2y2 - b1y1 - b1y2) ** 2) / 4
    if kind == 'diou':
        return iou - centre2 / diag2
    v = (4 / math.pi**2) * (
        torch.atan(w2 / (h2 + eps)) - torch.atan(w1 / (h1 + eps))
    ).pow(2)
    with torch.no_grad():
        alpha = v / (v - iou + (1 + eps))
    return iou - (centre2 / diag2 + v * alpha)


def bbox_ciou(box1: Tensor, box2: Tensor, eps: float = 1e-7) -> Tensor:
    """Element-wise complete IoU (Zheng et al., 2020), as in the YOLOv5 loss.

    CIoU = IoU - rho^2 / c^2 - alpha v, with rho the centre distance, c the
    diagonal of the enclosing box, v the aspect-ratio consistency term and
    alpha = v / (1 - IoU + v) (treated as a constant in the backward pass).

    Args:
        box1: Boxes (..., 4) in xyxy.
        box2: Boxes (..., 4) in xyxy, broadcastable with ``box1``.
        eps: Small constant for numerical stability.

    Returns:
        CIoU values (...), in [-1.5, 1].
    """
    return bbox_iou(box1, box2, kind='ciou', eps=eps)
