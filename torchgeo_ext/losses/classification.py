"""Losses of the patch classifiers (MIViT, M3amba)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor


def softmax_focal_loss(
    logits: Tensor,
    target: Tensor,
    gamma: float = 2.0,
    weight: Tensor | None = None,
    ignore_index: int = -100,
) -> Tensor:
    """Multi-class focal loss ``mean(w_y (1 - p_y)^gamma (-log p_y))``.

    Args:
        logits: N x K class logits.
        target: N class indices.
        gamma: Focusing exponent (0 gives weighted cross-entropy).
        weight: Optional K class weights.
        ignore_index: Target value that is skipped.

    Returns:
        The mean over the non-ignored samples (0 if there are none).
    """
    keep = target != ignore_index
    logits, target = logits[keep], target[keep]
    if target.numel() == 0:
        return logits.sum() * 0
    log_p = F.log_softmax(logits.float(), dim=1).gather(1, target[:, None])[:, 0]
    loss = -((1 - log_p.exp()) ** gamma) * log_p
    if weight is not None:
        loss = loss * weight.to(loss)[target]
    return loss.mean()


def mivit_class_weights(counts: Sequence[int] | Tensor) -> Tensor:
    """MIViT's class weights: ``max(1, (mean_count - n_c) / n_c)``.

    Rare classes (fewer training pixels than the mean) get weights above 1,
    the others 1. Classes without training pixels get weight 1.

    Args:
        counts: Training pixels per class.

    Returns:
        float32 K weights.
    """
    n = torch.as_tensor(counts, dtype=torch.float32)
    mean = n.sum() / len(n)
    weights = torch.where(n > 0, (mean - n) / n.clamp(min=1), torch.ones_like(n))
    return weights.clamp(min=1.0)


def distillation_loss(
    student: Tensor, teacher: Tensor, temperature: float = 1.0
) -> Tensor:
    """KL divergence ``KL(softmax(teacher / T) || softmax(student / T))``.

    Args:
        student: N x K student logits.
        teacher: N x K teacher logits (gradients flow into both, as in MIViT).
        temperature: Softmax temperature ``T``.

    Returns:
        The batch-mean divergence, times ``T^2``.
    """
    log_s = F.log_softmax(student.float() / temperature, dim=1)
    log_t = F.log_softmax(teacher.float() / temperature, dim=1)
    kl = F.kl_div(log_s, log_t, log_target=True, reduction='batchmean')
    return kl * temperature**2


def reconstruction_loss(
    predictions: Sequence[Tensor], targets: Sequence[Tensor]
) -> Tensor:
    """Mean of the mean squared errors of several reconstructions.

    Args:
        predictions: Reconstructed tensors.
        targets: The tensors they reconstruct (same shapes).

    Returns:
        The averaged loss.

    Raises:
        ValueError: If the sequences are empty or of different lengths.
    """
    if not predictions or len(predictions) != len(targets):
        raise ValueError(
            f'need as many reconstructions as targets, got {len(predictions)} '
            f'and {len(targets)}'
        )
    losses = [
        F.mse_loss(p.float(), t.float())
        for p, t in zip(predictions, targets, strict=True)
    ]
    return torch.stack(losses).mean()


def gaussian_mutual_information(a: Tensor, b: Tensor, eps: float = 1e-2) -> Tensor:
    """Mutual information of two feature batches under a joint Gaussian model.

    ``I(a; b) = 0.5 (log det S_a + log det S_b - log det S_ab)`` with the
    batch correlation matrices of the standardised features, shrunk towards
    the identity by ``eps`` so that they stay invertible for batches smaller
    than the feature dimension. Zero for uncorrelated features, large for
    (linearly) redundant ones; differentiable.

    Args:
        a: N x D features.
        b: N x E features.
        eps: Shrinkage towards the identity.

    Returns:
        The estimate in nats (scalar).
    """
    a = a.float().flatten(1)
    b = b.float().flatten(1)
    n = a.shape[0]
    joint = torch.cat([a, b], dim=1)
    joint = (joint - joint.mean(0)) / (joint.std(0, unbiased=False) + 1e-5)
    corr = joint.T @ joint / max(n, 1)
    eye = torch.eye(corr.shape[0], device=corr.device, dtype=corr.dtype)
    corr = (1 - eps) * corr + eps * eye
    d = a.shape[1]
    logdet_a = torch.linalg.slogdet(corr[:d, :d])[1]
    logdet_b = torch.linalg.slogdet(corr[d:, d:])[1]
    logdet = torch.linalg.slogdet(corr)[1]
    return 0.5 * (logdet_a + logdet_b - logdet)


def information_aggregation_loss(
    z1: Tensor,
    z2: Tensor,
    fused: Tensor,
    weights: tuple[float, float] = (0.5, 0.5),
    eps: float = 1e-2,
) -> Tensor:
    """MIViT's information aggregation constraint (IAC).

    ``I(z1; z2) - w1 I(fused; z2) - w2 I(z1; fused)``: less information shared
    between the two modalities' features (redundancy), more of each kept in
    the fused feature (complementarity).

    Args:
        z1: N x D features of modality 1.
        z2: N x D features of modality 2.
        fused: N x D fused features.
        weights: ``(w1, w2)``.
        eps: Shrinkage of :func:`gaussian_mutual_information`.

    Returns:
        The loss (scalar).
    """
    mi = gaussian_mutual_information
    return (
        mi(z1, z2, eps)
        - weights[0] * mi(fused, z2, eps)
        - weights[1] * mi(z1, fused, eps)
    )
