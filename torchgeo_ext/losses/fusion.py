"""The image-fusion loss of E2E-MFD."""

from __future__ import annotations

from collections.abc import Sequence

import kornia
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..ops.obb import polygons_to_mask

__all__ = ['FusionLoss', 'laplacian_pyramid']


def laplacian_pyramid(x: Tensor, levels: int = 3) -> list[Tensor]:
    """Laplacian pyramid (band-pass levels, then the low-pass residual).

    Args:
        x: Image (B, C, H, W).
        levels: Number of band-pass levels.

    Returns:
        ``levels`` band-pass images and the final low-pass image.
    """
    out = []
    current = x
    for _ in range(levels):
        blurred = kornia.filters.gaussian_blur2d(current, (5, 5), (1.0, 1.0))
        down = F.avg_pool2d(blurred, 2, ceil_mode=True)
        up = F.interpolate(
            down, size=current.shape[-2:], mode='bilinear', align_corners=False
        )
        out.append(current - up)
        current = down
    out.append(current)
    return out


class FusionLoss(nn.Module):
    """Fusion loss: SSIM, Laplacian-pyramid gradient and box-aware pixel terms.

    SSIM of the fused image to the visible brightness V and to IR (kornia),
    Laplacian-pyramid gradient L1 to the larger of the IR and V gradients, and
    a box-aware pixel L1 (inside the boxes to the max and the mean of IR and V,
    background to IR), times ``weight`` (10 in the paper).
    """

    def __init__(
        self,
        weight: float = 10.0,
        ssim_weight: float = 1.0,
        grad_weight: float = 1.0,
        pixel_weight: float = 1.0,
        levels: int = 3,
    ) -> None:
        """Initialise a new FusionLoss.

        Args:
            weight: Overall factor (10 in the paper).
            ssim_weight: Weight of the SSIM terms.
            grad_weight: Weight of the gradient term.
            pixel_weight: Weight of the pixel terms.
            levels: Laplacian pyramid levels.
        """
        super().__init__()
        self.weight = weight
        self.weights = (ssim_weight, grad_weight, pixel_weight)
        self.levels = levels

    def forward(
        self,
        fused: Tensor,
        ir: Tensor,
        visible: Tensor,
        polygons: Sequence[Tensor] | None = None,
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """Compute the loss.

        Args:
            fused: Fused image (B, 1, H, W).
            ir: IR image (B, 1, H, W).
            visible: Visible brightness (B, 1, H, W).
            polygons: Per image, object polygons (N_i, 8) in pixels.

        Returns:
            The weighted total and its detached parts.
        """
        b, _, h, w = fused.shape
        ssim = (1 - kornia.metrics.ssim(fused, visible, 11).mean()) + (
            1 - kornia.metrics.ssim(fused, ir, 11).mean()
        )
        grad = fused.new_zeros(())
        pyramids = [laplacian_pyramid(t, self.levels) for t in (fused, ir, visible)]
        for lf, li, lv in zip(*(p[: self.levels] for p in pyramids), strict=True):
            grad = grad + F.l1_loss(lf.abs(), torch.maximum(li.abs(), lv.abs()))
        if polygons is None:
            mask = torch.zeros(b, 1, h, w, dtype=fused.dtype, device=fused.device)
        else:
            mask = torch.stack(
                [polygons_to_mask(p.to(fused.device).float(), h, w) for p in polygons]
            )[:, None].to(fused.dtype)
        brightest = torch.maximum(ir, visible)
        mean = (ir + visible) / 2
        inside = (mask * ((fused - brightest).abs() + (fused - mean).abs())).mean()
        outside = ((1 - mask) * (fused - ir).abs()).mean()
        pixel = inside + outside
        sw, gw, pw = self.weights
        total = self.weight * (sw * ssim + gw * grad + pw * pixel)
        parts = {
            'loss_ssim': ssim.detach(),
            'loss_grad': grad.detach(),
            'loss_pixel': pixel.detach(),
        }
        return total, parts
