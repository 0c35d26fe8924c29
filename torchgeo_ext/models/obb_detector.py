"""A YOLOv8-OBB-style oriented object detector, the shared block of FoRA/LMA and E2E-MFD."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..ops.obb import batched_rotated_nms, obb_to_poly
from .yolo_layers import SPPF, C2f, Conv, top_candidates

__all__ = [
    'OBBDetector',
    'OBBHead',
    'OBBOutput',
    'YOLOv8Backbone',
    'YOLOv8Neck',
    'decode_obb',
    'make_anchors',
    'postprocess',
    'scaled_channels',
    'scaled_depth',
    'yolov8n_obb',
]

#: Strides of the three detection levels.
STRIDES = (8, 16, 32)


def scaled_channels(channels: int, width: float, max_channels: int = 1024) -> int:
    """Channels of a YOLOv8 layer at a width multiple (rounded up to 8).

    Args:
        channels: Channels at width 1.
        width: Width multiple.
        max_channels: Cap applied before scaling.

    Returns:
        The scaled channel count.
    """
    return int(math.ceil(min(channels, max_channels) * width / 8) * 8)


def scaled_depth(n: int, depth: float) -> int:
    """Repeats of a YOLOv8 block at a depth multiple.

    Args:
        n: Repeats at depth 1.
        depth: Depth multiple.

    Returns:
        The scaled number of repeats (at least 1).
    """
    return max(round(n * depth), 1)


class YOLOv8Backbone(nn.Module):
    """YOLOv8 backbone: Conv/C2f stages and SPPF.

    Layers: Conv s2 (P1) -> Conv s2 -> C2f (P2) -> Conv s2 -> C2f (P3) ->
    Conv s2 -> C2f (P4) -> Conv s2 -> C2f -> SPPF (P5).
    """

    def __init__(
        self,
        in_channels: int = 3,
        width: float = 0.25,
        depth: float = 0.33,
        max_channels: int = 1024,
    ) -> None:
        """Initialise a new YOLOv8Backbone.

        Args:
            in_channels: Input channels.
            width: Width multiple.
            depth: Depth multiple.
            max_channels: Channel cap (before the width multiple).
        """
        super().__init__()
        c = [scaled_channels(x, width, max_channels) for x in (64, 128, 256, 512, 1024)]
        n3, n6 = scaled_depth(3, depth), scaled_depth(6, depth)
        self.stem = Conv(in_channels, c[0], 3, 2)
        self.stage2 = nn.Sequential(Conv(c[0], c[1], 3, 2), C2f(c[1], c[1], n3, True))
        self.stage3 = nn.Sequential(Conv(c[1], c[2], 3, 2), C2f(c[2], c[2], n6, True))
        self.stage4 = nn.Sequential(Conv(c[2], c[3], 3, 2), C2f(c[3], c[3], n6, True))
        self.stage5 = nn.Sequential(
            Conv(c[3], c[4], 3, 2), C2f(c[4], c[4], n3, True), SPPF(c[4], c[4], 5)
        )
        #: Channels of P2, P3, P4, P5.
        self.channels = (c[1], c[2], c[3], c[4])

    def forward(self, x: Tensor) -> list[Tensor]:
        """Compute the feature pyramid.

        Args:
            x: Image (B, C, H, W), H and W multiples of 32.

        Returns:
            The P2, P3, P4 and P5 features.
        """
        p2 = self.stage2(self.stem(x))
        p3 = self.stage3(p2)
        p4 = self.stage4(p3)
        p5 = self.stage5(p4)
        return [p2, p3, p4, p5]


class YOLOv8Neck(nn.Module):
    """YOLOv8 PAN neck over P3, P4, P5."""

    def __init__(self, channels: Sequence[int], depth: float = 0.33) -> None:
        """Initialise a new YOLOv8Neck.

        Args:
            channels: Channels of P3, P4, P5 (also the output channels).
            depth: Depth multiple.
        """
        super().__init__()
        c3, c4, c5 = channels
        n = scaled_depth(3, depth)
        self.up = nn.Upsample(scale_factor=2.0, mode='nearest')
        self.top4 = C2f(c5 + c4, c4, n)
        self.top3 = C2f(c4 + c3, c3, n)
        self.down3 = Conv(c3, c3, 3, 2)
        self.bottom4 = C2f(c3 + c4, c4, n)
        self.down4 = Conv(c4, c4, 3, 2)
        self.bottom5 = C2f(c4 + c5, c5, n)
        self.channels = (c3, c4, c5)

    def forward(self, feats: Sequence[Tensor]) -> list[Tensor]:
        """Fuse the pyramid.

        Args:
            feats: P3, P4, P5.

        Returns:
            The fused P3, P4, P5 (same shapes as the inputs).
        """
        p3, p4, p5 = feats
        t4 = self.top4(torch.cat((self.up(p5), p4), 1))
        n3 = self.top3(torch.cat((self.up(t4), p3), 1))
        n4 = self.bottom4(torch.cat((self.down3(n3), t4), 1))
        n5 = self.bottom5(torch.cat((self.down4(n4), p5), 1))
        return [n3, n4, n5]


@dataclass
class OBBOutput:
    """Raw head outputs, flattened over the levels' grid cells (A anchors).

    Attributes:
        distri: Side distributions (B, A, 4 * reg_max), logits.
        scores: Class logits (B, A, num_classes).
        angle: Angles in radians (B, A, 1), in [-pi/4, 3pi/4).
        anchors: Anchor points (A, 2) in grid units (cell centres).
        strides: Stride of each anchor (A, 1).
    """

    distri: Tensor
    scores: Tensor
    angle: Tensor
    anchors: Tensor
    strides: Tensor


def make_anchors(
    feats: Sequence[Tensor], strides: Sequence[int], offset: float = 0.5
) -> tuple[Tensor, Tensor]:
    """Grid-cell centres of each level, concatenated.

    Args:
        feats: Feature maps (B, C, H_i, W_i).
        strides: Their strides.
        offset: Cell-centre offset.

    Returns:
        Anchor points (A, 2) in grid units and their strides (A, 1).
    """
    points, stride_list = [], []
    for feat, stride in zip(feats, strides, strict=True):
        h, w = feat.shape[-2:]
        sy = torch.arange(h, device=feat.device, dtype=feat.dtype) + offset
        sx = torch.arange(w, device=feat.device, dtype=feat.dtype) + offset
        yy, xx = torch.meshgrid(sy, sx, indexing='ij')
        points.append(torch.stack((xx, yy), -1).reshape(-1, 2))
        stride_list.append(
            torch.full((h * w, 1), float(stride), dtype=feat.dtype, device=feat.device)
        )
    return torch.cat(points), torch.cat(stride_list)


class OBBHead(nn.Module):
    """Anchor-free decoupled oriented-box head (box distribution, class, angle)."""

    def __init__(
        self,
        num_classes: int,
        channels: Sequence[int],
        reg_max: int = 16,
        strides: Sequence[int] = STRIDES,
    ) -> None:
        """Initialise a new OBBHead.

        Args:
            num_classes: Number of classes.
            channels: Input channels of each level.
            reg_max: Bins of each side distribution.
            strides: Stride of each level.
        """
        super().__init__()
        self.num_classes = num_classes
        self.reg_max = reg_max
        self.strides = tuple(strides)
        c2 = max(16, channels[0] // 4, reg_max * 4)
        c3 = max(channels[0], min(num_classes, 100))
        c4 = max(channels[0] // 4, 1)
        self.box = nn.ModuleList(
            nn.Sequential(
                Conv(c, c2, 3), Conv(c2, c2, 3), nn.Conv2d(c2, 4 * reg_max, 1)
            )
            for c in channels
        )
        self.cls = nn.ModuleList(
            nn.Sequential(
                Conv(c, c3, 3), Conv(c3, c3, 3), nn.Conv2d(c3, num_classes, 1)
            )
            for c in channels
        )
        self.ang = nn.ModuleList(
            nn.Sequential(Conv(c, c4, 3), Conv(c4, c4, 3), nn.Conv2d(c4, 1, 1))
            for c in channels
        )
        self.reset_biases()

    @torch.no_grad()
    def reset_biases(self, image_size: int = 640) -> None:
        """Initialise the output biases (YOLOv8 prior: few objects per cell).

        Args:
            image_size: Nominal image size of the class prior.
        """
        for box, cls, stride in zip(self.box, self.cls, self.strides, strict=True):
            box_out = list(box.children())[-1]
            cls_out = list(cls.children())[-1]
            assert isinstance(box_out, nn.Conv2d)
            assert isinstance(cls_out, nn.Conv2d)
            assert box_out.bias is not None
            assert cls_out.bias is not None
            box_out.bias.fill_(1.0)
            cls_out.bias.fill_(
                math.log(5 / self.num_classes / (image_size / stride) ** 2)
            )

    def forward(self, feats: Sequence[Tensor]) -> OBBOutput:
        """Apply the head to each level.

        Args:
            feats: Neck outputs at the head's strides.

        Returns:
            The raw outputs with their anchors.
        """
        b = feats[0].shape[0]
        distri = torch.cat(
            [
                m(f).reshape(b, 4 * self.reg_max, -1)
                for m, f in zip(self.box, feats, strict=True)
            ],
            2,
        )
        scores = torch.cat(
            [
                m(f).reshape(b, self.num_classes, -1)
                for m, f in zip(self.cls, feats, strict=True)
            ],
            2,
        )
        angle = torch.cat(
            [m(f).reshape(b, 1, -1) for m, f in zip(self.ang, feats, strict=True)], 2
        )
        angle = (angle.sigmoid() - 0.25) * math.pi
        anchors, strides = make_anchors(feats, self.strides)
        return OBBOutput(
            distri.transpose(1, 2),
            scores.transpose(1, 2),
            angle.transpose(1, 2),
            anchors,
            strides,
        )


def dfl_expectation(distri: Tensor, reg_max: int) -> Tensor:
    """Expected side distances of the DFL distributions.

    Args:
        distri: Logits (..., 4 * reg_max).
        reg_max: Bins per side.

    Returns:
        Distances (..., 4) in grid units (left, top, right, bottom).
    """
    prob = distri.reshape(*distri.shape[:-1], 4, reg_max).softmax(-1)
    bins = torch.arange(reg_max, device=distri.device, dtype=prob.dtype)
    return prob @ bins


def dist_to_obb(dist: Tensor, angle: Tensor, anchors: Tensor) -> Tensor:
    """Rotated boxes from side distances measured in the box frame.

    Args:
        dist: Distances (..., 4) left, top, right, bottom.
        angle: Angles (..., 1).
        anchors: Anchor points (..., 2), same unit as ``dist``.

    Returns:
        Boxes (..., 5) cx, cy, w, h, angle.
    """
    lt, rb = dist.split(2, dim=-1)
    cos, sin = torch.cos(angle), torch.sin(angle)
    off = (rb - lt) / 2
    x = off[..., :1] * cos - off[..., 1:] * sin
    y = off[..., :1] * sin + off[..., 1:] * cos
    centre = torch.cat((x, y), -1) + anchors
    return torch.cat((centre, lt + rb, angle), -1)


def obb_to_dist(obb: Tensor, anchors: Tensor) -> Tensor:
    """Side distances of anchors to rotated boxes, measured in the box frame.

    This is the inverse of :func:`dist_to_obb`.

    Args:
        obb: Boxes (..., 5).
        anchors: Anchor points (..., 2), same unit.

    Returns:
        Distances (..., 4) left, top, right, bottom.
    """
    d = anchors - obb[..., :2]
    cos, sin = torch.cos(obb[..., 4]), torch.sin(obb[..., 4])
    u = d[..., 0] * cos + d[..., 1] * sin
    v = -d[..., 0] * sin + d[..., 1] * cos
    w, h = obb[..., 2] / 2, obb[..., 3] / 2
    return torch.stack((w + u, h + v, w - u, h - v), -1)


def decode_obb(out: OBBOutput, reg_max: int) -> Tensor:
    """Decode the head outputs to oriented boxes in pixels.

    Args:
        out: Head outputs.
        reg_max: Bins per side.

    Returns:
        Boxes (B, A, 5) cx, cy, w, h, angle in input pixels.
    """
    dist = dfl_expectation(out.distri, reg_max)
    boxes = dist_to_obb(dist, out.angle, out.anchors)
    scale = torch.cat(
        (
            out.strides,
            out.strides,
            out.strides,
            out.strides,
            torch.ones_like(out.strides),
        ),
        -1,
    )
    return boxes * scale


@torch.no_grad()
def postprocess(
    out: OBBOutput,
    reg_max: int,
    score_threshold: float = 0.001,
    iou_threshold: float = 0.7,
    max_detections: int = 300,
    max_candidates: int = 3000,
) -> list[dict[str, Tensor]]:
    """Decode, threshold and rotated-NMS the detections of each image.

    Args:
        out: Head outputs.
        reg_max: Bins per side.
        score_threshold: Minimum class score.
        iou_threshold: Class-wise rotated NMS threshold.
        max_detections: Maximum detections kept per image.
        max_candidates: Highest-scoring candidates considered by NMS.

    Returns:
        Per image a dict with ``prediction_bbox`` (N, 8) polygons in pixels,
        ``prediction_score`` (N,) and ``prediction_label`` (N,) int64.
    """
    boxes = decode_obb(out, reg_max)
    scores = out.scores.sigmoid()
    results = []
    for b in range(boxes.shape[0]):
        box, score, label = top_candidates(
            boxes[b], scores[b], score_threshold, max_candidates
        )
        poly = obb_to_poly(box.float())
        keep_idx = batched_rotated_nms(poly, score, label, iou_threshold)
        keep_idx = keep_idx[:max_detections]
        results.append(
            {
                'prediction_bbox': poly[keep_idx],
                'prediction_score': score[keep_idx],
                'prediction_label': label[keep_idx].long(),
            }
        )
    return results


def pad_to_stride(x: Tensor, stride: int = 32) -> Tensor:
    """Zero-pad an image at the bottom/right to multiples of ``stride``.

    Args:
        x: Image (B, C, H, W).
        stride: The multiple.

    Returns:
        The padded image (pixel coordinates unchanged).
    """
    h, w = x.shape[-2:]
    ph, pw = (-h) % stride, (-w) % stride
    return F.pad(x, (0, pw, 0, ph)) if ph or pw else x


class OBBDetector(nn.Module):
    """Single-stream YOLOv8-OBB detector (backbone, PAN neck, OBB head)."""

    def __init__(
        self,
        num_classes: int,
        in_channels: int = 3,
        width: float = 0.25,
        depth: float = 0.33,
        max_channels: int = 1024,
        reg_max: int = 16,
    ) -> None:
        """Initialise a new OBBDetector.

        Args:
            num_classes: Number of classes.
            in_channels: Input channels.
            width: Width multiple.
            depth: Depth multiple.
            max_channels: Channel cap.
            reg_max: DFL bins per side.
        """
        super().__init__()
        self.num_classes = num_classes
        self.reg_max = reg_max
        self.backbone = YOLOv8Backbone(in_channels, width, depth, max_channels)
        self.neck = YOLOv8Neck(self.backbone.channels[1:], depth)
        self.head = OBBHead(num_classes, self.neck.channels, reg_max)

    def forward(self, x: Tensor) -> OBBOutput:
        """Run the detector.

        Args:
            x: Image (B, C, H, W); padded internally to multiples of 32.

        Returns:
            The raw head outputs (decode with :func:`postprocess`).
        """
        feats = self.backbone(pad_to_stride(x))
        return self.head(self.neck(feats[1:]))


def yolov8n_obb(
    num_classes: int = 5, in_channels: int = 3, width: float = 0.25, depth: float = 0.33
) -> OBBDetector:
    """YOLOv8n-OBB: depth 0.33, width 0.25, max channels 1024.

    Args:
        num_classes: Number of classes.
        in_channels: Input channels.
        width: Width multiple (other values: smaller or larger YOLOv8 sizes).
        depth: Depth multiple.

    Returns:
        The detector.
    """
    return OBBDetector(num_classes, in_channels, width, depth, 1024)
