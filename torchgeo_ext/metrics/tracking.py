"""OTB-style single-object tracking metrics: success AUC and precision."""

from __future__ import annotations

import torch
from torch import Tensor
from torchmetrics import Metric


def overlap_thresholds(device: torch.device | str | None = None) -> Tensor:
    """The OTB overlap thresholds 0, 0.05, ..., 1.

    Args:
        device: Where to create them (the boxes' device).

    Returns:
        float64 (21,).
    """
    return torch.linspace(0, 1, 21, dtype=torch.float64, device=device)


def precision_thresholds(device: torch.device | str | None = None) -> Tensor:
    """The OTB centre-error thresholds 0, 1, ..., 50 px.

    Args:
        device: Where to create them (the boxes' device).

    Returns:
        float64 (51,).
    """
    return torch.arange(0, 51, dtype=torch.float64, device=device)


def _as_boxes(boxes: Tensor) -> Tensor:
    boxes = torch.as_tensor(boxes, dtype=torch.float64)
    if boxes.ndim == 1:
        boxes = boxes.unsqueeze(0)
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise ValueError(f'expected N x 4 boxes (x, y, w, h), got {tuple(boxes.shape)}')
    return boxes


def valid_boxes(boxes: Tensor) -> Tensor:
    """Flag boxes that are finite with positive width and height.

    Args:
        boxes: N x 4 ``x, y, w, h``.

    Returns:
        bool (N,).
    """
    boxes = _as_boxes(boxes)
    return torch.isfinite(boxes).all(dim=1) & (boxes[:, 2] > 0) & (boxes[:, 3] > 0)


def box_iou_xywh(pred: Tensor, target: Tensor) -> Tensor:
    """Frame-wise IoU of ``x, y, w, h`` boxes.

    Args:
        pred: N x 4 predicted boxes.
        target: N x 4 ground-truth boxes.

    Returns:
        float64 (N,) overlaps; 0 where either box is invalid.
    """
    pred, target = _as_boxes(pred), _as_boxes(target)
    if pred.shape != target.shape:
        raise ValueError(f'{tuple(pred.shape)} predictions vs {tuple(target.shape)}')
    x1 = torch.maximum(pred[:, 0], target[:, 0])
    y1 = torch.maximum(pred[:, 1], target[:, 1])
    x2 = torch.minimum(pred[:, 0] + pred[:, 2], target[:, 0] + target[:, 2])
    y2 = torch.minimum(pred[:, 1] + pred[:, 3], target[:, 1] + target[:, 3])
    inter = (x2 - x1).clamp(min=0) * (y2 - y1).clamp(min=0)
    union = pred[:, 2] * pred[:, 3] + target[:, 2] * target[:, 3] - inter
    iou = inter / union
    ok = valid_boxes(pred) & valid_boxes(target)
    return torch.where(ok, iou, torch.zeros_like(iou))


def center_error_xywh(pred: Tensor, target: Tensor) -> Tensor:
    """Frame-wise distance between box centres, in pixels.

    Args:
        pred: N x 4 predicted boxes.
        target: N x 4 ground-truth boxes.

    Returns:
        float64 (N,) distances; ``inf`` where the prediction is invalid.
    """
    pred, target = _as_boxes(pred), _as_boxes(target)
    if pred.shape != target.shape:
        raise ValueError(f'{tuple(pred.shape)} predictions vs {tuple(target.shape)}')
    pc = pred[:, :2] + pred[:, 2:] / 2
    tc = target[:, :2] + target[:, 2:] / 2
    error = torch.linalg.vector_norm(pc - tc, dim=1)
    return torch.where(valid_boxes(pred), error, torch.full_like(error, torch.inf))


def _evaluated(
    pred: Tensor, target: Tensor, exclude_first: bool
) -> tuple[Tensor, Tensor]:
    pred, target = _as_boxes(pred), _as_boxes(target)
    if pred.shape != target.shape:
        raise ValueError(f'{tuple(pred.shape)} predictions vs {tuple(target.shape)}')
    keep = valid_boxes(target)
    if exclude_first and len(keep):
        keep[0] = False
    return pred[keep], target[keep]


def success_curve(
    pred: Tensor,
    target: Tensor,
    thresholds: Tensor | None = None,
    exclude_first: bool = False,
) -> Tensor:
    """Fraction of frames with overlap above each threshold.

    Args:
        pred: N x 4 predicted ``x, y, w, h`` boxes of one sequence.
        target: N x 4 ground-truth boxes.
        thresholds: Overlap thresholds (default :func:`overlap_thresholds`).
        exclude_first: Leave out the first (initialisation) frame.

    Returns:
        float64 curve, one value per threshold (zeros if no frame is evaluated).
    """
    pred, target = _evaluated(pred, target, exclude_first)
    if thresholds is None:
        thresholds = overlap_thresholds(target.device)
    thresholds = thresholds.to(target.device, torch.float64)
    if len(target) == 0:
        return torch.zeros_like(thresholds)
    iou = box_iou_xywh(pred, target)
    return (iou[:, None] > thresholds[None]).double().mean(dim=0)


def precision_curve(
    pred: Tensor,
    target: Tensor,
    thresholds: Tensor | None = None,
    exclude_first: bool = False,
) -> Tensor:
    """Fraction of frames with centre error at most each threshold.

    Args:
        pred: N x 4 predicted ``x, y, w, h`` boxes of one sequence.
        target: N x 4 ground-truth boxes.
        thresholds: Distance thresholds in px (default :func:`precision_thresholds`).
        exclude_first: Leave out the first (initialisation) frame.

    Returns:
        float64 curve, one value per threshold (zeros if no frame is evaluated).
    """
    pred, target = _evaluated(pred, target, exclude_first)
    if thresholds is None:
        thresholds = precision_thresholds(target.device)
    thresholds = thresholds.to(target.device, torch.float64)
    if len(target) == 0:
        return torch.zeros_like(thresholds)
    error = center_error_xywh(pred, target)
    return (error[:, None] <= thresholds[None]).double().mean(dim=0)


def success_auc(pred: Tensor, target: Tensor, exclude_first: bool = False) -> float:
    """Success AUC of one sequence (mean of the OTB success curve).

    Args:
        pred: N x 4 predicted ``x, y, w, h`` boxes.
        target: N x 4 ground-truth boxes.
        exclude_first: Leave out the first (initialisation) frame.

    Returns:
        The AUC in [0, 20/21].
    """
    return float(success_curve(pred, target, exclude_first=exclude_first).mean())


def precision_at(
    pred: Tensor, target: Tensor, threshold: float = 20.0, exclude_first: bool = False
) -> float:
    """Distance precision at ``threshold`` pixels (DP@20 by default).

    Args:
        pred: N x 4 predicted ``x, y, w, h`` boxes.
        target: N x 4 ground-truth boxes.
        threshold: Centre-error threshold in px.
        exclude_first: Leave out the first (initialisation) frame.

    Returns:
        The fraction of evaluated frames within ``threshold``.
    """
    curve = precision_curve(
        pred,
        target,
        torch.tensor([threshold], dtype=torch.float64, device=_as_boxes(pred).device),
        exclude_first=exclude_first,
    )
    return float(curve[0])


class OTBMetric(Metric):
    """Dataset-level OTB success AUC and DP@20, averaged over sequences.

    The one-pass evaluation (OPE) of the OTB benchmark, as used by HOTC papers:
    overlap is the IoU of ``x, y, w, h`` boxes (continuous areas, no +1 pixel
    convention); the success curve is the fraction of frames whose overlap is
    *greater than* each of the 21 thresholds 0, 0.05, ..., 1, and its mean the
    success AUC (a perfect tracker scores 20/21, as in the OTB toolkit); the
    precision curve is the fraction of frames whose centre error is *at most*
    0, 1, ..., 50 px. Frames whose ground truth is invalid (non-finite, or
    width/height <= 0: target absent) are left out; an invalid prediction
    counts as a failure (overlap 0, infinite error). Each sequence weighs the
    same, as in the OTB toolkit.

    Call :meth:`update` once per sequence with all its predicted and
    ground-truth boxes. :meth:`compute` returns ``success_auc``,
    ``precision_20`` (fractions), ``success_curve`` and ``precision_curve``.
    """

    full_state_update = False
    success_sum: Tensor
    precision_sum: Tensor
    num_sequences: Tensor
    higher_is_better = True
    is_differentiable = False

    def __init__(self, exclude_first: bool = False, **kwargs: object) -> None:
        """Initialise a new OTBMetric.

        Args:
            exclude_first: Leave out each sequence's first frame.
            **kwargs: Passed to :class:`torchmetrics.Metric`.
        """
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.exclude_first = exclude_first
        self.add_state('success_sum', torch.zeros(21, dtype=torch.float64), 'sum')
        self.add_state('precision_sum', torch.zeros(51, dtype=torch.float64), 'sum')
        self.add_state('num_sequences', torch.zeros((), dtype=torch.float64), 'sum')

    def update(self, pred: Tensor, target: Tensor) -> None:
        """Add one sequence.

        Args:
            pred: N x 4 predicted ``x, y, w, h`` boxes.
            target: N x 4 ground-truth boxes.
        """
        self.success_sum += success_curve(
            pred, target, exclude_first=self.exclude_first
        ).to(self.success_sum.device)
        self.precision_sum += precision_curve(
            pred, target, exclude_first=self.exclude_first
        ).to(self.precision_sum.device)
        self.num_sequences += 1

    def compute(self) -> dict[str, Tensor]:
        """Average the per-sequence curves.

        Returns:
            ``success_auc``, ``precision_20``, ``success_curve``, ``precision_curve``.
        """
        count = self.num_sequences.clamp(min=1)
        success = self.success_sum / count
        precision = self.precision_sum / count
        return {
            'success_auc': success.mean(),
            'precision_20': precision[20],
            'success_curve': success,
            'precision_curve': precision,
        }
