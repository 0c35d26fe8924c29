"""E2E-MFD: end-to-end RGB-IR image fusion and oriented object detection."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .lma import modality_layout, split_modalities
from .obb_detector import OBBHead, OBBOutput, YOLOv8Backbone, YOLOv8Neck, pad_to_stride

__all__ = [
    'E2EMFD',
    'E2EMFDOutput',
    'FusionBlock',
    'FusionNetwork',
    'SelectiveKernel',
    'e2emfd_yolov8n_obb',
    'gmta_aligned_gradient',
    'gmta_backward',
]


class FusionBlock(nn.Module):
    """Two 3x3 conv + BN + LeakyReLU layers with a 1x1 residual projection."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        """Initialise a new FusionBlock.

        Args:
            in_channels: Input channels.
            out_channels: Output channels.
        """
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.LeakyReLU(0.2),
            nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
        )
        self.skip = nn.Conv2d(in_channels, out_channels, 1, bias=False)
        self.act = nn.LeakyReLU(0.2)

    def forward(self, x: Tensor) -> Tensor:
        """Apply the block.

        Args:
            x: Input (B, C_in, H, W).

        Returns:
            Output (B, C_out, H, W).
        """
        out: Tensor = self.act(self.body(x) + self.skip(x))
        return out


class SelectiveKernel(nn.Module):
    """Selective-kernel attention: 3x3 and dilated 3x3 branches mixed by channel softmax."""

    def __init__(self, channels: int, reduction: int = 4, min_hidden: int = 16) -> None:
        """Initialise a new SelectiveKernel.

        Args:
            channels: Channels (kept).
            reduction: Reduction of the squeeze layer.
            min_hidden: Minimum squeeze channels.
        """
        super().__init__()
        hidden = max(channels // reduction, min_hidden)
        self.branches = nn.ModuleList(
            nn.Sequential(
                nn.Conv2d(channels, channels, 3, padding=d, dilation=d, bias=False),
                nn.BatchNorm2d(channels),
                nn.ReLU(),
            )
            for d in (1, 2)
        )
        self.squeeze = nn.Sequential(nn.Linear(channels, hidden), nn.ReLU())
        self.select = nn.Linear(hidden, 2 * channels)

    def forward(self, x: Tensor) -> Tensor:
        """Apply the attention.

        Args:
            x: Input (B, C, H, W).

        Returns:
            Output (B, C, H, W).
        """
        feats = torch.stack([b(x) for b in self.branches], 1)  # (B, 2, C, H, W)
        z = self.squeeze(feats.sum(1).mean((-2, -1)))
        weights = self.select(z).reshape(x.shape[0], 2, -1).softmax(1)
        return (feats * weights[..., None, None]).sum(1)


class FusionNetwork(nn.Module):
    """Pixel path + region path, gate and two weight maps."""

    def __init__(
        self,
        region_channels: Sequence[int],
        in_channels: int = 4,
        hidden: Sequence[int] = (64, 128),
    ) -> None:
        """Initialise a new FusionNetwork.

        Args:
            region_channels: Channels of the P2, P3, P4 backbone features.
            in_channels: Channels of the stacked input (RGB + IR).
            hidden: Channels of the two pixel-path fusion blocks.
        """
        super().__init__()
        c1, c2 = hidden
        self.pixel = nn.Sequential(FusionBlock(in_channels, c1), FusionBlock(c1, c2))
        self.region = nn.ModuleList(
            nn.Sequential(SelectiveKernel(c), nn.Conv2d(c, c2, 1))
            for c in region_channels
        )
        self.gate_pixel = nn.Conv2d(c2, c2, 3, padding=1)
        self.gate_region = nn.Conv2d(c2, c2, 3, padding=1)
        self.pixel_proj = nn.Conv2d(c2, c2, 3, padding=1)
        self.decoder = nn.Sequential(
            nn.Conv2d(c2, c1, 3, padding=1),
            nn.LeakyReLU(0.2),
            nn.Conv2d(c1, c1 // 2, 3, padding=1),
            nn.LeakyReLU(0.2),
            nn.Conv2d(c1 // 2, 2, 1),
        )

    def forward(self, image: Tensor, region_feats: Sequence[Tensor]) -> Tensor:
        """Compute the two fusion weight maps.

        Args:
            image: Stacked RGB + IR (B, 4, H, W).
            region_feats: Backbone features P2, P3, P4.

        Returns:
            Weight maps (B, 2, H, W) in (0, 1): IR first, then V.
        """
        size = image.shape[-2:]
        pixel = self.pixel(image)
        region = sum(
            (
                F.interpolate(m(f), size=size, mode='bilinear', align_corners=False)
                for m, f in zip(self.region, region_feats, strict=True)
            ),
            torch.zeros_like(pixel),
        )
        gated = self.gate_pixel(pixel) * F.hardsigmoid(self.gate_region(region))
        gated = gated + self.pixel_proj(pixel)
        return torch.sigmoid(self.decoder(gated))


@dataclass
class E2EMFDOutput:
    """Outputs of :class:`E2EMFD`.

    Attributes:
        detection: Raw OBB head outputs.
        fused: Fused image (B, 1, H, W).
        weights: Fusion weight maps (B, 2, H, W) (IR, V).
        ir: IR band (B, 1, H, W).
        visible: Brightness V of the RGB image (B, 1, H, W).
    """

    detection: OBBOutput
    fused: Tensor
    weights: Tensor
    ir: Tensor
    visible: Tensor


class E2EMFD(nn.Module):
    """Shared-backbone RGB-IR oriented detector with an image-fusion branch."""

    def __init__(
        self,
        num_classes: int = 5,
        modalities: Mapping[str, Sequence[int]] | None = None,
        width: float = 0.25,
        depth: float = 0.33,
        max_channels: int = 1024,
        reg_max: int = 16,
        fusion_channels: Sequence[int] = (64, 128),
    ) -> None:
        """Initialise a new E2EMFD.

        Args:
            num_classes: Number of classes.
            modalities: Band layout with keys ``rgb`` and ``ir`` (default RGB
                0-2, IR 3).
            width: Width multiple of the YOLOv8 backbone.
            depth: Depth multiple.
            max_channels: Channel cap.
            reg_max: DFL bins per side.
            fusion_channels: Channels of the two pixel-path fusion blocks.

        Raises:
            ValueError: If the layout lacks ``rgb`` (3 bands) or ``ir``.
        """
        super().__init__()
        self.modalities = modality_layout(modalities)
        if len(self.modalities.get('rgb', [])) != 3 or 'ir' not in self.modalities:
            raise ValueError("E2E-MFD needs modalities 'rgb' (3 bands) and 'ir'")
        #: Input bands read, sorted.
        self.bands = sorted(b for v in self.modalities.values() for b in v)
        self.num_classes = num_classes
        self.reg_max = reg_max
        self.backbone = YOLOv8Backbone(3, width, depth, max_channels)
        self.neck = YOLOv8Neck(self.backbone.channels[1:], depth)
        self.head = OBBHead(num_classes, self.neck.channels, reg_max)
        in_ch = sum(len(v) for v in self.modalities.values())
        self.fusion = FusionNetwork(self.backbone.channels[:3], in_ch, fusion_channels)

    def shared_parameters(self) -> list[nn.Parameter]:
        """Parameters shared by fusion and detection (the backbone).

        Returns:
            The backbone parameters.
        """
        return list(self.backbone.parameters())

    def forward(self, x: Tensor) -> E2EMFDOutput:
        """Detect and fuse.

        Args:
            x: Stacked image (B, C, H, W), values in [0, 1].

        Returns:
            Detection outputs and the fused image (at the input size).
        """
        h, w = x.shape[-2:]
        xp = pad_to_stride(x)
        rgb, ir = split_modalities(xp, {k: self.modalities[k] for k in ('rgb', 'ir')})
        ir = ir[:, :1]
        feats_rgb = self.backbone(rgb)
        feats_ir = self.backbone(ir.expand(-1, 3, -1, -1))
        feats = [a + b for a, b in zip(feats_rgb, feats_ir, strict=True)]
        detection = self.head(self.neck(feats[1:]))
        stacked = torch.cat([xp[:, bands] for bands in self.modalities.values()], 1)
        weights = self.fusion(stacked, feats[:3])[..., :h, :w]
        ir, visible = ir[..., :h, :w], rgb[..., :h, :w].amax(1, keepdim=True)
        fused = weights[:, :1] * ir + weights[:, 1:] * visible
        return E2EMFDOutput(detection, fused, weights, ir, visible)


def gmta_aligned_gradient(grads: Tensor, eps: float = 1e-12) -> Tensor:
    """GMTA: combine task gradients after aligning them.

    With ``G`` the (P, K) matrix of task gradients, ``G^T G = V L V^T``,
    ``W = V diag(sqrt(l_min / l_i)) V^T``; ``G W`` has orthogonal columns of
    equal norm ``sqrt(l_min)``, and the update is their sum.

    Args:
        grads: Task gradients (P, K), one column per task.
        eps: Eigenvalues below ``eps`` times the largest count as zero; then
            (a task without gradient or parallel gradients) the plain sum of
            the columns is returned.

    Returns:
        The aligned update (P,).
    """
    gram = grads.T @ grads
    evals, evecs = torch.linalg.eigh(gram.double())
    if evals.max() <= 0 or evals.min() <= eps * evals.max():
        return grads.sum(1)
    scale = (evals.min() / evals).sqrt()
    w = (evecs * scale) @ evecs.T
    return (grads.double() @ w).sum(1).to(grads.dtype)


def gmta_backward(
    losses: Sequence[Tensor], shared: Iterable[nn.Parameter], eps: float = 1e-12
) -> Tensor:
    """Back-propagate several task losses with GMTA on the shared parameters.

    Every parameter's ``.grad`` gets the sum of the task gradients, except the
    shared parameters, which get the GMTA-aligned combination. Gradients are
    accumulated onto existing ones as ``backward`` would.

    Args:
        losses: One scalar loss per task.
        shared: Parameters shared by the tasks.
        eps: See :func:`gmta_aligned_gradient`.

    Returns:
        The (P, K) matrix of shared-parameter task gradients.
    """
    shared = [p for p in shared if p.requires_grad]
    previous = [p.grad.clone() if p.grad is not None else None for p in shared]
    columns = []
    for k, loss in enumerate(losses):
        for p in shared:
            p.grad = None
        loss.backward(retain_graph=k < len(losses) - 1)
        columns.append(
            torch.cat(
                [
                    (p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1)
                    for p in shared
                ]
            )
        )
    # the last backward left the shared grads of the last task only; rebuild
    grads = torch.stack(columns, 1)
    update = gmta_aligned_gradient(grads, eps)
    offset = 0
    for p, prev in zip(shared, previous, strict=True):
        n = p.numel()
        g = update[offset : offset + n].reshape(p.shape)
        p.grad = g if prev is None else prev + g
        offset += n
    return grads


def e2emfd_yolov8n_obb(
    num_classes: int = 5,
    modalities: Mapping[str, Sequence[int]] | None = None,
    width: float = 0.25,
    depth: float = 0.33,
    fusion_channels: Sequence[int] = (64, 128),
) -> E2EMFD:
    """E2E-MFD on a YOLOv8n-OBB detector (depth 0.33, width 0.25).

    Args:
        num_classes: Number of classes.
        modalities: Band layout (default RGB 0-2, IR 3).
        width: Width multiple (other values: smaller or larger YOLOv8 sizes).
        depth: Depth multiple.
        fusion_channels: Channels of the fusion network's pixel path.

    Returns:
        The model.
    """
    return E2EMFD(
        num_classes, modalities, width, depth, 1024, fusion_channels=fusion_channels
    )
