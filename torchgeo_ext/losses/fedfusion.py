"""FedFusion's loss: cross-entropy of the fused logits, single-modality logits pulled to them."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor


def fedfusion_loss(
    out: dict[str, Tensor], target: Tensor, consistency_weight: float = 1.0
) -> dict[str, Tensor]:
    """Cross-entropy on ``logits`` plus the mean squared gap of the per-modality logits.

    The gap terms make each modality's encoding predict what the fused one
    does, so a client keeps a usable classifier when its partner's features
    are poor (the authors' code weighs them 1, as here).

    Args:
        out: :meth:`~torchgeo_ext.models.fedfusion.FedFusion.fuse` outputs.
        target: B class indices.
        consistency_weight: Weight of the two gap terms.

    Returns:
        ``loss`` and its terms ``ce`` and ``consistency``.
    """
    ce = F.cross_entropy(out['logits'], target)
    consistency = F.mse_loss(out['hsi_logits'], out['logits']) + F.mse_loss(
        out['lidar_logits'], out['logits']
    )
    return {
        'loss': ce + consistency_weight * consistency,
        'ce': ce,
        'consistency': consistency,
    }
