"""DOTA-style mean average precision for oriented boxes."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor
from torchmetrics import Metric

from ..ops.obb import poly_iou

__all__ = [
    'OrientedMeanAveragePrecision',
    'average_precision',
    'oriented_average_precision',
]


def average_precision(recall: Tensor, precision: Tensor, method: str = 'auc') -> float:
    """Average precision from a precision-recall curve.

    Args:
        recall: Recall after each ranked detection (K,), non-decreasing.
        precision: Precision after each ranked detection (K,).
        method: ``'voc07'`` (11-point interpolation) or ``'auc'`` (area under
            the monotone envelope).

    Returns:
        The AP in [0, 1].

    Raises:
        ValueError: If ``method`` is unknown.
    """
    if method == 'voc07':
        total = 0.0
        for t in torch.linspace(0, 1, 11).tolist():
            above = precision[recall >= t - 1e-12]
            total += float(above.max()) if above.numel() else 0.0
        return total / 11
    if method != 'auc':
        raise ValueError(f'unknown AP method {method!r}')
    mrec = torch.cat((recall.new_zeros(1), recall, recall.new_ones(1)))
    mpre = torch.cat((precision.new_zeros(1), precision, precision.new_zeros(1)))
    mpre = mpre.flip(0).cummax(0).values.flip(0)
    steps = (mrec[1:] != mrec[:-1]).nonzero(as_tuple=True)[0]
    return float(((mrec[steps + 1] - mrec[steps]) * mpre[steps + 1]).sum())


def oriented_average_precision(
    preds: Sequence[dict[str, Tensor]],
    targets: Sequence[dict[str, Tensor]],
    num_classes: int,
    iou_threshold: float = 0.5,
    method: str = 'voc07',
) -> Tensor:
    """Per-class AP of oriented detections (functional core).

    Detections of a class are sorted by score over the whole data set and
    matched greedily to the not-yet-matched ground truth of the same image with
    the highest exact polygon IoU (:func:`torchgeo_ext.ops.obb.poly_iou`). A
    match needs IoU strictly above the threshold (DOTA devkit rule). Ground
    truth marked ``difficult`` is neither a hit nor a miss: detections matched
    to it are ignored. Classes without (non-difficult) ground truth get AP
    ``nan`` and are left out of the mean.

    Args:
        preds: One dict per image with ``prediction_bbox`` (N, 8),
            ``prediction_score`` (N,) and ``prediction_label`` (N,).
        targets: One dict per image with ``bbox`` (M, 8), ``label`` (M,) and
            optionally ``difficult`` (M,) booleans.
        num_classes: Number of classes.
        iou_threshold: A detection matches when IoU > this.
        method: ``'voc07'`` or ``'auc'`` (see :func:`average_precision`).

    Returns:
        AP per class (num_classes,), ``nan`` for classes without ground truth.

    Raises:
        ValueError: If the two lists differ in length.
    """
    if len(preds) != len(targets):
        raise ValueError('preds and targets must have one entry per image each')
    ap = torch.full((num_classes,), float('nan'), dtype=torch.float64)
    for c in range(num_classes):
        scores: list[Tensor] = []
        outcome: list[Tensor] = []  # 1 tp, 0 fp, -1 ignored
        npos = 0
        for pred, target in zip(preds, targets, strict=True):
            positives, judged = _judge_class_detections(pred, target, c, iou_threshold)
            npos += positives
            if judged is not None:
                scores.append(judged[0])
                outcome.append(judged[1])
        if npos:
            ap[c] = _class_ap(scores, outcome, npos, method)
    return ap


def _judge_class_detections(
    pred: dict[str, Tensor], target: dict[str, Tensor], c: int, iou_threshold: float
) -> tuple[int, tuple[Tensor, Tensor] | None]:
    """Judge one image's detections of class ``c`` against its ground truth.

    Each detection is judged against its best-overlapping box (taken or not,
    VOC rule): ignored if that box is difficult, a hit if it is the first
    (highest-scoring) detection to claim it, else a false positive.

    Args:
        pred: The image's predictions (see :func:`oriented_average_precision`).
        target: The image's ground truth.
        c: The class.
        iou_threshold: A detection matches when IoU > this.

    Returns:
        The number of non-difficult boxes of the class, and the detections'
        scores and outcomes (1 hit, 0 false positive, -1 ignored) in
        descending score order, or None if there is no detection.
    """
    gt_mask = target['label'] == c
    gt = target['bbox'][gt_mask].double().reshape(-1, 8)
    difficult = target.get('difficult')
    hard = (
        difficult[gt_mask].bool()
        if difficult is not None
        else torch.zeros(gt.shape[0], dtype=torch.bool, device=gt.device)
    )
    npos = int((~hard).sum())
    p_mask = pred['prediction_label'] == c
    boxes = pred['prediction_bbox'][p_mask].double().reshape(-1, 8)
    score = pred['prediction_score'][p_mask].double()
    if boxes.shape[0] == 0:
        return npos, None
    order = score.argsort(descending=True, stable=True)
    boxes, score = boxes[order], score[order]
    result = torch.zeros(boxes.shape[0], dtype=torch.int64, device=boxes.device)
    if gt.shape[0]:
        best, j = poly_iou(boxes, gt).max(1)
        matched = best > iou_threshold
        result[matched & hard[j]] = -1
        claim = (matched & ~hard[j]).nonzero(as_tuple=True)[0]
        if claim.numel():
            gt_idx = j[claim]
            first = torch.full(
                (gt.shape[0],), boxes.shape[0], dtype=torch.long, device=gt.device
            )
            first.scatter_reduce_(0, gt_idx, claim, reduce='amin')
            result[claim[first[gt_idx] == claim]] = 1
    return npos, (score, result)


def _class_ap(
    scores: list[Tensor], outcome: list[Tensor], npos: int, method: str
) -> float:
    """AP of one class from its judged detections over all images (0 if none counts)."""
    if not scores:
        return 0.0
    all_scores = torch.cat(scores)
    all_outcome = torch.cat(outcome)[all_scores.argsort(descending=True, stable=True)]
    all_outcome = all_outcome[all_outcome >= 0]
    tp = all_outcome.double().cumsum(0)
    fp = (1 - all_outcome.double()).cumsum(0)
    if tp.numel() == 0:
        return 0.0
    recall = tp / npos
    precision = tp / (tp + fp).clamp(min=1e-12)
    return average_precision(recall, precision, method)


class OrientedMeanAveragePrecision(Metric):
    """DOTA-style oriented mAP as a torchmetrics metric.

    :meth:`compute` returns ``map`` (mean over classes and IoU thresholds with
    the chosen method), ``map_50`` / ``map_75`` when those thresholds are
    evaluated, ``map_voc07`` and ``map_auc`` (both AP methods at the first
    threshold) and ``map_per_class`` (at the first threshold).
    States are per-image lists gathered without reduction across processes.
    """

    full_state_update = False
    pred_boxes: list[Tensor]
    pred_scores: list[Tensor]
    pred_labels: list[Tensor]
    gt_boxes: list[Tensor]
    gt_labels: list[Tensor]
    gt_difficult: list[Tensor]
    higher_is_better = True
    is_differentiable = False

    def __init__(
        self,
        num_classes: int,
        iou_thresholds: Sequence[float] = (0.5,),
        method: str = 'voc07',
        **kwargs: Any,
    ) -> None:
        """Initialise a new OrientedMeanAveragePrecision.

        Args:
            num_classes: Number of classes.
            iou_thresholds: IoU thresholds to evaluate.
            method: ``'voc07'`` or ``'auc'``.
            **kwargs: Passed to :class:`torchmetrics.Metric`.

        Raises:
            ValueError: If ``method`` is unknown or no threshold is given.
        """
        super().__init__(**kwargs)
        if method not in ('voc07', 'auc'):
            raise ValueError(f'unknown AP method {method!r}')
        if not iou_thresholds:
            raise ValueError('at least one IoU threshold is needed')
        self.num_classes = num_classes
        self.iou_thresholds = [float(t) for t in iou_thresholds]
        self.method = method
        for name in (
            'pred_boxes',
            'pred_scores',
            'pred_labels',
            'gt_boxes',
            'gt_labels',
            'gt_difficult',
        ):
            self.add_state(name, default=[], dist_reduce_fx=None)

    def update(
        self, preds: Sequence[dict[str, Tensor]], target: Sequence[dict[str, Tensor]]
    ) -> None:
        """Add a batch of images.

        Args:
            preds: Per image, ``prediction_bbox`` (N, 8), ``prediction_score``
                and ``prediction_label`` (N,).
            target: Per image, ``bbox`` (M, 8), ``label`` (M,) and optionally
                ``difficult`` (M,).

        Raises:
            ValueError: If the lists differ in length.
        """
        if len(preds) != len(target):
            raise ValueError('preds and target must have one entry per image each')
        for p, t in zip(preds, target, strict=True):
            self.pred_boxes.append(p['prediction_bbox'].detach().reshape(-1, 8))
            self.pred_scores.append(p['prediction_score'].detach().reshape(-1))
            self.pred_labels.append(p['prediction_label'].detach().reshape(-1))
            self.gt_boxes.append(t['bbox'].detach().reshape(-1, 8))
            self.gt_labels.append(t['label'].detach().reshape(-1))
            difficult = t.get('difficult')
            if difficult is None:
                difficult = torch.zeros(
                    t['label'].numel(), dtype=torch.bool, device=t['label'].device
                )
            self.gt_difficult.append(difficult.detach().reshape(-1).bool())

    def _per_class(self, threshold: float, method: str) -> Tensor:
        preds = [
            {
                'prediction_bbox': b.cpu(),
                'prediction_score': s.cpu(),
                'prediction_label': lab.cpu(),
            }
            for b, s, lab in zip(
                self.pred_boxes, self.pred_scores, self.pred_labels, strict=True
            )
        ]
        targets = [
            {'bbox': b.cpu(), 'label': lab.cpu(), 'difficult': d.cpu()}
            for b, lab, d in zip(
                self.gt_boxes, self.gt_labels, self.gt_difficult, strict=True
            )
        ]
        return oriented_average_precision(
            preds, targets, self.num_classes, threshold, method
        )

    def compute(self) -> dict[str, Tensor]:
        """Compute the mAP values.

        Returns:
            A dict of float32 tensors (see the class docstring).
        """
        out: dict[str, Tensor] = {}
        means = []
        per_class_first: Tensor | None = None
        for k, threshold in enumerate(self.iou_thresholds):
            per_class = self._per_class(threshold, self.method)
            mean = (
                per_class.nanmean()
                if (~per_class.isnan()).any()
                else per_class.new_zeros(())
            )
            means.append(mean)
            if k == 0:
                per_class_first = per_class
                other = 'auc' if self.method == 'voc07' else 'voc07'
                other_pc = self._per_class(threshold, other)
                other_mean = (
                    other_pc.nanmean()
                    if (~other_pc.isnan()).any()
                    else other_pc.new_zeros(())
                )
                out[f'map_{self.method}'] = mean
                out[f'map_{other}'] = other_mean
            for value, name in ((0.5, 'map_50'), (0.75, 'map_75')):
                if abs(threshold - value) < 1e-9:
                    out[name] = mean
        out['map'] = torch.stack(means).mean()
        assert per_class_first is not None
        out['map_per_class'] = per_class_first
        return {key: value.float() for key, value in out.items()}
