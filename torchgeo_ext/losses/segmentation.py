"""Losses for semantic segmentation: DIAnet's distribution-aware loss and OHEM cross-entropy."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ['DistributionAwareLoss', 'OhemCrossEntropyLoss']


class DistributionAwareLoss(nn.Module):
    r"""Distribution-aware loss (DAL) of DIAnet.

    With :math:`p` the softmax of the logits, :math:`y` the one-hot target and
    :math:`e_{ic} = (y_{ic} - p_{ic})^2` the squared error of pixel :math:`i`
    and class :math:`c`, the loss is

    .. math::

        L = \frac{1}{N} \sum_i \sum_c w_c \left[e_{ic}
            - \log\frac{1 - e_{ic}}{1 + e_{ic}}\right]
            - \log \frac{1}{|P|} \sum_{c \in P} \mathrm{Dice}_c

    over the N non-ignored pixels, where :math:`P` is the set of classes present
    in the batch's targets and :math:`\mathrm{Dice}_c = (2 \sum_i p_{ic} y_{ic} +
    \epsilon) / (\sum_i p_{ic} + \sum_i y_{ic} + \epsilon)`. The bracket (the
    adaptive error term) is 0 for a perfect prediction and grows without bound
    as :math:`e \to 1`; :math:`e` is clamped below 1 for finiteness.

    The class weights are median-frequency weights,
    :math:`w_c = \mathrm{median}(f) / f_c` (the median over the classes seen,
    averaging the two middle values for an even count), from running pixel counts: in
    training mode every call first adds the batch's target counts to the
    ``counts`` buffer (so the weights follow the class distribution seen so
    far; the buffer is saved in checkpoints). Classes never seen (and the
    ignore index) get weight 1.
    """

    counts: Tensor

    def __init__(
        self, num_classes: int, ignore_index: int | None = None, eps: float = 1e-6
    ) -> None:
        """Initialise a new DistributionAwareLoss.

        Args:
            num_classes: Number of logit channels K.
            ignore_index: Target value to skip (None: none).
            eps: Clamp and smoothing constant.
        """
        super().__init__()
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.eps = eps
        self.register_buffer('counts', torch.zeros(num_classes, dtype=torch.float64))

    def class_weights(self) -> Tensor:
        """Median-frequency weights from the running counts.

        Returns:
            Weights (K,), float32; 1 for classes with no pixels counted.
        """
        counts = self.counts.clone()
        if self.ignore_index is not None and 0 <= self.ignore_index < self.num_classes:
            counts[self.ignore_index] = 0
        weights = torch.ones(
            self.num_classes, dtype=torch.float64, device=counts.device
        )
        seen = counts > 0
        if seen.any():
            freq = counts[seen] / counts[seen].sum()
            weights[seen] = freq.quantile(0.5) / freq
        return weights.float()

    def update_counts(self, target: Tensor) -> None:
        """Add a batch's target pixel counts to the running counts.

        Args:
            target: Integer targets of any shape.
        """
        valid = (target >= 0) & (target < self.num_classes)
        if self.ignore_index is not None:
            valid &= target != self.ignore_index
        self.counts += torch.bincount(target[valid], minlength=self.num_classes).to(
            self.counts
        )

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        """Compute the loss.

        Args:
            logits: Logits (B, K, H, W).
            target: Targets (B, H, W), int64.

        Returns:
            The scalar loss (0 with a gradient if every pixel is ignored).
        """
        if self.training:
            self.update_counts(target)
        k = logits.shape[1]
        probs = logits.float().softmax(dim=1).movedim(1, -1).reshape(-1, k)
        flat = target.reshape(-1)
        valid = (flat >= 0) & (flat < k)
        if self.ignore_index is not None:
            valid &= flat != self.ignore_index
        probs, flat = probs[valid], flat[valid]
        if flat.numel() == 0:
            return logits.sum() * 0
        onehot = F.one_hot(flat, k).to(probs)
        error = ((onehot - probs) ** 2).clamp(max=1 - self.eps)
        adaptive = error - torch.log((1 - error) / (1 + error))
        weights = self.class_weights().to(probs)
        error_term = (adaptive * weights).sum(dim=1).mean()
        intersection = (probs * onehot).sum(dim=0)
        denominator = probs.sum(dim=0) + onehot.sum(dim=0)
        dice = (2 * intersection + self.eps) / (denominator + self.eps)
        present = onehot.sum(dim=0) > 0
        dice_term = -torch.log(dice[present].mean())
        return error_term + dice_term


class OhemCrossEntropyLoss(nn.Module):
    """Cross-entropy over the hard pixels only (online hard example mining).

    A pixel is hard when the predicted probability of its target class is
    below ``threshold``; if fewer than ``min_kept`` pixels are hard, the
    threshold is raised to the target probability of the pixel ranked
    ``min_kept`` (from 0) by increasing confidence, so that at least the
    ``min_kept`` least confident pixels are kept (all, if there are no more). The loss is the mean cross-entropy of the kept pixels.
    """

    def __init__(
        self,
        ignore_index: int | None = None,
        threshold: float = 0.7,
        min_kept: int = 100_000,
        weight: Tensor | None = None,
    ) -> None:
        """Initialise a new OhemCrossEntropyLoss.

        Args:
            ignore_index: Target value to skip (None: none).
            threshold: Probability below which a pixel is hard.
            min_kept: Minimum number of pixels kept per batch.
            weight: Optional class weights (K,) of the cross-entropy.
        """
        super().__init__()
        self.ignore_index = ignore_index
        self.threshold = threshold
        self.min_kept = max(0, min_kept)
        self.weight: Tensor | None
        self.register_buffer('weight', weight)

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        """Compute the loss.

        Args:
            logits: Logits (B, K, H, W).
            target: Targets (B, H, W), int64.

        Returns:
            The scalar loss (0 with a gradient if every pixel is ignored).
        """
        ignore = -100 if self.ignore_index is None else self.ignore_index
        pixel_loss = F.cross_entropy(
            logits.float(),
            target,
            weight=self.weight,
            ignore_index=ignore,
            reduction='none',
        ).reshape(-1)
        flat = target.reshape(-1)
        valid = flat != ignore
        if not valid.any():
            return logits.sum() * 0
        with torch.no_grad():
            probs = (
                logits.float()
                .softmax(dim=1)
                .movedim(1, -1)
                .reshape(-1, logits.shape[1])
            )
            target_prob = probs[valid].gather(1, flat[valid, None]).squeeze(1)
            if self.min_kept >= target_prob.numel():
                keep = torch.ones_like(target_prob, dtype=torch.bool)
            else:
                threshold = max(
                    self.threshold, float(target_prob.sort().values[self.min_kept])
                )
                keep = target_prob < threshold
        kept = pixel_loss[valid][keep]
        if kept.numel() == 0:
            return logits.sum() * 0
        return kept.mean()
