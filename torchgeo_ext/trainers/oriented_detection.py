"""Lightning tasks for oriented (rotated-box) RGB-IR object detection.

:class:`OrientedDetectionTask` trains the YOLOv8n-OBB-style detectors of this
library: FoRA/LMA (``model='lma'``, shared backbone with low-rank modal
adaptors and adaptive rank allocation), the two-stream baseline
(``'two_stream'``) and a single-stream detector on the stacked bands
(``'yolov8n_obb'``). :class:`E2EMFDTask` trains E2E-MFD (joint fusion and
detection with GMTA-aligned gradients on the shared backbone) and also
predicts the fused image.

Batches follow DESIGN.md and the DroneVehicle data module: ``image`` (B, C,
H, W) in [0, 1] with the bands of ``modalities`` (default RGB 0-2, IR 3),
``bbox`` a list of (N_i, 8) oriented boxes in pixels, ``label`` a list of
(N_i,) int64. Validation and test report DOTA-style oriented mAP
(:class:`~torchgeo_ext.metrics.detection.OrientedMeanAveragePrecision`).
Predictions: ``prediction_bbox`` (list of (N, 8) polygons),
``prediction_label``, ``prediction_score`` (and ``prediction``, the fused
image, for E2E-MFD); ``transform`` / ``crs`` keys of the batch pass through.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from lightning.pytorch.utilities.types import OptimizerLRScheduler
from torch import Tensor, nn
from torch.optim import SGD, AdamW, Optimizer
from torch.optim.lr_scheduler import LambdaLR

from ..metrics.detection import OrientedMeanAveragePrecision
from ..models.e2emfd import E2EMFD, FusionLoss, gmta_backward
from ..models.lma import (
    DEFAULT_MODALITIES,
    LMADetector,
    RankAllocator,
    TwoStreamOBBDetector,
    adaptor_ranks,
)
from ..models.obb_detector import OBBDetector, OBBLoss, OBBOutput, postprocess
from .base import PluginTask

Batch = dict[str, Any]

#: DroneVehicle's classes.
DRONEVEHICLE_CLASSES = ('car', 'truck', 'bus', 'van', 'freight car')

#: Batch keys copied unchanged into predictions.
PASSTHROUGH_KEYS = ('transform', 'crs', 'bounds')

MODELS = ('lma', 'two_stream', 'yolov8n_obb')


def warmup_cosine(step: int, warmup: int, total: int, final: float) -> float:
    """Learning-rate factor: linear warm-up, then cosine decay to ``final``.

    Args:
        step: Current optimiser step.
        warmup: Warm-up steps.
        total: Total steps.
        final: Final factor.

    Returns:
        The factor applied to the base learning rate.
    """
    if step < warmup:
        return (step + 1) / warmup
    progress = min((step - warmup) / max(total - warmup, 1), 1.0)
    return final + (1 - final) * 0.5 * (1 + math.cos(math.pi * progress))


class OrientedDetectionTask(PluginTask):
    """Oriented object detection with YOLOv8n-OBB-style RGB-IR detectors."""

    #: Predictions are oriented (``prediction_bbox``), read by ``torchgeo-ext detect``.
    oriented = True
    monitor = 'val_map_50'
    mode = 'max'

    def __init__(
        self,
        model: str = 'lma',
        num_classes: int = 5,
        class_names: Sequence[str] | None = None,
        modalities: Mapping[str, Sequence[int]] | None = None,
        in_channels: int | None = None,
        width: float = 0.25,
        depth: float = 0.33,
        rank: int = 9,
        target_rank: float = 6.0,
        alpha: float | None = None,
        adaptive_rank: bool = True,
        optimizer: str = 'sgd',
        lr: float = 0.01,
        momentum: float = 0.937,
        weight_decay: float = 5e-4,
        warmup_epochs: float = 3.0,
        lr_final: float = 0.01,
        box_gain: float = 7.5,
        cls_gain: float = 0.5,
        dfl_gain: float = 1.5,
        conf_threshold: float = 0.001,
        score_threshold: float = 0.25,
        iou_threshold: float = 0.7,
        max_det: int = 300,
        ap_method: str = 'voc07',
    ) -> None:
        """Initialise a new OrientedDetectionTask.

        Args:
            model: ``'lma'``, ``'two_stream'`` or ``'yolov8n_obb'`` (single
                stream on all stacked bands).
            num_classes: Number of classes.
            class_names: Class names (default DroneVehicle's when 5 classes).
            modalities: Band indices of each modality in ``image`` (default
                ``{'rgb': [0, 1, 2], 'ir': [3]}``).
            in_channels: Number of input bands; with no ``modalities``, 4
                means RGB + IR, anything else a single modality.
            width: Width multiple (0.25: YOLOv8n).
            depth: Depth multiple (0.33: YOLOv8n).
            rank: Initial adaptor rank (LMA).
            target_rank: Average adaptor rank at the end (LMA).
            alpha: Adaptor scaling numerator (default ``rank``).
            adaptive_rank: Reallocate adaptor ranks during training (LMA).
            optimizer: ``'sgd'`` (Nesterov) or ``'adamw'``.
            lr: Base learning rate.
            momentum: SGD momentum (AdamW beta1).
            weight_decay: Weight decay.
            warmup_epochs: Linear warm-up length in epochs.
            lr_final: Final learning-rate factor of the cosine schedule.
            box_gain: ProbIoU loss gain.
            cls_gain: Class BCE gain.
            dfl_gain: DFL gain.
            conf_threshold: Score threshold for evaluation.
            score_threshold: Score threshold for prediction.
            iou_threshold: Rotated NMS IoU threshold.
            max_det: Detections kept per image.
            ap_method: ``'voc07'`` or ``'auc'`` for the reported mAP.

        Raises:
            ValueError: For an unknown model name.
        """
        if model not in self._models():
            raise ValueError(f'unknown model {model!r}; choose from {self._models()}')
        self.allocator: RankAllocator | None = None
        super().__init__()

    @classmethod
    def _models(cls) -> tuple[str, ...]:
        return MODELS

    @property
    def modalities(self) -> dict[str, list[int]]:
        """Band layout of the input images."""
        given = self.hparams['modalities']
        if given is not None:
            return {k: list(v) for k, v in given.items()}
        n = self.hparams['in_channels']
        if n is None or n == 4:
            return dict(DEFAULT_MODALITIES)
        return {'image': list(range(n))}

    @property
    def class_names(self) -> list[str]:
        """Names of the classes."""
        names = self.hparams['class_names']
        if names is not None:
            return list(names)
        if self.hparams['num_classes'] == len(DRONEVEHICLE_CLASSES):
            return list(DRONEVEHICLE_CLASSES)
        return [str(i) for i in range(self.hparams['num_classes'])]

    @property
    def detector(self) -> nn.Module:
        """The detection model (its ``bands`` tell ``torchgeo-ext detect`` what it reads)."""
        return self.model

    def configure_models(self) -> None:
        """Build the detector."""
        h = self.hparams
        name = h['model']
        kwargs: dict[str, Any] = {'width': h['width'], 'depth': h['depth']}
        self.model: nn.Module
        if name == 'lma':
            self.model = LMADetector(
                h['num_classes'],
                self.modalities,
                rank=h['rank'],
                alpha=h['alpha'],
                **kwargs,
            )
        elif name == 'two_stream':
            self.model = TwoStreamOBBDetector(
                h['num_classes'], self.modalities, **kwargs
            )
        else:
            bands = sum(len(v) for v in self.modalities.values())
            self.model = OBBDetector(h['num_classes'], bands, **kwargs)

    def configure_losses(self) -> None:
        """Build the detection loss."""
        h = self.hparams
        self.criterion = OBBLoss(
            h['num_classes'],
            box_gain=h['box_gain'],
            cls_gain=h['cls_gain'],
            dfl_gain=h['dfl_gain'],
        )

    def configure_metrics(self) -> None:
        """Build the oriented mAP metrics."""
        h = self.hparams
        self.val_metrics = OrientedMeanAveragePrecision(
            h['num_classes'], iou_thresholds=(0.5,), method=h['ap_method']
        )
        self.test_metrics = OrientedMeanAveragePrecision(
            h['num_classes'], iou_thresholds=(0.5, 0.75), method=h['ap_method']
        )

    def _optimizer(self, params: Any) -> Optimizer:
        h = self.hparams
        if h['optimizer'] == 'adamw':
            return AdamW(
                params,
                lr=h['lr'],
                betas=(h['momentum'], 0.999),
                weight_decay=h['weight_decay'],
            )
        if h['optimizer'] != 'sgd':
            raise ValueError(f'unknown optimizer {h["optimizer"]!r}')
        return SGD(
            params,
            lr=h['lr'],
            momentum=h['momentum'],
            nesterov=True,
            weight_decay=h['weight_decay'],
        )

    def _total_steps(self) -> int:
        try:
            total = int(self.trainer.estimated_stepping_batches)
        except (RuntimeError, AttributeError):
            total = 1
        return max(total, 1)

    def configure_optimizers(self) -> OptimizerLRScheduler:
        """SGD (or AdamW) with linear warm-up and a cosine schedule per step.

        Returns:
            The optimiser and its step-wise scheduler.
        """
        optimizer = self._optimizer(self.parameters())
        total = self._total_steps()
        epochs = max(int(self.trainer.max_epochs or 1), 1)
        warmup = round(self.hparams['warmup_epochs'] * total / epochs)
        final = self.hparams['lr_final']
        scheduler = LambdaLR(
            optimizer, lambda s: warmup_cosine(s, warmup, total, final)
        )
        return {
            'optimizer': optimizer,
            'lr_scheduler': {'scheduler': scheduler, 'interval': 'step'},
        }

    def on_fit_start(self) -> None:
        """Create the rank allocator (LMA) now that the training length is known."""
        h = self.hparams
        if h['model'] == 'lma' and h['adaptive_rank']:
            self.allocator = RankAllocator(
                self.model, self._total_steps(), h['rank'], h['target_rank']
            )

    def on_before_optimizer_step(self, optimizer: Optimizer) -> None:
        """Update the adaptor importance scores and rank masks (LMA).

        Args:
            optimizer: The optimiser about to step.
        """
        if self.allocator is not None:
            budget = self.allocator.step(self.global_step)
            self.log('rank_budget', budget, on_step=True, on_epoch=False)

    def final_ranks(self) -> dict[str, int]:
        """Active adaptor rank of each backbone convolution (LMA; empty otherwise).

        Returns:
            Layer name to rank.
        """
        return adaptor_ranks(self.model)

    def on_train_end(self) -> None:
        """Report the final adaptor ranks (LMA)."""
        ranks = self.final_ranks()
        if ranks:
            self.rank_report = ranks
            mean = sum(ranks.values()) / len(ranks)
            print(f'LMA final adaptor ranks (mean {mean:.2f}): {ranks}')

    def detect(self, out: OBBOutput, predict: bool = False) -> list[dict[str, Tensor]]:
        """Decode and NMS the raw outputs.

        Args:
            out: Raw head outputs.
            predict: Use the prediction score threshold.

        Returns:
            Per image, ``prediction_bbox``, ``prediction_score``, ``prediction_label``.
        """
        h = self.hparams
        reg_max = int(getattr(self.model, 'reg_max', 16))
        conf = h['score_threshold'] if predict else h['conf_threshold']
        return postprocess(out, reg_max, conf, h['iou_threshold'], h['max_det'])

    def detection_output(self, image: Tensor) -> OBBOutput:
        """Run the model and return its raw detection outputs.

        Args:
            image: Image batch (B, C, H, W).

        Returns:
            Raw head outputs.
        """
        out: OBBOutput = self.model(image)
        return out

    def training_step(
        self, batch: Batch, batch_idx: int, dataloader_idx: int = 0
    ) -> Tensor:
        """Compute the training loss.

        Args:
            batch: A batch.
            batch_idx: Its index.
            dataloader_idx: Index of the dataloader.

        Returns:
            The loss.
        """
        out = self.detection_output(batch['image'])
        loss, parts = self.criterion(out, batch['bbox'], batch['label'])
        bs = batch['image'].shape[0]
        self.log('train_loss', loss, batch_size=bs)
        for key, value in parts.items():
            self.log(f'train_{key}', value, batch_size=bs)
        return loss

    def _evaluate(
        self, batch: Batch, prefix: str, metric: OrientedMeanAveragePrecision
    ) -> None:
        out = self.detection_output(batch['image'])
        loss, _ = self.criterion(out, batch['bbox'], batch['label'])
        self.log(f'{prefix}_loss', loss, batch_size=batch['image'].shape[0])
        preds = self.detect(out)
        targets = [
            {'bbox': b, 'label': lab}
            for b, lab in zip(batch['bbox'], batch['label'], strict=True)
        ]
        metric.update(preds, targets)

    def _log_metric(self, prefix: str, metric: OrientedMeanAveragePrecision) -> None:
        values = metric.compute()
        for key, value in values.items():
            if key == 'map_per_class':
                for name, ap in zip(self.class_names, value, strict=False):
                    if not torch.isnan(ap):
                        self.log(f'{prefix}_ap_{name.replace(" ", "_")}', ap)
            else:
                self.log(f'{prefix}_{key}', value)
        metric.reset()

    def validation_step(
        self, batch: Batch, batch_idx: int, dataloader_idx: int = 0
    ) -> None:
        """Accumulate validation mAP.

        Args:
            batch: A batch.
            batch_idx: Its index.
            dataloader_idx: Index of the dataloader.
        """
        self._evaluate(batch, 'val', self.val_metrics)

    def on_validation_epoch_end(self) -> None:
        """Log validation mAP."""
        self._log_metric('val', self.val_metrics)

    def test_step(self, batch: Batch, batch_idx: int, dataloader_idx: int = 0) -> None:
        """Accumulate test mAP.

        Args:
            batch: A batch.
            batch_idx: Its index.
            dataloader_idx: Index of the dataloader.
        """
        self._evaluate(batch, 'test', self.test_metrics)

    def on_test_epoch_end(self) -> None:
        """Log test mAP."""
        self._log_metric('test', self.test_metrics)

    def predict_step(
        self, batch: Batch, batch_idx: int = 0, dataloader_idx: int = 0
    ) -> Batch:
        """Detect oriented objects.

        Args:
            batch: A batch with ``image`` (B, C, H, W) (or (C, H, W)).
            batch_idx: Its index.
            dataloader_idx: Index of the dataloader.

        Returns:
            ``prediction_bbox`` (list of (N, 8)), ``prediction_label`` and
            ``prediction_score`` (lists), plus pass-through keys.
        """
        image = batch['image']
        if image.ndim == 3:
            image = image[None]
        preds = self.detect(self.detection_output(image), predict=True)
        result: Batch = {
            key: [p[key] for p in preds]
            for key in ('prediction_bbox', 'prediction_label', 'prediction_score')
        }
        for key in PASSTHROUGH_KEYS:
            if key in batch:
                result[key] = batch[key]
        return result


class E2EMFDTask(OrientedDetectionTask):
    """E2E-MFD: joint image fusion and oriented detection, GMTA on the backbone.

    Optimisation is manual: each step back-propagates the fusion and detection
    losses separately, aligns their gradients on the shared backbone with
    GMTA (:func:`~torchgeo_ext.models.e2emfd.gmta_backward`), and steps the
    optimiser. ``gmta=False`` back-propagates the plain sum instead.
    """

    def __init__(
        self,
        model: str = 'e2emfd',
        num_classes: int = 5,
        class_names: Sequence[str] | None = None,
        modalities: Mapping[str, Sequence[int]] | None = None,
        in_channels: int | None = None,
        width: float = 0.25,
        depth: float = 0.33,
        fusion_channels: Sequence[int] = (64, 128),
        fusion_weight: float = 10.0,
        gmta: bool = True,
        optimizer: str = 'sgd',
        lr: float = 0.01,
        momentum: float = 0.937,
        weight_decay: float = 5e-4,
        warmup_epochs: float = 3.0,
        lr_final: float = 0.01,
        box_gain: float = 7.5,
        cls_gain: float = 0.5,
        dfl_gain: float = 1.5,
        conf_threshold: float = 0.001,
        score_threshold: float = 0.25,
        iou_threshold: float = 0.7,
        max_det: int = 300,
        ap_method: str = 'voc07',
    ) -> None:
        """Initialise a new E2EMFDTask.

        Args:
            model: ``'e2emfd'``.
            num_classes: Number of classes.
            class_names: Class names (default DroneVehicle's when 5 classes).
            modalities: Band layout with ``rgb`` (3 bands) and ``ir``.
            in_channels: Number of input bands (must be 4 without ``modalities``).
            width: Width multiple of the YOLOv8 backbone.
            depth: Depth multiple.
            fusion_channels: Channels of the fusion network's pixel path.
            fusion_weight: Factor of the fusion loss (10 in the paper).
            gmta: Align the task gradients on the shared backbone.
            optimizer: ``'sgd'`` or ``'adamw'``.
            lr: Base learning rate.
            momentum: SGD momentum (AdamW beta1).
            weight_decay: Weight decay.
            warmup_epochs: Linear warm-up length in epochs.
            lr_final: Final learning-rate factor.
            box_gain: ProbIoU loss gain.
            cls_gain: Class BCE gain.
            dfl_gain: DFL gain.
            conf_threshold: Score threshold for evaluation.
            score_threshold: Score threshold for prediction.
            iou_threshold: Rotated NMS IoU threshold.
            max_det: Detections kept per image.
            ap_method: ``'voc07'`` or ``'auc'``.
        """
        self.allocator = None
        if model not in self._models():
            raise ValueError(f'unknown model {model!r}; choose from {self._models()}')
        # skip OrientedDetectionTask.__init__ (other arguments); super() keeps
        # this frame visible to Lightning's save_hyperparameters
        super(OrientedDetectionTask, self).__init__()
        self.automatic_optimization = False

    @classmethod
    def _models(cls) -> tuple[str, ...]:
        return ('e2emfd',)

    def configure_models(self) -> None:
        """Build E2E-MFD."""
        h = self.hparams
        self.model = E2EMFD(
            h['num_classes'],
            self.modalities,
            h['width'],
            h['depth'],
            fusion_channels=tuple(h['fusion_channels']),
        )

    def configure_losses(self) -> None:
        """Build the detection and fusion losses."""
        super().configure_losses()
        self.fusion_criterion = FusionLoss(weight=self.hparams['fusion_weight'])

    def on_fit_start(self) -> None:
        """Nothing to set up (no rank allocation)."""

    def detection_output(self, image: Tensor) -> OBBOutput:
        """Run E2E-MFD and return its detection outputs.

        Args:
            image: Image batch (B, C, H, W).

        Returns:
            Raw head outputs.
        """
        model = self.model
        assert isinstance(model, E2EMFD)
        return model(image).detection

    def training_step(
        self, batch: Batch, batch_idx: int, dataloader_idx: int = 0
    ) -> Tensor:
        """One manual optimisation step with GMTA.

        Args:
            batch: A batch.
            batch_idx: Its index.
            dataloader_idx: Index of the dataloader.

        Returns:
            The (detached) total loss.
        """
        optimizer = self.optimizers()
        assert not isinstance(optimizer, list)
        model = self.model
        assert isinstance(model, E2EMFD)
        out = model(batch['image'])
        det_loss, det_parts = self.criterion(
            out.detection, batch['bbox'], batch['label']
        )
        fus_loss, fus_parts = self.fusion_criterion(
            out.fused, out.ir, out.visible, batch['bbox']
        )
        optimizer.zero_grad()
        if self.hparams['gmta']:
            gmta_backward([fus_loss, det_loss], model.shared_parameters())
        else:
            self.manual_backward(fus_loss + det_loss)
        torch.nn.utils.clip_grad_norm_(model.parameters(), 10.0)
        optimizer.step()
        scheduler = self.lr_schedulers()
        if scheduler is not None and not isinstance(scheduler, list):
            scheduler.step()  # type: ignore[call-arg]
        bs = batch['image'].shape[0]
        total = (det_loss + fus_loss).detach()
        self.log('train_loss', total, batch_size=bs)
        self.log('train_loss_det', det_loss.detach(), batch_size=bs)
        self.log('train_loss_fusion', fus_loss.detach(), batch_size=bs)
        for key, value in {**det_parts, **fus_parts}.items():
            self.log(f'train_{key}', value, batch_size=bs)
        return total

    def predict_step(
        self, batch: Batch, batch_idx: int = 0, dataloader_idx: int = 0
    ) -> Batch:
        """Detect oriented objects and fuse the image.

        Args:
            batch: A batch with ``image``.
            batch_idx: Its index.
            dataloader_idx: Index of the dataloader.

        Returns:
            As :meth:`OrientedDetectionTask.predict_step`, plus ``prediction``:
            the fused image (B, 1, H, W) in [0, 1].
        """
        image = batch['image']
        if image.ndim == 3:
            image = image[None]
        out = self.model(image)
        preds = self.detect(out.detection, predict=True)
        result: Batch = {
            key: [p[key] for p in preds]
            for key in ('prediction_bbox', 'prediction_label', 'prediction_score')
        }
        result['prediction'] = out.fused.clamp(0, 1)
        for key in PASSTHROUGH_KEYS:
            if key in batch:
                result[key] = batch[key]
        return result
