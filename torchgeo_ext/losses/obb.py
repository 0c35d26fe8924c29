"""The YOLOv8-OBB detection loss (oriented detectors: YOLOv8n-OBB, FoRA/LMA, E2E-MFD)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..models.obb_detector import OBBOutput, dfl_expectation, dist_to_obb, obb_to_dist
from ..ops.obb import poly_to_obb, probiou

__all__ = ['OBBLoss']


class OBBLoss(nn.Module):
    """YOLOv8-OBB loss: task-aligned assignment, BCE class, ProbIoU box and DFL.

    Assignment (TOOD style): for each ground-truth box, the candidate anchors
    are those whose centre lies inside the rotated box; their alignment is
    ``score^alpha * ProbIoU^beta``; the ``topk`` best become positives (an
    anchor claimed by several boxes goes to the best ProbIoU). Class targets
    are the normalised alignment.
    """

    def __init__(
        self,
        num_classes: int,
        reg_max: int = 16,
        topk: int = 10,
        alpha: float = 0.5,
        beta: float = 6.0,
        box_gain: float = 7.5,
        cls_gain: float = 0.5,
        dfl_gain: float = 1.5,
    ) -> None:
        """Initialise a new OBBLoss.

        Args:
            num_classes: Number of classes.
            reg_max: Bins per side.
            topk: Positives per ground-truth box.
            alpha: Exponent of the class score in the alignment metric.
            beta: Exponent of the ProbIoU in the alignment metric.
            box_gain: Weight of the ProbIoU loss.
            cls_gain: Weight of the BCE loss.
            dfl_gain: Weight of the DFL.
        """
        super().__init__()
        self.num_classes = num_classes
        self.reg_max = reg_max
        self.topk = topk
        self.alpha = alpha
        self.beta = beta
        self.gains = (box_gain, cls_gain, dfl_gain)

    @torch.no_grad()
    def assign(
        self,
        scores: Tensor,
        boxes: Tensor,
        anchors: Tensor,
        gt_boxes: Tensor,
        gt_labels: Tensor,
        gt_mask: Tensor,
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Task-aligned assignment of anchors to ground truth.

        Args:
            scores: Predicted class probabilities (B, A, C).
            boxes: Predicted boxes (B, A, 5) in pixels.
            anchors: Anchor points (A, 2) in pixels.
            gt_boxes: Ground truth (B, G, 5) in pixels (padded).
            gt_labels: Labels (B, G).
            gt_mask: Which of the G entries are real (B, G).

        Returns:
            Target boxes (B, A, 5), target scores (B, A, C), foreground mask
            (B, A) and the index of the assigned box (B, A).
        """
        bsz, num_anchors, num_classes = scores.shape
        g = gt_boxes.shape[1]
        dist = obb_to_dist(gt_boxes[:, :, None], anchors[None, None])  # (B, G, A, 4)
        inside = (dist.amin(-1) > 1e-9) & gt_mask[..., None]
        overlaps = torch.zeros(
            bsz, g, num_anchors, dtype=boxes.dtype, device=boxes.device
        )
        bi, gi, ai = inside.nonzero(as_tuple=True)
        overlaps[bi, gi, ai] = (
            probiou(gt_boxes[bi, gi], boxes[bi, ai]).clamp(min=0).to(boxes.dtype)
        )
        label_idx = gt_labels.long().clamp(min=0)[..., None].expand(-1, -1, num_anchors)
        box_scores = scores.transpose(1, 2).gather(1, label_idx)  # (B, G, A)
        metric = box_scores.pow(self.alpha) * overlaps.pow(self.beta) * inside
        k = min(self.topk, num_anchors)
        top = metric.topk(k, dim=-1).indices
        topk_mask = torch.zeros_like(inside).scatter_(-1, top, True)
        pos = topk_mask & inside
        # anchors claimed by several boxes go to the highest overlap
        multi = pos.sum(1, keepdim=True) > 1
        if multi.any():
            best = overlaps.argmax(1, keepdim=True)
            best_mask = torch.zeros_like(pos).scatter_(1, best, True)
            pos = torch.where(multi, best_mask & inside, pos)
        fg = pos.any(1)
        idx = pos.to(torch.int64).argmax(1)  # (B, A)
        batch = torch.arange(bsz, device=scores.device)[:, None]
        target_boxes = gt_boxes[batch, idx]
        target_labels = gt_labels.long().clamp(min=0)[batch, idx]
        target_scores = (
            F.one_hot(target_labels, num_classes).to(scores.dtype) * fg[..., None]
        )
        metric = metric * pos
        max_metric = metric.amax(-1, keepdim=True)
        max_overlap = (overlaps * pos).amax(-1, keepdim=True)
        norm = (metric * max_overlap / (max_metric + 1e-9)).amax(1)  # (B, A)
        return target_boxes, target_scores * norm[..., None], fg, idx

    def forward(
        self, out: OBBOutput, gt_polygons: Sequence[Tensor], gt_labels: Sequence[Tensor]
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """Compute the loss of a batch.

        Args:
            out: Head outputs.
            gt_polygons: Per image, ground-truth polygons (N_i, 8) in pixels.
            gt_labels: Per image, labels (N_i,).

        Returns:
            The total loss (scaled by the batch size, as in YOLOv8) and its
            detached parts ``loss_box``, ``loss_cls`` and ``loss_dfl``.
        """
        bsz = out.scores.shape[0]
        gt_boxes, labels, mask = _padded_targets(
            gt_polygons, gt_labels, out.scores.device, out.scores.dtype
        )
        anchors_px = out.anchors * out.strides
        dist = dfl_expectation(out.distri, self.reg_max)
        pred_boxes_grid = dist_to_obb(dist, out.angle, out.anchors)
        scale = torch.cat((out.strides.expand(-1, 4), torch.ones_like(out.strides)), -1)
        pred_boxes = pred_boxes_grid * scale
        target_boxes, target_scores, fg, _ = self.assign(
            out.scores.detach().sigmoid(),
            pred_boxes.detach(),
            anchors_px,
            gt_boxes,
            labels,
            mask,
        )
        score_sum = target_scores.sum().clamp(min=1)
        loss_cls = (
            F.binary_cross_entropy_with_logits(
                out.scores, target_scores, reduction='sum'
            )
            / score_sum
        )
        if fg.any():
            weight = target_scores.sum(-1)[fg]
            iou = probiou(pred_boxes[fg], target_boxes[fg])
            loss_box = ((1 - iou) * weight).sum() / score_sum
            target_dist = (
                obb_to_dist(target_boxes, anchors_px[None]) / out.strides[None]
            )
            target_dist = target_dist[fg].clamp(0, self.reg_max - 1 - 0.01)
            dfl = _distribution_focal_loss(
                out.distri[fg].reshape(-1, self.reg_max), target_dist.reshape(-1)
            )
            loss_dfl = (dfl * weight).sum() / score_sum
        else:
            loss_box = out.distri.sum() * 0
            loss_dfl = out.distri.sum() * 0
        box_gain, cls_gain, dfl_gain = self.gains
        total = (box_gain * loss_box + cls_gain * loss_cls + dfl_gain * loss_dfl) * bsz
        parts = {
            'loss_box': loss_box.detach(),
            'loss_cls': loss_cls.detach(),
            'loss_dfl': loss_dfl.detach(),
        }
        return total, parts


def _padded_targets(
    gt_polygons: Sequence[Tensor],
    gt_labels: Sequence[Tensor],
    device: torch.device,
    dtype: torch.dtype,
) -> tuple[Tensor, Tensor, Tensor]:
    """The ground truth of a batch padded to its largest image.

    Args:
        gt_polygons: Per image, polygons (N_i, 8) in pixels.
        gt_labels: Per image, labels (N_i,).
        device: Where the loss runs.
        dtype: The type of the predictions.

    Returns:
        Oriented boxes (B, G, 5) ``cx cy w h angle`` (padding: unit boxes at
        0), labels (B, G) and the mask of real objects (B, G).
    """
    bsz = len(gt_polygons)
    g = max([int(p.shape[0]) for p in gt_polygons] + [1])
    gt_boxes = torch.zeros(bsz, g, 5, device=device, dtype=dtype)
    gt_boxes[..., 2:4] = 1.0
    labels = torch.zeros(bsz, g, dtype=torch.long, device=device)
    mask = torch.zeros(bsz, g, dtype=torch.bool, device=device)
    for b, (poly, lab) in enumerate(zip(gt_polygons, gt_labels, strict=True)):
        n = poly.shape[0]
        if n:
            gt_boxes[b, :n] = poly_to_obb(
                poly.to(device=device, dtype=torch.float32).reshape(n, 8)
            ).to(dtype)
            labels[b, :n] = lab.to(device)
            mask[b, :n] = True
    return gt_boxes, labels, mask


def _distribution_focal_loss(logits: Tensor, target: Tensor) -> Tensor:
    """DFL of each box: cross-entropy to the two bins around each side's distance.

    Args:
        logits: Bin logits (4 M, reg_max), four sides per box.
        target: Distances in bins (4 M,), below ``reg_max - 1``.

    Returns:
        The loss of each box (M,), the mean over its sides.
    """
    left = target.long()
    wl = left + 1 - target
    return (
        (
            F.cross_entropy(logits, left, reduction='none') * wl
            + F.cross_entropy(logits, left + 1, reduction='none') * (1 - wl)
        )
        .reshape(-1, 4)
        .mean(-1)
    )
