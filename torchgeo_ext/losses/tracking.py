"""Losses of the centre-based tracker (HyA-T, HyMamba): focal score-map loss, L1 and GIoU."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.ops import box_convert, generalized_box_iou_loss

__all__ = ['TrackingLoss', 'centre_heatmap', 'focal_loss']


def focal_loss(logits: Tensor, target: Tensor, alpha: int = 2, beta: int = 4) -> Tensor:
    """CornerNet/CenterNet focal loss on a Gaussian heat map.

    Args:
        logits: B x 1 x H x W score logits.
        target: B x 1 x H x W target in [0, 1], exactly 1 at each centre.
        alpha: Exponent of the prediction-confidence modulation.
        beta: Exponent of the negative down-weighting near centres.

    Returns:
        The loss, normalised by the number of centres.
    """
    pred = logits.sigmoid().clamp(1e-4, 1 - 1e-4)
    pos = target.eq(1).float()
    pos_loss = -torch.log(pred) * (1 - pred) ** alpha * pos
    neg_loss = -torch.log(1 - pred) * pred**alpha * (1 - target) ** beta * (1 - pos)
    return (pos_loss.sum() + neg_loss.sum()) / pos.sum().clamp(min=1)


def centre_heatmap(target: Tensor, grid: int) -> tuple[Tensor, Tensor]:
    """Gaussian heat map around each box centre's cell, and that cell's index.

    The Gaussian's standard deviation is a sixth of the box's geometric-mean
    side (in cells), at least half a cell.

    Args:
        target: B x 4 boxes, xyxy, normalised to [0, 1] over the search crop.
        grid: Side of the score map in cells.

    Returns:
        The B x 1 x grid x grid heat map (1 at each centre cell) and the B
        flat indices (``row * grid + col``) of the centre cells.
    """
    centre = box_convert(target, 'xyxy', 'cxcywh')
    col = (centre[:, 0] * grid).floor().clamp(0, grid - 1)
    row = (centre[:, 1] * grid).floor().clamp(0, grid - 1)
    cells = torch.arange(grid, device=target.device, dtype=target.dtype)
    sigma = (centre[:, 2:].prod(dim=1).sqrt() * grid / 6).clamp(min=0.5)
    dy = (cells[None, :] - row[:, None]) ** 2
    dx = (cells[None, :] - col[:, None]) ** 2
    heat = torch.exp(
        -(dy[:, :, None] + dx[:, None, :]) / (2 * sigma[:, None, None] ** 2)
    )[:, None]
    return heat, (row * grid + col).long()


class TrackingLoss(nn.Module):
    """Weighted focal + L1 + GIoU loss of a centre-based tracker.

    The score map is trained with the CornerNet/CenterNet focal loss
    (:func:`focal_loss`) against a Gaussian heat map around the target centre's
    cell (:func:`centre_heatmap`); the box decoded at that cell with L1 and GIoU
    (:func:`torchvision.ops.generalized_box_iou_loss`) losses.
    """

    def __init__(
        self,
        focal_weight: float = 1.0,
        l1_weight: float = 5.0,
        giou_weight: float = 2.0,
    ) -> None:
        """Initialise a new TrackingLoss.

        Args:
            focal_weight: Weight of the score-map focal loss.
            l1_weight: Weight of the L1 box loss (normalised coordinates).
            giou_weight: Weight of the GIoU box loss.
        """
        super().__init__()
        self.weights = (focal_weight, l1_weight, giou_weight)

    def forward(
        self, score: Tensor, heatmap: Tensor, box: Tensor, target: Tensor
    ) -> dict[str, Tensor]:
        """Compute the loss.

        Args:
            score: B x 1 x H x W score logits.
            heatmap: B x 1 x H x W target from :func:`centre_heatmap`.
            box: B x 4 predicted xyxy boxes at the centre cells, normalised.
            target: B x 4 target xyxy boxes, normalised.

        Returns:
            ``loss`` and its unweighted parts ``focal``, ``l1``, ``giou``.
        """
        focal = focal_loss(score, heatmap)
        l1 = F.l1_loss(box, target)
        giou = generalized_box_iou_loss(box, target, reduction='mean')
        wf, wl, wg = self.weights
        loss = wf * focal + wl * l1 + wg * giou
        return {'loss': loss, 'focal': focal, 'l1': l1, 'giou': giou}
