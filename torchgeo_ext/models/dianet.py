"""DIAnet: Distribution-aware Interactive-Attention Network for cloud recognition."""

from __future__ import annotations

import itertools
from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.ops import Conv2dNormActivation

__all__ = [
    'DIANet',
    'InteractiveAttention',
    'PatchNonLocal',
    'SoftmaxChannelGate',
    'dianet_w8',
    'dianet_w18',
    'dianet_w48',
]

#: Modules per stage (stages 2, 3, 4), as in HRNet.
NUM_MODULES = (1, 4, 3)


def _conv_bn(
    in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1
) -> list[nn.Module]:
    # Conv (no bias, 'same' padding) + BN, as modules to splice into a Sequential
    # (HRNet's layer names).
    block = Conv2dNormActivation(
        in_channels, out_channels, kernel_size, stride, activation_layer=None
    )
    return list(block)


class BasicBlock(nn.Module):
    """Residual block of two 3x3 convolutions (HRNet branches)."""

    expansion = 1

    def __init__(self, in_channels: int, planes: int) -> None:
        """Initialise a new BasicBlock.

        Args:
            in_channels: Input channels.
            planes: Output channels.
        """
        super().__init__()
        self.body = nn.Sequential(
            *_conv_bn(in_channels, planes),
            nn.ReLU(inplace=True),
            *_conv_bn(planes, planes),
        )
        self.shortcut: nn.Module = (
            nn.Identity()
            if in_channels == planes
            else nn.Sequential(*_conv_bn(in_channels, planes, 1))
        )

    def forward(self, x: Tensor) -> Tensor:
        """Forward pass.

        Args:
            x: Features (B, C, H, W).

        Returns:
            Features (B, planes, H, W).
        """
        return F.relu(self.body(x) + self.shortcut(x))


class Bottleneck(nn.Module):
    """Residual bottleneck block (1x1, 3x3, 1x1; expansion 4) of the first layer."""

    expansion = 4

    def __init__(self, in_channels: int, planes: int) -> None:
        """Initialise a new Bottleneck.

        Args:
            in_channels: Input channels.
            planes: Bottleneck channels; the output has ``4 * planes``.
        """
        super().__init__()
        out_channels = planes * self.expansion
        self.body = nn.Sequential(
            *_conv_bn(in_channels, planes, 1),
            nn.ReLU(inplace=True),
            *_conv_bn(planes, planes),
            nn.ReLU(inplace=True),
            *_conv_bn(planes, out_channels, 1),
        )
        self.shortcut: nn.Module = (
            nn.Identity()
            if in_channels == out_channels
            else nn.Sequential(*_conv_bn(in_channels, out_channels, 1))
        )

    def forward(self, x: Tensor) -> Tensor:
        """Forward pass.

        Args:
            x: Features (B, C, H, W).

        Returns:
            Features (B, 4 * planes, H, W).
        """
        return F.relu(self.body(x) + self.shortcut(x))


def _downsample_path(in_channels: int, out_channels: int, steps: int) -> nn.Sequential:
    """Stride-2 3x3 convolutions taking a branch ``steps`` resolutions down."""
    layers: list[nn.Module] = []
    for step in range(steps):
        last = step == steps - 1
        layers += _conv_bn(in_channels, out_channels if last else in_channels, stride=2)
        if not last:
            layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class HighResolutionModule(nn.Module):
    """Parallel branches of basic blocks followed by all-to-all fusion."""

    def __init__(self, widths: list[int], num_blocks: int) -> None:
        """Initialise a new HighResolutionModule.

        Args:
            widths: Channels of each branch, highest resolution first.
            num_blocks: Basic blocks per branch.
        """
        super().__init__()
        self.branches = nn.ModuleList(
            nn.Sequential(*(BasicBlock(w, w) for _ in range(num_blocks)))
            for w in widths
        )
        self.fuse = nn.ModuleList()
        for i, w_out in enumerate(widths):
            row = nn.ModuleList()
            for j, w_in in enumerate(widths):
                if j > i:  # lower resolution: 1x1 conv, upsampled in forward
                    row.append(nn.Sequential(*_conv_bn(w_in, w_out, 1)))
                elif j == i:
                    row.append(nn.Identity())
                else:  # higher resolution: stride-2 convs
                    row.append(_downsample_path(w_in, w_out, i - j))
            self.fuse.append(row)

    def forward(self, xs: list[Tensor]) -> list[Tensor]:
        """Forward pass.

        Args:
            xs: One feature map per branch, highest resolution first.

        Returns:
            The fused feature maps, same shapes.
        """
        xs = [branch(x) for branch, x in zip(self.branches, xs, strict=True)]
        out = []
        for i, row in enumerate(self.fuse):
            size = xs[i].shape[-2:]
            y = xs[i]
            for j, layer in enumerate(cast(nn.ModuleList, row)):
                if j == i:
                    continue
                z = layer(xs[j])
                if j > i:
                    z = F.interpolate(
                        z, size=size, mode='bilinear', align_corners=False
                    )
                y = y + z
            out.append(F.relu(y))
        return out


class SoftmaxChannelGate(nn.Module):
    """Channel gates from softmax-weighted spatial pooling.

    A 1x1 convolution scores every position; the softmax of the scores over
    the image weights a global pooling of the features; a bottleneck MLP
    (``C -> C/reduction -> C``) and a sigmoid turn the pooled context into one
    gate per channel, which rescales the input.
    """

    def __init__(self, channels: int, reduction: int = 16) -> None:
        """Initialise a new SoftmaxChannelGate.

        Args:
            channels: Input channels C.
            reduction: Bottleneck ratio (hidden width ``max(1, C // reduction)``).
        """
        super().__init__()
        hidden = max(1, channels // reduction)
        self.score = nn.Conv2d(channels, 1, 1)
        self.mlp = nn.Sequential(
            nn.Conv2d(channels, hidden, 1),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden, channels, 1),
        )

    def gates(self, x: Tensor) -> Tensor:
        """Compute the channel gates.

        Args:
            x: Features (B, C, H, W).

        Returns:
            Gates in (0, 1), shape (B, C, 1, 1).
        """
        b, c = x.shape[:2]
        weights = self.score(x).flatten(2).softmax(dim=-1)  # B x 1 x HW
        context = torch.einsum('bcn,bon->bc', x.flatten(2), weights)
        return torch.sigmoid(self.mlp(context.view(b, c, 1, 1)))

    def forward(self, x: Tensor) -> Tensor:
        """Gate the channels of ``x``.

        Args:
            x: Features (B, C, H, W).

        Returns:
            ``x`` times its channel gates.
        """
        return x * self.gates(x)


class PatchNonLocal(nn.Module):
    """Non-local (embedded Gaussian) attention within each of ``splits x splits`` patches.

    The feature map is cut into ``splits`` rows and columns of patches (four
    quadrants by default; the split points are ``H // 2`` and ``W // 2`` for odd
    sizes); each position attends to all positions of its own patch. The output
    projection is zero-initialised batch norm, so the block starts as identity.
    """

    def __init__(
        self, channels: int, inter_channels: int | None = None, splits: int = 2
    ) -> None:
        """Initialise a new PatchNonLocal.

        Args:
            channels: Input channels C.
            inter_channels: Embedding width (default ``C // 2``).
            splits: Patches per side.
        """
        super().__init__()
        inter = inter_channels or max(1, channels // 2)
        self.splits = splits
        self.inter_channels = inter
        self.theta = nn.Conv2d(channels, inter, 1)
        self.phi = nn.Conv2d(channels, inter, 1)
        self.g = nn.Conv2d(channels, inter, 1)
        norm = nn.BatchNorm2d(channels)
        nn.init.zeros_(norm.weight)
        self.out = nn.Sequential(nn.Conv2d(inter, channels, 1, bias=False), norm)

    def _attend(self, x: Tensor) -> Tensor:
        b, _, h, w = x.shape
        theta = self.theta(x).flatten(2).transpose(1, 2)  # B x N x C'
        phi = self.phi(x).flatten(2).transpose(1, 2)  # B x N x C'
        g = self.g(x).flatten(2).transpose(1, 2)  # B x N x C'
        # softmax(theta phi^T) g without materialising the N x N matrix where
        # PyTorch has a fused kernel (embedded Gaussian: no 1/sqrt(C') scaling).
        y = F.scaled_dot_product_attention(theta, phi, g, scale=1.0)
        return y.transpose(1, 2).reshape(b, self.inter_channels, h, w)

    def forward(self, x: Tensor) -> Tensor:
        """Forward pass.

        Args:
            x: Features (B, C, H, W).

        Returns:
            ``x`` plus the patch-wise non-local response, same shape.
        """
        h, w = x.shape[-2:]
        rows = [h * k // self.splits for k in range(self.splits + 1)]
        cols = [w * k // self.splits for k in range(self.splits + 1)]
        bands = []
        for r0, r1 in itertools.pairwise(rows):
            if r1 == r0:
                continue
            patches = [
                self._attend(x[..., r0:r1, c0:c1])
                for c0, c1 in itertools.pairwise(cols)
                if c1 > c0
            ]
            bands.append(torch.cat(patches, dim=-1))
        y = torch.cat(bands, dim=-2)
        return x + self.out(y)


class InteractiveAttention(nn.Module):
    """Interactive attention module (IAM) on the multi-resolution branch outputs.

    The high-resolution branch is channel-gated (:class:`SoftmaxChannelGate`),
    the lower-resolution branches are up-sampled to its size, all are
    concatenated and refined by :class:`PatchNonLocal`.
    """

    def __init__(
        self,
        widths: list[int],
        reduction: int = 16,
        splits: int = 2,
        inter_channels: int | None = None,
    ) -> None:
        """Initialise a new InteractiveAttention.

        Args:
            widths: Channels of each branch, highest resolution first.
            reduction: Channel-gate bottleneck ratio.
            splits: Non-local patches per side.
            inter_channels: Non-local embedding width (default half the channels).
        """
        super().__init__()
        self.channels = sum(widths)
        self.channel_gate = SoftmaxChannelGate(widths[0], reduction)
        self.non_local = PatchNonLocal(self.channels, inter_channels, splits=splits)

    def forward(self, xs: list[Tensor]) -> Tensor:
        """Forward pass.

        Args:
            xs: One feature map per branch, highest resolution first.

        Returns:
            Fused features (B, sum(widths), H, W) at the highest resolution.
        """
        size = xs[0].shape[-2:]
        high = self.channel_gate(xs[0])
        ups = [
            F.interpolate(x, size=size, mode='bilinear', align_corners=False)
            for x in xs[1:]
        ]
        return self.non_local(torch.cat([high, *ups], dim=1))


class DIANet(nn.Module):
    """DIAnet: full-resolution HRNet with interactive attention and a 1x1 head.

    If you use this model in your research, please cite the following paper:

    * https://arxiv.org/abs/2401.03182
    """

    def __init__(
        self,
        in_channels: int = 14,
        num_classes: int = 11,
        width: int = 48,
        layer1_planes: int = 64,
        num_blocks: int = 4,
        num_modules: tuple[int, int, int] = NUM_MODULES,
        reduction: int = 16,
        splits: int = 2,
        attention_channels: int | None = None,
    ) -> None:
        """Initialise a new DIANet.

        Args:
            in_channels: Input bands (14 for FY-4A AGRI).
            num_classes: Output classes (11 for FYH: 10 cloud types + fill).
            width: Width of the high-resolution branch (48 in the paper); the
                branches have ``width * (1, 2, 4, 8)`` channels.
            layer1_planes: Bottleneck planes of the first layer (output
                ``4 * layer1_planes`` channels; 64 in the paper).
            num_blocks: Blocks per layer and per branch (4 in the paper).
            num_modules: Fusion modules of stages 2, 3 and 4.
            reduction: Channel-gate bottleneck ratio.
            splits: Non-local patches per side (2: four quadrants).
            attention_channels: Non-local embedding width (default: half the
                ``15 * width`` fused channels, 360 for W48).
        """
        super().__init__()
        self.in_channels = in_channels
        self.num_classes = num_classes
        self.width = width
        widths = [width * 2**k for k in range(4)]
        layer1_out = layer1_planes * Bottleneck.expansion
        self.layer1 = nn.Sequential(
            Bottleneck(in_channels, layer1_planes),
            *(Bottleneck(layer1_out, layer1_planes) for _ in range(num_blocks - 1)),
        )
        self.transitions = nn.ModuleList()
        self.stages = nn.ModuleList()
        previous = [layer1_out]
        for stage, modules in enumerate(num_modules, start=2):
            current = widths[:stage]
            transition = nn.ModuleList()
            for k, w in enumerate(current):
                if k < len(previous):
                    if previous[k] == w:
                        transition.append(nn.Identity())
                    else:
                        transition.append(
                            nn.Sequential(
                                *_conv_bn(previous[k], w), nn.ReLU(inplace=True)
                            )
                        )
                else:  # new branch from the lowest existing one
                    transition.append(
                        nn.Sequential(
                            *_conv_bn(previous[-1], w, stride=2), nn.ReLU(inplace=True)
                        )
                    )
            self.transitions.append(transition)
            self.stages.append(
                nn.Sequential(
                    *(HighResolutionModule(current, num_blocks) for _ in range(modules))
                )
            )
            previous = current
        self.attention = InteractiveAttention(
            widths, reduction, splits, attention_channels
        )
        channels = self.attention.channels
        self.head = nn.Sequential(
            nn.Conv2d(channels, channels, 1, bias=False),
            nn.BatchNorm2d(channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(channels, num_classes, 1),
        )

    def features(self, x: Tensor) -> list[Tensor]:
        """Run the backbone.

        Args:
            x: Images (B, in_channels, H, W).

        Returns:
            The four branch outputs, strides 1, 2, 4 and 8.
        """
        xs = [self.layer1(x)]
        for transition, stage in zip(self.transitions, self.stages, strict=True):
            new = [
                layer(xs[k] if k < len(xs) else xs[-1])
                for k, layer in enumerate(cast(nn.ModuleList, transition))
            ]
            xs = stage(new)
        return xs

    def forward(self, x: Tensor) -> Tensor:
        """Forward pass.

        Args:
            x: Images (B, in_channels, H, W).

        Returns:
            Class logits (B, num_classes, H, W).
        """
        return self.head(self.attention(self.features(x)))


def dianet_w48(**kwargs: Any) -> DIANet:
    """DIAnet-W48, the paper's configuration (branches 48/96/192/384, 720 fused channels).

    Args:
        **kwargs: Further :class:`DIANet` arguments (``in_channels``, ``num_classes``).

    Returns:
        The model.
    """
    return DIANet(width=48, **kwargs)


def dianet_w18(**kwargs: Any) -> DIANet:
    """DIAnet-W18 (branches 18/36/72/144), a lighter variant.

    Args:
        **kwargs: Further :class:`DIANet` arguments.

    Returns:
        The model.
    """
    return DIANet(width=18, **kwargs)


def dianet_w8(**kwargs: Any) -> DIANet:
    """A tiny DIAnet for CPU tests: width 8, first layer 16 planes, 1 block per branch.

    Args:
        **kwargs: Further :class:`DIANet` arguments (override the defaults above).

    Returns:
        The model.
    """
    options: dict[str, Any] = {
        'layer1_planes': 16,
        'num_blocks': 1,
        'num_modules': (1, 1, 1),
    }
    options.update(kwargs)
    return DIANet(width=8, **options)
