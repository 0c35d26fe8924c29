"""Losses of FusionSAM: vector-quantisation terms and the segmentation objective."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ['FusionSAMLoss', 'dice_loss', 'vector_quantization_loss']


def vector_quantization_loss(
    latent: Tensor, quantized: Tensor, beta: float = 0.25
) -> tuple[Tensor, Tensor]:
    """Codebook and commitment losses of a vector quantiser.

    ``codebook = ||sg[z] - e||^2`` moves the chosen code vectors towards the
    encoder outputs; ``commitment = ||z - sg[e]||^2`` keeps the encoder
    outputs close to their codes (weighted by *beta*). Both are means over
    all elements.

    Args:
        latent: Encoder outputs ``z`` (any shape).
        quantized: The code vectors ``e`` chosen for them (same shape), *before*
            the straight-through estimator.
        beta: Weight of the commitment term.

    Returns:
        ``(codebook loss, beta * commitment loss)``.

    Raises:
        ValueError: If the shapes differ.
    """
    if latent.shape != quantized.shape:
        raise ValueError(
            f'latent {tuple(latent.shape)} and quantized {tuple(quantized.shape)} differ'
        )
    codebook = F.mse_loss(quantized, latent.detach())
    commitment = F.mse_loss(latent, quantized.detach())
    return codebook, beta * commitment


def dice_loss(
    logits: Tensor, target: Tensor, ignore_index: int | None = None, eps: float = 1.0
) -> Tensor:
    """Soft Dice loss, averaged over the classes present in the target or predicted.

    Args:
        logits: (B, K, H, W) class logits.
        target: (B, H, W) class ids.
        ignore_index: Target value whose pixels are left out (and which is no class).
        eps: Smoothing added to numerator and denominator.

    Returns:
        ``1 - mean_k dice_k`` (a scalar).
    """
    num_classes = logits.shape[1]
    probs = logits.float().softmax(dim=1)
    valid = torch.ones_like(target, dtype=torch.bool)
    if ignore_index is not None:
        valid = target != ignore_index
    safe = torch.where(valid, target, torch.zeros_like(target)).clamp(
        0, num_classes - 1
    )
    onehot = F.one_hot(safe, num_classes).permute(0, 3, 1, 2).to(probs.dtype)
    weight = valid.unsqueeze(1).to(probs.dtype)
    probs, onehot = probs * weight, onehot * weight
    inter = (probs * onehot).sum(dim=(0, 2, 3))
    total = probs.sum(dim=(0, 2, 3)) + onehot.sum(dim=(0, 2, 3))
    dice = (2 * inter + eps) / (total + eps)
    classes = torch.ones(num_classes, dtype=torch.bool, device=logits.device)
    if ignore_index is not None and 0 <= ignore_index < num_classes:
        classes[ignore_index] = False
    return 1 - dice[classes].mean()


class FusionSAMLoss(nn.Module):
    """FusionSAM's training objective.

    ``CE + dice_weight * Dice + vq_weight * sum_m (codebook_m + beta * commitment_m)``
    over the modalities ``m``. The abstract fixes the vector quantisation, not
    the weights: CE + Dice is the usual SAM fine-tuning loss, and ``beta = 0.25``
    is the VQ-VAE value.
    """

    def __init__(
        self,
        ignore_index: int | None = None,
        dice_weight: float = 1.0,
        vq_weight: float = 1.0,
        beta: float = 0.25,
    ) -> None:
        """Initialise a new FusionSAMLoss.

        Args:
            ignore_index: Target value left out of every term (None: none).
            dice_weight: Weight of the Dice term.
            vq_weight: Weight of the vector-quantisation terms.
            beta: Commitment weight inside the VQ terms.
        """
        super().__init__()
        self.ignore_index = ignore_index
        self.dice_weight = dice_weight
        self.vq_weight = vq_weight
        self.beta = beta

    def forward(
        self,
        logits: Tensor,
        target: Tensor,
        latents: Sequence[tuple[Tensor, Tensor]] = (),
    ) -> dict[str, Tensor]:
        """Compute the loss and its terms.

        Args:
            logits: (B, K, H, W) class logits.
            target: (B, H, W) class ids.
            latents: Per modality ``(z, e)``: encoder latents and their chosen
                code vectors (see :func:`vector_quantization_loss`).

        Returns:
            ``loss`` (the total) and the terms ``ce``, ``dice``, ``codebook``,
            ``commitment``.
        """
        ignore = -100 if self.ignore_index is None else self.ignore_index
        ce = F.cross_entropy(logits.float(), target, ignore_index=ignore)
        dice = (
            dice_loss(logits, target, self.ignore_index)
            if self.dice_weight
            else logits.new_zeros(())
        )
        codebook = logits.new_zeros((), dtype=torch.float32)
        commitment = logits.new_zeros((), dtype=torch.float32)
        for latent, quantized in latents:
            c, m = vector_quantization_loss(latent, quantized, self.beta)
            codebook = codebook + c
            commitment = commitment + m
        loss = ce + self.dice_weight * dice + self.vq_weight * (codebook + commitment)
        return {
            'loss': loss,
            'ce': ce.detach(),
            'dice': dice.detach(),
            'codebook': codebook.detach(),
            'commitment': commitment.detach(),
        }
