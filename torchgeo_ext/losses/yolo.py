"""The YOLOv5 detection loss (SuperYOLO, GHOST)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.ops import box_convert, complete_box_iou_loss

__all__ = ['YOLOv5Loss']


class YOLOv5Loss(nn.Module):
    """The YOLOv5 detection loss for one anchor-based output level.

    Each ground-truth box is assigned to every anchor whose width and height
    ratios to it are below ``anchor_threshold``, in its own grid cell and the
    two nearest neighbouring cells. Box loss ``1 - CIoU`` on the assigned
    predictions; objectness BCE against the (detached, clamped) CIoU at
    assigned cells and 0 elsewhere; class BCE on assigned predictions. The
    total is ``batch_size * (box_gain * l_box + obj_gain * l_obj + cls_gain *
    l_cls)``.
    """

    #: Neighbour-cell offsets (self, left, up, right, down).
    offsets = ((0, 0), (1, 0), (0, 1), (-1, 0), (0, -1))

    def __init__(
        self,
        anchors: Tensor,
        stride: int,
        num_classes: int,
        box_gain: float = 0.15,
        obj_gain: float = 7.68,
        cls_gain: float = 0.15,
        anchor_threshold: float = 4.0,
        label_smoothing: float = 0.0,
    ) -> None:
        """Initialise a new YOLOv5Loss.

        Args:
            anchors: Anchor sizes (A, 2) in input pixels.
            stride: Stride of the output grid.
            num_classes: Number of classes.
            box_gain: Weight of the box term.
            obj_gain: Weight of the objectness term.
            cls_gain: Weight of the class term.
            anchor_threshold: Maximum size ratio between a box and its anchor.
            label_smoothing: Label smoothing of class targets.
        """
        super().__init__()
        self.anchors: Tensor
        self.register_buffer('anchors', anchors.detach().clone().float() / stride)
        self.stride = stride
        self.num_classes = num_classes
        self.box_gain = box_gain
        self.obj_gain = obj_gain
        self.cls_gain = cls_gain
        self.anchor_threshold = anchor_threshold
        self.positive = 1.0 - 0.5 * label_smoothing
        self.negative = 0.5 * label_smoothing

    def build_targets(
        self, raw: Tensor, boxes: Sequence[Tensor], labels: Sequence[Tensor]
    ) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
        """Assign ground truth to anchors and cells.

        Args:
            raw: Raw outputs (B, A, H, W, 5 + classes).
            boxes: Per image (N_i, 4) xyxy pixel boxes.
            labels: Per image (N_i,) class indices.

        Returns:
            Image index, anchor index, grid y, grid x, target box (cx, cy
            relative to the cell, w, h in grid units), the anchors (grid units)
            and the class of every assignment.
        """
        device = raw.device
        _, num_anchors, h, w, _ = raw.shape
        rows = []
        for i, (b, lab) in enumerate(zip(boxes, labels)):
            if len(b):
                cxcywh = box_convert(b.to(device).float(), 'xyxy', 'cxcywh')
                cxcywh = cxcywh / self.stride
                idx = torch.full((len(b), 1), float(i), device=device)
                rows.append(
                    torch.cat((idx, lab.to(device).float()[:, None], cxcywh), 1)
                )
        if not rows:
            empty = torch.zeros(0, dtype=torch.long, device=device)
            return (
                empty,
                empty,
                empty,
                empty,
                torch.zeros(0, 4, device=device),
                torch.zeros(0, 2, device=device),
                empty,
            )
        targets = torch.cat(rows)  # (M, 6): image, class, cx, cy, w, h (grid units)
        m = len(targets)
        anchor_idx = torch.arange(num_anchors, device=device).view(-1, 1).repeat(1, m)
        t = targets[None].repeat(num_anchors, 1, 1)  # (A, M, 6)
        ratio = t[..., 4:6] / self.anchors[:, None]
        match = torch.max(ratio, 1 / ratio).max(dim=2).values < self.anchor_threshold
        t, anchor_idx = t[match], anchor_idx[match]

        g = 0.5
        gxy = t[:, 2:4]
        size = torch.tensor([w, h], device=device, dtype=gxy.dtype)
        gxi = size - gxy
        j, k = ((gxy % 1 < g) & (gxy > 1)).T
        left, mm = ((gxi % 1 < g) & (gxi > 1)).T
        select = torch.stack((torch.ones_like(j), j, k, left, mm))
        offsets = torch.tensor(self.offsets, device=device, dtype=gxy.dtype) * g
        t = t.repeat(5, 1, 1)[select]
        anchor_idx = anchor_idx.repeat(5, 1)[select]
        offs = (torch.zeros_like(gxy)[None] + offsets[:, None])[select]

        gxy = t[:, 2:4]
        gij = (gxy - offs).long()
        gi = gij[:, 0].clamp(0, w - 1)
        gj = gij[:, 1].clamp(0, h - 1)
        tbox = torch.cat((gxy - torch.stack((gi, gj), 1), t[:, 4:6]), 1)
        return (
            t[:, 0].long(),
            anchor_idx,
            gj,
            gi,
            tbox,
            self.anchors[anchor_idx],
            t[:, 1].long(),
        )

    def forward(
        self, raw: Tensor, boxes: Sequence[Tensor], labels: Sequence[Tensor]
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """Compute the loss.

        Args:
            raw: Raw outputs (B, A, H, W, 5 + classes).
            boxes: Per image (N_i, 4) xyxy pixel boxes.
            labels: Per image (N_i,) class indices.

        Returns:
            The total loss and its (unweighted) box/obj/cls components.
        """
        b, a, gj, gi, tbox, anchors, cls = self.build_targets(raw, boxes, labels)
        tobj = torch.zeros(raw.shape[:4], device=raw.device, dtype=raw.dtype)
        lbox = raw.new_zeros(())
        lcls = raw.new_zeros(())
        if len(b):
            ps = raw[b, a, gj, gi]
            pxy = ps[:, :2].sigmoid() * 2 - 0.5
            pwh = (ps[:, 2:4].sigmoid() * 2) ** 2 * anchors
            pbox = torch.cat((pxy, pwh), 1)
            ciou_loss = complete_box_iou_loss(
                box_convert(pbox, 'cxcywh', 'xyxy'), box_convert(tbox, 'cxcywh', 'xyxy')
            )
            iou = 1.0 - ciou_loss  # the complete IoU
            lbox = ciou_loss.mean()
            score = iou.detach().clamp(0).to(tobj.dtype)
            order = score.argsort()  # the best match of a cell is written last
            tobj[b[order], a[order], gj[order], gi[order]] = score[order]
            if self.num_classes > 1:
                tcls = torch.full_like(ps[:, 5:], self.negative)
                tcls[torch.arange(len(cls), device=cls.device), cls] = self.positive
                lcls = F.binary_cross_entropy_with_logits(ps[:, 5:], tcls)
        lobj = F.binary_cross_entropy_with_logits(raw[..., 4], tobj)
        total = (
            self.box_gain * lbox + self.obj_gain * lobj + self.cls_gain * lcls
        ) * raw.shape[0]
        return total, {
            'loss_box': lbox.detach(),
            'loss_obj': lobj.detach(),
            'loss_cls': lcls.detach(),
        }
