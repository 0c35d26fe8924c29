"""SAR-Net: multi-scale direction-aware SAR object detection via global information fusion.

YOLOv8 backbone and neck with the unified compensation mechanism and direction-aware attention.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .obb_detector import (
    STRIDES,
    OBBHead,
    OBBOutput,
    YOLOv8Backbone,
    YOLOv8Neck,
    pad_to_stride,
    scaled_depth,
)
from .superyolo import Detect
from .yolo_layers import C2f, Conv

__all__ = [
    'YOLOV5_ANCHORS',
    'DirectionAwareAttention',
    'DirectionalGate',
    'GlobalEmbedding',
    'MultiLevelFusion',
    'MultiScaleAlignment',
    'SARNet',
    'SARNetBody',
    'SARNetOBB',
    'UnifiedCompensation',
    'resize_to',
    'sarnet_n',
    'sarnet_n_obb',
    'sarnet_s',
    'sarnet_s_obb',
]

#: YOLOv5's anchors (width, height in pixels) of the stride 8, 16 and 32 levels.
YOLOV5_ANCHORS: tuple[tuple[tuple[float, float], ...], ...] = (
    ((10, 13), (16, 30), (33, 23)),
    ((30, 61), (62, 45), (59, 119)),
    ((116, 90), (156, 198), (373, 326)),
)


def resize_to(x: Tensor, size: Sequence[int]) -> Tensor:
    """Bring a feature map to a spatial size: average pooling down, bilinear up.

    Args:
        x: Features (B, C, H, W).
        size: Target (height, width).

    Returns:
        Features (B, C, *size).
    """
    h, w = int(size[0]), int(size[1])
    if x.shape[-2:] == (h, w):
        return x
    if x.shape[-2] >= h and x.shape[-1] >= w:
        return F.adaptive_avg_pool2d(x, (h, w))
    return F.interpolate(x, size=(h, w), mode='bilinear', align_corners=False)


class MultiScaleAlignment(nn.Module):
    """MAM: every level resized to the grid of one level, then concatenated."""

    def __init__(self, target: int) -> None:
        """Initialise a new MultiScaleAlignment.

        Args:
            target: Index of the level whose grid the others are brought to.
        """
        super().__init__()
        self.target = target

    def forward(self, feats: Sequence[Tensor]) -> Tensor:
        """Align and concatenate.

        Args:
            feats: Feature maps, finest first.

        Returns:
            The concatenation (B, sum C_i, H_t, W_t).
        """
        size = feats[self.target].shape[-2:]
        return torch.cat([resize_to(f, size) for f in feats], dim=1)


class MultiLevelFusion(nn.Module):
    """MFM: the aligned levels fused into one global map, split per branch.

    A 1x1 reduction, C2f blocks (local texture and semantics across levels), an
    image-level context term (global average pool, 1x1 conv, broadcast add), and
    a 1x1 expansion split into one global feature per receiving branch.
    """

    def __init__(
        self, in_channels: int, hidden: int, out_channels: Sequence[int], n: int = 1
    ) -> None:
        """Initialise a new MultiLevelFusion.

        Args:
            in_channels: Channels of the aligned concatenation.
            hidden: Channels of the fused map.
            out_channels: Channels of each branch's global feature.
            n: Bottlenecks of the C2f block.
        """
        super().__init__()
        self.reduce = Conv(in_channels, hidden, 1)
        self.blocks = C2f(hidden, hidden, n, shortcut=True)
        self.context = Conv(hidden, hidden, 1, act=False)
        self.expand = Conv(hidden, sum(out_channels), 1)
        self.splits = [int(c) for c in out_channels]

    def forward(self, x: Tensor) -> list[Tensor]:
        """Fuse.

        Args:
            x: Aligned levels (B, C_in, H, W).

        Returns:
            One global feature (B, C_i, H, W) per branch.
        """
        g = self.blocks(self.reduce(x))
        g = g + self.context(g.mean(dim=(2, 3), keepdim=True))
        return list(self.expand(g).split(self.splits, dim=1))


class GlobalEmbedding(nn.Module):
    """MEM for one branch: the global feature gates and is added to the local one.

    ``y = x + local(x) * sigmoid(gate(g)) + embed(g)`` with ``g`` resized to
    ``x``'s grid and 1x1 convolutions with batch norm and no activation.
    """

    def __init__(self, channels: int) -> None:
        """Initialise a new GlobalEmbedding.

        Args:
            channels: Channels of the branch (and of its global feature).
        """
        super().__init__()
        self.local = Conv(channels, channels, 1, act=False)
        self.gate = Conv(channels, channels, 1, act=False)
        self.embed = Conv(channels, channels, 1, act=False)

    def forward(self, x: Tensor, g: Tensor) -> Tensor:
        """Inject the global feature.

        Args:
            x: The branch's features (B, C, H, W).
            g: Its global feature (B, C, H', W'), any grid.

        Returns:
            Features (B, C, H, W).
        """
        g = resize_to(g, x.shape[-2:])
        return x + self.local(x) * torch.sigmoid(self.gate(g)) + self.embed(g)


class UnifiedCompensation(nn.Module):
    """UCM: align (MAM), fuse (MFM) and feed global features back (MEM).

    Gathers every backbone level (P2-P5) on the grid of ``target`` and injects
    the fused global context into the branches the neck reads (P3-P5).
    """

    def __init__(
        self,
        channels: Sequence[int],
        branches: Sequence[int],
        target: int,
        hidden: int,
        n: int = 1,
    ) -> None:
        """Initialise a new UnifiedCompensation.

        Args:
            channels: Channels of every gathered level, finest first.
            branches: Indices (into ``channels``) of the branches fed back.
            target: Index of the level whose grid the fusion works on.
            hidden: Channels of the fused global map.
            n: Bottlenecks of the fusion's C2f block.
        """
        super().__init__()
        self.branches = [int(i) for i in branches]
        out = [channels[i] for i in self.branches]
        self.align = MultiScaleAlignment(target)
        self.fuse = MultiLevelFusion(sum(channels), hidden, out, n)
        self.embed = nn.ModuleList(GlobalEmbedding(c) for c in out)

    def forward(self, feats: Sequence[Tensor]) -> list[Tensor]:
        """Compensate the branches with global context.

        Args:
            feats: Every gathered level, finest first.

        Returns:
            The fed-back branches, in the order of ``branches``.
        """
        globals_ = self.fuse(self.align(feats))
        return [
            embed(feats[i], g)
            for embed, i, g in zip(self.embed, self.branches, globals_, strict=True)
        ]


class DirectionalGate(nn.Module):
    """Attention weights along one image axis from a line descriptor.

    The descriptor (B, C, L) holds each row's (or column's) mean plus maximum;
    a 1x1 reduction with batch norm and SiLU, a depthwise convolution along the
    line (neighbouring rows or columns) and a 1x1 expansion give sigmoid
    weights (B, C, L).
    """

    def __init__(self, channels: int, hidden: int, kernel_size: int = 7) -> None:
        """Initialise a new DirectionalGate.

        Args:
            channels: Feature channels.
            hidden: Channels of the reduced descriptor.
            kernel_size: Length of the depthwise convolution along the line.
        """
        super().__init__()
        self.reduce = nn.Sequential(
            nn.Conv1d(channels, hidden, 1, bias=False),
            nn.BatchNorm1d(hidden),
            nn.SiLU(),
        )
        self.mix = nn.Conv1d(
            hidden, hidden, kernel_size, padding=kernel_size // 2, groups=hidden
        )
        self.expand = nn.Conv1d(hidden, channels, 1)

    def forward(self, line: Tensor) -> Tensor:
        """Weights along the line.

        Args:
            line: Descriptor (B, C, L).

        Returns:
            Weights in (0, 1), (B, C, L).
        """
        return torch.sigmoid(self.expand(self.mix(self.reduce(line))))


class DirectionAwareAttention(nn.Module):
    """DAM: row and column attention applied in both orders, then aggregated.

    Rows then columns: ``a = x * w_row(x)``, then ``a * w_col(a)``; columns then
    rows: ``b = x * w_col(x)``, then ``b * w_row(b)``. The second weight of each
    order is computed from the features the first one already attended, so the
    two orders differ. ``y = x + fuse([a, b])`` with ``fuse`` a 1x1 convolution.
    """

    def __init__(self, channels: int, reduction: int = 8, kernel_size: int = 7) -> None:
        """Initialise a new DirectionAwareAttention.

        Args:
            channels: Feature channels.
            reduction: Channel reduction of the gates (at least 8 channels kept).
            kernel_size: Length of the gates' convolution along rows / columns.
        """
        super().__init__()
        hidden = max(8, channels // reduction)
        self.rows = DirectionalGate(channels, hidden, kernel_size)
        self.cols = DirectionalGate(channels, hidden, kernel_size)
        self.fuse = Conv(2 * channels, channels, 1)

    def attend_rows(self, x: Tensor) -> Tensor:
        """Weight every row (pooled along the width).

        Args:
            x: Features (B, C, H, W).

        Returns:
            Weighted features (B, C, H, W).
        """
        line = x.mean(dim=3) + x.amax(dim=3)
        return x * self.rows(line).unsqueeze(3)

    def attend_cols(self, x: Tensor) -> Tensor:
        """Weight every column (pooled along the height).

        Args:
            x: Features (B, C, H, W).

        Returns:
            Weighted features (B, C, H, W).
        """
        line = x.mean(dim=2) + x.amax(dim=2)
        return x * self.cols(line).unsqueeze(2)

    def forward(self, x: Tensor) -> Tensor:
        """Apply the bidirectional attention.

        Args:
            x: Features (B, C, H, W).

        Returns:
            Features (B, C, H, W).
        """
        rows_first = self.attend_cols(self.attend_rows(x))
        cols_first = self.attend_rows(self.attend_cols(x))
        return x + self.fuse(torch.cat((rows_first, cols_first), dim=1))


class SARNetBody(nn.Module):
    """Backbone, UCM, PAN neck and DAM: the features the heads read.

    YOLOv8 backbone (P2-P5) -> UCM (gathers P2-P5 on the P4 grid, feeds back
    into P3-P5) -> YOLOv8 PAN neck -> one DAM per output level (strides 8, 16,
    32). ``ucm=False`` / ``dam=False`` leave a module out (the ablations).
    """

    def __init__(
        self,
        in_channels: int = 1,
        width: float = 0.25,
        depth: float = 0.33,
        max_channels: int = 1024,
        ucm: bool = True,
        dam: bool = True,
    ) -> None:
        """Initialise a new SARNetBody.

        Args:
            in_channels: Input bands (1: SAR amplitude).
            width: Width multiple (0.25: n, 0.5: s).
            depth: Depth multiple.
            max_channels: Channel cap (before the width multiple).
            ucm: Build the unified compensation mechanism.
            dam: Build the direction-aware attention.
        """
        super().__init__()
        self.in_channels = in_channels
        self.backbone = YOLOv8Backbone(in_channels, width, depth, max_channels)
        channels = self.backbone.channels
        self.ucm: UnifiedCompensation | None = (
            UnifiedCompensation(
                channels, (1, 2, 3), 2, channels[2], scaled_depth(3, depth)
            )
            if ucm
            else None
        )
        self.neck = YOLOv8Neck(channels[1:], depth)
        self.dam: nn.ModuleList | None = (
            nn.ModuleList(DirectionAwareAttention(c) for c in self.neck.channels)
            if dam
            else None
        )
        #: Channels of the three output levels.
        self.channels = self.neck.channels

    def forward(self, x: Tensor) -> list[Tensor]:
        """Compute the three detection levels.

        Args:
            x: Image (B, C, H, W), H and W multiples of 32.

        Returns:
            Features at strides 8, 16 and 32.
        """
        feats = self.backbone(x)
        branches = self.ucm(feats) if self.ucm is not None else feats[1:]
        levels = self.neck(branches)
        if self.dam is not None:
            levels = [dam(f) for dam, f in zip(self.dam, levels, strict=True)]
        return levels


class SARNetOBB(nn.Module):
    """SAR-Net with the oriented, anchor-free YOLOv8-OBB head (:class:`OBBHead`)."""

    def __init__(
        self,
        num_classes: int = 1,
        in_channels: int = 1,
        width: float = 0.25,
        depth: float = 0.33,
        reg_max: int = 16,
        ucm: bool = True,
        dam: bool = True,
    ) -> None:
        """Initialise a new SARNetOBB.

        Args:
            num_classes: Number of classes.
            in_channels: Input bands.
            width: Width multiple.
            depth: Depth multiple.
            reg_max: DFL bins per box side.
            ucm: Build the unified compensation mechanism.
            dam: Build the direction-aware attention.
        """
        super().__init__()
        self.num_classes = num_classes
        self.reg_max = reg_max
        self.body = SARNetBody(in_channels, width, depth, 1024, ucm, dam)
        self.head = OBBHead(num_classes, self.body.channels, reg_max)

    @property
    def bands(self) -> list[int]:
        """Input band indices the model reads."""
        return list(range(self.body.in_channels))

    def forward(self, x: Tensor) -> OBBOutput:
        """Detect oriented objects.

        Args:
            x: Image (B, C, H, W); padded internally to multiples of 32.

        Returns:
            Raw head outputs (decode with
            :func:`~torchgeo_ext.models.obb_detector.postprocess`).
        """
        return self.head(self.body(pad_to_stride(x)))


class SARNet(nn.Module):
    """SAR-Net with axis-aligned YOLOv5 heads (:class:`~.superyolo.Detect`) per level.

    The interface of :class:`~torchgeo_ext.models.superyolo.SuperYOLO` that
    :class:`~torchgeo_ext.trainers.detection.SuperYOLOTask` trains:
    :meth:`forward_raw` returns the raw outputs of the three levels, ``forward``
    raw outputs in training mode and the decoded boxes of all levels in eval
    mode; there is no super-resolution branch (``sr`` is None).
    """

    #: No super-resolution branch (SuperYOLO's training-time extra).
    sr: nn.Module | None = None

    def __init__(
        self,
        num_classes: int = 1,
        in_channels: int = 1,
        width: float = 0.25,
        depth: float = 0.33,
        anchors: Sequence[Sequence[Sequence[float]]] = YOLOV5_ANCHORS,
        ucm: bool = True,
        dam: bool = True,
    ) -> None:
        """Initialise a new SARNet.

        Args:
            num_classes: Number of classes.
            in_channels: Input bands.
            width: Width multiple.
            depth: Depth multiple.
            anchors: Anchors (width, height in pixels) of each level.
            ucm: Build the unified compensation mechanism.
            dam: Build the direction-aware attention.
        """
        super().__init__()
        self.num_classes = num_classes
        self.body = SARNetBody(in_channels, width, depth, 1024, ucm, dam)
        self.detects = nn.ModuleList(
            Detect(num_classes, c, a, s)
            for c, a, s in zip(self.body.channels, anchors, STRIDES, strict=True)
        )

    @property
    def bands(self) -> list[int]:
        """Input band indices the model reads."""
        return list(range(self.body.in_channels))

    def heads(self) -> list[Detect]:
        """The detection heads, stride 8 first.

        Returns:
            The heads.
        """
        return [d for d in self.detects if isinstance(d, Detect)]

    def forward_raw(
        self, x: Tensor, with_sr: bool = False
    ) -> tuple[list[Tensor], Tensor | None]:
        """Run the detector.

        Args:
            x: Image (B, C, H, W); padded internally to multiples of 32.
            with_sr: Ignored (there is no super-resolution branch).

        Returns:
            Raw outputs of each level (B, 3, H_i, W_i, 5 + classes), and None.
        """
        levels = self.body(pad_to_stride(x))
        return [d(f) for d, f in zip(self.heads(), levels, strict=True)], None

    def decode(self, raw: Sequence[Tensor]) -> Tensor:
        """Decode the raw outputs of every level into boxes in pixels.

        Args:
            raw: Output of :meth:`forward_raw`.

        Returns:
            (B, N, 5 + classes): centre x, centre y, width, height, objectness
            and class probabilities, all levels concatenated.
        """
        return torch.cat(
            [d.decode(r) for d, r in zip(self.heads(), raw, strict=True)], dim=1
        )

    def forward(self, x: Tensor) -> list[Tensor] | Tensor:
        """Detect objects.

        Args:
            x: Image (B, C, H, W).

        Returns:
            Raw outputs per level in training mode, decoded boxes in eval mode.
        """
        raw, _ = self.forward_raw(x)
        return raw if self.training else self.decode(raw)


def sarnet_n(
    num_classes: int = 1, in_channels: int = 1, ucm: bool = True, dam: bool = True
) -> SARNet:
    """SAR-Net n (YOLOv8n widths: width 0.25, depth 0.33), axis-aligned heads.

    Args:
        num_classes: Number of classes.
        in_channels: Input bands.
        ucm: Build the unified compensation mechanism.
        dam: Build the direction-aware attention.

    Returns:
        The detector.
    """
    return SARNet(num_classes, in_channels, 0.25, 0.33, ucm=ucm, dam=dam)


def sarnet_s(
    num_classes: int = 1, in_channels: int = 1, ucm: bool = True, dam: bool = True
) -> SARNet:
    """SAR-Net s (YOLOv8s widths: width 0.5, depth 0.33), axis-aligned heads.

    Args:
        num_classes: Number of classes.
        in_channels: Input bands.
        ucm: Build the unified compensation mechanism.
        dam: Build the direction-aware attention.

    Returns:
        The detector.
    """
    return SARNet(num_classes, in_channels, 0.5, 0.33, ucm=ucm, dam=dam)


def sarnet_n_obb(
    num_classes: int = 1, in_channels: int = 1, ucm: bool = True, dam: bool = True
) -> SARNetOBB:
    """SAR-Net n with the oriented head.

    Args:
        num_classes: Number of classes.
        in_channels: Input bands.
        ucm: Build the unified compensation mechanism.
        dam: Build the direction-aware attention.

    Returns:
        The detector.
    """
    return SARNetOBB(num_classes, in_channels, 0.25, 0.33, ucm=ucm, dam=dam)


def sarnet_s_obb(
    num_classes: int = 1, in_channels: int = 1, ucm: bool = True, dam: bool = True
) -> SARNetOBB:
    """SAR-Net s with the oriented head.

    Args:
        num_classes: Number of classes.
        in_channels: Input bands.
        ucm: Build the unified compensation mechanism.
        dam: Build the direction-aware attention.

    Returns:
        The detector.
    """
    return SARNetOBB(num_classes, in_channels, 0.5, 0.33, ucm=ucm, dam=dam)
