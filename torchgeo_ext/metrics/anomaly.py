"""Anomaly-detection metrics: ROC AUC(D,F), AUC(F,tau) and background suppression."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor
from torchmetrics import Metric
from torchmetrics.functional.classification import binary_auroc

__all__ = (
    'MEASURES',
    'AnomalyMetrics',
    'anomaly_metrics',
    'auc_d_f',
    'auc_d_f_thresholds',
    'auc_tau',
    'rank_normalise',
)


#: The measures of :func:`anomaly_metrics`, in order.
MEASURES = (
    'auc_df',
    'auc_df_30k',
    'auc_dtau',
    'auc_ftau',
    'auc_bs',
    'auc_snpr',
    'auc_odp',
)


def _flatten(
    scores: Tensor | Any, target: Tensor | Any, valid: Tensor | Any | None
) -> tuple[Tensor, Tensor]:
    s = torch.as_tensor(scores).reshape(-1).to(torch.float64)
    t = torch.as_tensor(target).reshape(-1).to(s.device, torch.long)
    if s.shape != t.shape:
        raise ValueError(
            f'scores ({s.numel()}) and target ({t.numel()}) differ in size'
        )
    keep = torch.isfinite(s)
    if valid is not None:
        keep &= torch.as_tensor(valid, dtype=torch.bool).reshape(-1).to(s.device)
    return s[keep], (t[keep] > 0).long()


def rank_normalise(scores: Tensor) -> Tensor:
    """Dense ranks of the scores scaled to [0, 1] (ties keep equal values).

    Args:
        scores: Any shape.

    Returns:
        float64 tensor of the same shape.
    """
    values, ranks = torch.unique(scores.reshape(-1), return_inverse=True)
    return (ranks.to(torch.float64) / max(len(values) - 1, 1)).view(scores.shape)


def auc_d_f(
    scores: Tensor | Any, target: Tensor | Any, valid: Tensor | Any | None = None
) -> float:
    """ROC AUC(D,F) of a score map against a binary anomaly mask.

    The area under the ROC curve of detection against false-alarm probability,
    computed with torchmetrics on the scores' dense ranks scaled to [0, 1]
    (:func:`rank_normalise`): torchmetrics squashes scores outside [0, 1] with
    a sigmoid, which would tie all large RX scores; ranks keep the order (and
    the ties) exactly, so the AUC is unchanged.

    Args:
        scores: Score map (higher is more anomalous); NaN pixels are ignored.
        target: Mask of the same size (non-zero = anomaly).
        valid: Optional mask of pixels to evaluate.

    Returns:
        The AUC in [0, 1].

    Raises:
        ValueError: If the evaluated pixels hold only one class.
    """
    s, t = _flatten(scores, target, valid)
    if t.numel() == 0 or bool(t.all()) or not bool(t.any()):
        raise ValueError('AUC needs both anomaly and background pixels')
    return float(binary_auroc(rank_normalise(s), t))


def auc_d_f_thresholds(
    scores: Tensor | Any,
    target: Tensor | Any,
    valid: Tensor | Any | None = None,
    thresholds: int = 30000,
) -> float:
    """ROC AUC(D,F) as the BSDM/STAD authors compute it: fixed linear thresholds.

    Scores are min-max normalised to [0, 1]; at ``thresholds`` values
    ``tau`` spaced linearly over [0, 1], ``P_D(tau)`` and ``P_F(tau)`` are the
    fractions of anomaly and background pixels with score ``>= tau``; the
    area is the trapezoid sum over consecutive thresholds (the curve is not
    closed at (0, 0), as in their code).

    Args:
        scores: Score map; NaN pixels are ignored.
        target: Binary anomaly mask.
        valid: Optional mask of pixels to evaluate.
        thresholds: Number of thresholds (theirs: 30,000).

    Returns:
        The AUC.

    Raises:
        ValueError: If the evaluated pixels hold only one class.
    """
    s, t = _flatten(scores, target, valid)
    if t.numel() == 0 or bool(t.all()) or not bool(t.any()):
        raise ValueError('AUC needs both anomaly and background pixels')
    low, high = s.min(), s.max()
    norm = (s - low) / (high - low) if high > low else torch.zeros_like(s)
    taus = torch.linspace(
        0, float(norm.max()), thresholds, dtype=torch.float64, device=norm.device
    )

    def above(values: Tensor) -> Tensor:
        ordered = values.sort().values
        below = torch.searchsorted(ordered, taus, right=False)
        return (len(ordered) - below).to(torch.float64) / len(ordered)

    pd, pf = above(norm[t == 1]), above(norm[t == 0])
    return float(((pf[:-1] - pf[1:]) * (pd[1:] + pd[:-1]) / 2).sum())


def auc_tau(
    scores: Tensor | Any, target: Tensor | Any, valid: Tensor | Any | None = None
) -> tuple[float, float]:
    """AUC(D,tau) and AUC(F,tau) over min-max normalised scores.

    The areas under the detection and false-alarm probabilities as functions of
    the threshold ``tau`` (3D ROC analysis, Chang 2021). Since ``P_F(tau) =
    P(s_background > tau)``, the area is exactly the mean normalised background
    score (the mean normalised anomaly score for ``D``): no threshold sweep.

    Args:
        scores: Score map; NaN pixels are ignored.
        target: Binary anomaly mask.
        valid: Optional mask of pixels to evaluate.

    Returns:
        ``(AUC(D,tau), AUC(F,tau))``.

    Raises:
        ValueError: If the evaluated pixels hold only one class.
    """
    s, t = _flatten(scores, target, valid)
    if t.numel() == 0 or bool(t.all()) or not bool(t.any()):
        raise ValueError('AUC needs both anomaly and background pixels')
    low, high = s.min(), s.max()
    norm = (s - low) / (high - low) if high > low else torch.zeros_like(s)
    return float(norm[t == 1].mean()), float(norm[t == 0].mean())


def anomaly_metrics(
    scores: Tensor | Any, target: Tensor | Any, valid: Tensor | Any | None = None
) -> dict[str, float]:
    """Every anomaly measure of one scene.

    Besides the AUCs, the background suppression measures: ``AUC_BS = AUC(D,F)
    - AUC(F,tau)`` (higher is better suppression), ``AUC_SNPR = AUC(D,tau) /
    AUC(F,tau)`` (signal-to-noise probability ratio) and ``AUC_ODP = AUC(D,F) +
    AUC(D,tau) - AUC(F,tau)`` (overall detection).

    Args:
        scores: Score map.
        target: Binary anomaly mask.
        valid: Optional mask of pixels to evaluate.

    Returns:
        ``auc_df``, ``auc_df_30k`` (:func:`auc_d_f_thresholds`), ``auc_dtau``,
        ``auc_ftau``, ``auc_bs``, ``auc_snpr``, ``auc_odp``.
    """
    df = auc_d_f(scores, target, valid)
    df_30k = auc_d_f_thresholds(scores, target, valid)
    dtau, ftau = auc_tau(scores, target, valid)
    return {
        'auc_df': df,
        'auc_df_30k': df_30k,
        'auc_dtau': dtau,
        'auc_ftau': ftau,
        'auc_bs': df - ftau,
        'auc_snpr': dtau / ftau if ftau > 0 else float('inf'),
        'auc_odp': df + dtau - ftau,
    }


class AnomalyMetrics(Metric):
    """Every measure of :func:`anomaly_metrics`, averaged over scenes.

    Call :meth:`update` once per scene. A scene with one class only (AUC is
    undefined) is left out, and so is a measure's non-finite value (e.g.
    ``auc_snpr`` when ``auc_ftau`` is 0). :meth:`compute` returns the mean of
    each measure over the scenes that gave it one.
    """

    full_state_update = False
    higher_is_better = True
    is_differentiable = False

    def __init__(self, **kwargs: Any) -> None:
        """Initialise a new AnomalyMetrics.

        Args:
            **kwargs: Passed to :class:`torchmetrics.Metric`.
        """
        super().__init__(**kwargs)
        for name in MEASURES:
            self.add_state(f'{name}_sum', torch.zeros((), dtype=torch.float64), 'sum')
            self.add_state(f'{name}_count', torch.zeros((), dtype=torch.int64), 'sum')

    def update(
        self, scores: Tensor, target: Tensor, valid: Tensor | None = None
    ) -> None:
        """Add one scene.

        Args:
            scores: ``H x W`` score map.
            target: ``H x W`` anomaly mask.
            valid: Optional ``H x W`` mask of the pixels to evaluate.
        """
        if not bool(target.any()) or bool(target.all()):
            return
        for name, value in anomaly_metrics(scores, target, valid).items():
            if math.isfinite(value):
                total: Tensor = getattr(self, f'{name}_sum')
                count: Tensor = getattr(self, f'{name}_count')
                total += value
                count += 1

    def compute(self) -> dict[str, Tensor]:
        """The mean of each measure (measures no scene gave are left out).

        Returns:
            Measure name to float32 mean.
        """
        out = {}
        for name in MEASURES:
            count = getattr(self, f'{name}_count')
            if int(count) > 0:
                out[name] = (getattr(self, f'{name}_sum') / count).float()
        return out
