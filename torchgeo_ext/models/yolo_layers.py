"""YOLO building blocks (YOLOv5 and YOLOv8 layers) shared by the YOLO-family models."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils import fuse_conv_bn_eval


def autopad(kernel_size: int, dilation: int = 1) -> int:
    """Return the padding that keeps the spatial size for an odd kernel.

    Args:
        kernel_size: Convolution kernel size.
        dilation: Convolution dilation.

    Returns:
        The 'same' padding.
    """
    return dilation * (kernel_size - 1) // 2


class Conv(nn.Module):
    """Conv2d + BatchNorm2d + SiLU, the basic YOLO convolution.

    After :meth:`fuse`, the batch norm is folded into the convolution (which
    gains a bias) and the layer runs as conv + activation only.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 1,
        stride: int = 1,
        groups: int = 1,
        dilation: int = 1,
        act: bool = True,
    ) -> None:
        """Initialise a new Conv.

        Args:
            in_channels: Input channels.
            out_channels: Output channels.
            kernel_size: Kernel size (padding keeps the size at stride 1).
            stride: Stride.
            groups: Convolution groups.
            dilation: Dilation.
            act: Whether to apply SiLU.
        """
        super().__init__()
        self.conv = nn.Conv2d(
            in_channels,
            out_channels,
            kernel_size,
            stride,
            autopad(kernel_size, dilation),
            dilation=dilation,
            groups=groups,
            bias=False,
        )
        self.bn: nn.Module = nn.BatchNorm2d(out_channels, eps=1e-3, momentum=0.03)
        self.act: nn.Module = nn.SiLU() if act else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        """Apply conv, batch norm and activation.

        Args:
            x: Input of shape (B, C_in, H, W).

        Returns:
            Output of shape (B, C_out, H / stride, W / stride).
        """
        return self.act(self.bn(self.conv(x)))

    @torch.no_grad()
    def fuse(self) -> None:
        """Fold the batch norm into the convolution weights (inference only).

        Uses :func:`torch.nn.utils.fuse_conv_bn_eval`; the layer is put in
        eval mode first (fusing freezes the batch-norm statistics).
        """
        if isinstance(self.bn, nn.Identity):
            return
        assert isinstance(self.bn, nn.BatchNorm2d)
        self.eval()
        self.conv = fuse_conv_bn_eval(self.conv, self.bn)
        self.bn = nn.Identity()


class Bottleneck(nn.Module):
    """Two convolutions with an optional residual connection."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        shortcut: bool = True,
        expansion: float = 0.5,
        kernel_sizes: tuple[int, int] = (1, 3),
    ) -> None:
        """Initialise a new Bottleneck.

        Args:
            in_channels: Input channels.
            out_channels: Output channels.
            shortcut: Add the input when channel counts match.
            expansion: Hidden channels as a fraction of ``out_channels``.
            kernel_sizes: Kernel sizes of the two convolutions (YOLOv5: 1, 3;
                YOLOv8: 3, 3).
        """
        super().__init__()
        hidden = int(out_channels * expansion)
        self.cv1 = Conv(in_channels, hidden, kernel_sizes[0])
        self.cv2 = Conv(hidden, out_channels, kernel_sizes[1])
        self.add = shortcut and in_channels == out_channels

    def forward(self, x: Tensor) -> Tensor:
        """Apply the bottleneck.

        Args:
            x: Input (B, C_in, H, W).

        Returns:
            Output (B, C_out, H, W).
        """
        y = self.cv2(self.cv1(x))
        return x + y if self.add else y


class C3(nn.Module):
    """YOLOv5 CSP block with three convolutions."""

    def __init__(
        self, in_channels: int, out_channels: int, n: int = 1, shortcut: bool = True
    ) -> None:
        """Initialise a new C3.

        Args:
            in_channels: Input channels.
            out_channels: Output channels.
            n: Number of bottlenecks.
            shortcut: Residual bottlenecks (backbone) or plain (neck).
        """
        super().__init__()
        hidden = out_channels // 2
        self.cv1 = Conv(in_channels, hidden)
        self.cv2 = Conv(in_channels, hidden)
        self.cv3 = Conv(2 * hidden, out_channels)
        self.m = nn.Sequential(
            *(Bottleneck(hidden, hidden, shortcut, expansion=1.0) for _ in range(n))
        )

    def forward(self, x: Tensor) -> Tensor:
        """Apply the block.

        Args:
            x: Input (B, C_in, H, W).

        Returns:
            Output (B, C_out, H, W).
        """
        return self.cv3(torch.cat((self.m(self.cv1(x)), self.cv2(x)), dim=1))


class C2f(nn.Module):
    """YOLOv8 CSP block: split, n bottlenecks whose outputs are all concatenated."""

    def __init__(
        self, in_channels: int, out_channels: int, n: int = 1, shortcut: bool = False
    ) -> None:
        """Initialise a new C2f.

        Args:
            in_channels: Input channels.
            out_channels: Output channels.
            n: Number of bottlenecks.
            shortcut: Residual bottlenecks (backbone) or plain (neck).
        """
        super().__init__()
        self.hidden = out_channels // 2
        self.cv1 = Conv(in_channels, 2 * self.hidden)
        self.cv2 = Conv((2 + n) * self.hidden, out_channels)
        self.m = nn.ModuleList(
            Bottleneck(self.hidden, self.hidden, shortcut, 1.0, (3, 3))
            for _ in range(n)
        )

    def forward(self, x: Tensor) -> Tensor:
        """Apply the block.

        Args:
            x: Input (B, C_in, H, W).

        Returns:
            Output (B, C_out, H, W).
        """
        y = list(self.cv1(x).chunk(2, dim=1))
        for block in self.m:
            y.append(block(y[-1]))
        return self.cv2(torch.cat(y, dim=1))


class SPP(nn.Module):
    """Spatial pyramid pooling with parallel max pools (YOLOv5, kernels 5, 9, 13)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_sizes: tuple[int, ...] = (5, 9, 13),
    ) -> None:
        """Initialise a new SPP.

        Args:
            in_channels: Input channels.
            out_channels: Output channels.
            kernel_sizes: Max-pool kernel sizes (stride 1, same padding).
        """
        super().__init__()
        hidden = in_channels // 2
        self.kernel_sizes = tuple(kernel_sizes)
        self.cv1 = Conv(in_channels, hidden)
        self.cv2 = Conv(hidden * (len(kernel_sizes) + 1), out_channels)
        self.m = nn.ModuleList(
            nn.MaxPool2d(kernel_size=k, stride=1, padding=k // 2) for k in kernel_sizes
        )

    def forward(self, x: Tensor) -> Tensor:
        """Apply the pooling pyramid.

        Args:
            x: Input (B, C_in, H, W).

        Returns:
            Output (B, C_out, H, W).
        """
        x = self.cv1(x)
        # Stride-1 max pools compose: pool_a(pool_b(x)) == pool_(a+b-1)(x). Pooling
        # in sequence (5, then 5 again for 9, ...) gives the parallel pyramid's exact
        # output at a fraction of the comparisons (SPPF's trick, same weights).
        pooled: dict[int, Tensor] = {}
        y, reach = x, 1
        for k in sorted(self.kernel_sizes):
            y = F.max_pool2d(y, k - reach + 1, stride=1, padding=(k - reach) // 2)
            pooled[k], reach = y, k
        return self.cv2(torch.cat([x, *(pooled[k] for k in self.kernel_sizes)], dim=1))


class SPPF(nn.Module):
    """Fast SPP: one max pool applied three times in sequence (YOLOv5 v6+, YOLOv8)."""

    def __init__(
        self, in_channels: int, out_channels: int, kernel_size: int = 5
    ) -> None:
        """Initialise a new SPPF.

        Args:
            in_channels: Input channels.
            out_channels: Output channels.
            kernel_size: Max-pool kernel size.
        """
        super().__init__()
        hidden = in_channels // 2
        self.cv1 = Conv(in_channels, hidden)
        self.cv2 = Conv(hidden * 4, out_channels)
        self.m = nn.MaxPool2d(kernel_size, stride=1, padding=kernel_size // 2)

    def forward(self, x: Tensor) -> Tensor:
        """Apply the pooling pyramid.

        Args:
            x: Input (B, C_in, H, W).

        Returns:
            Output (B, C_out, H, W).
        """
        x = self.cv1(x)
        y1 = self.m(x)
        y2 = self.m(y1)
        return self.cv2(torch.cat((x, y1, y2, self.m(y2)), dim=1))


def top_candidates(
    boxes: Tensor, class_scores: Tensor, score_threshold: float, max_candidates: int
) -> tuple[Tensor, Tensor, Tensor]:
    """The candidates of one image that enter NMS: best class, thresholded, top-k.

    Each box takes its highest-scoring class; boxes scoring at most
    ``score_threshold`` are dropped, and of the rest only the
    ``max_candidates`` highest-scoring are kept (in score order).

    Args:
        boxes: Boxes of one image (N, ...), in any encoding.
        class_scores: Their class scores (N, num_classes).
        score_threshold: Minimum score (exclusive).
        max_candidates: Maximum boxes kept.

    Returns:
        The kept boxes, their scores and their labels (int64).
    """
    scores, labels = class_scores.max(dim=-1)
    keep = scores > score_threshold
    boxes, scores, labels = boxes[keep], scores[keep], labels[keep]
    if scores.numel() > max_candidates:
        top = scores.topk(max_candidates).indices
        boxes, scores, labels = boxes[top], scores[top], labels[top]
    return boxes, scores, labels


def fuse_model(model: nn.Module) -> nn.Module:
    """Fold every :class:`Conv`'s batch norm into its convolution, in place.

    Args:
        model: Any module containing :class:`Conv` layers.

    Returns:
        The same module, in eval mode, for chaining.
    """
    model.eval()
    for module in model.modules():
        if isinstance(module, Conv):
            module.fuse()
    return model
