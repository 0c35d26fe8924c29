"""Semantic segmentation task (DIAnet cloud recognition on FYH and similar data).

:class:`SegmentationTask` trains the paper segmentation models of
:mod:`torchgeo_ext.models` with their losses, reports mIoU and per-class IoU
(torchmetrics, the ignore index excluded), and predicts class maps that keep
each sample's georeferencing (``transform``, ``crs``) so that
:class:`torchgeo_ext.export.writer.GeoPredictionWriter` and the
``torchgeo-ext segment`` command can write them as GeoTIFFs. What it shares
with :class:`~torchgeo_ext.trainers.fusionsam.FusionSAMTask` (metrics, steps,
prediction) lives in :class:`SemanticSegmentationBase`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal, cast

from lightning.pytorch.utilities.types import OptimizerLRScheduler
from torch import Tensor, nn
from torchmetrics.classification import MulticlassAccuracy, MulticlassJaccardIndex

from ..losses.segmentation import DistributionAwareLoss, OhemCrossEntropyLoss
from ..models.api import get_model, get_model_builder
from .base import PluginTask
from .optimization import build_optimizer, poly, schedule_steps

__all__ = ['SegmentationTask', 'SemanticSegmentationBase']

_STAGES = ('train', 'val', 'test')


def _without_class(logits: Tensor, index: int | None) -> Tensor:
    """Set the logits of class *index* (if it is an output channel) to ``-inf``."""
    if index is None or not 0 <= index < logits.shape[1]:
        return logits
    logits = logits.clone()
    logits[:, index] = float('-inf')
    return logits


class SemanticSegmentationBase(PluginTask):
    """What the semantic segmentation tasks share: metrics, steps, prediction.

    A subclass takes ``num_classes``, ``class_names`` and ``ignore_index``
    hyperparameters, builds its model and loss, and implements
    :meth:`_logits_and_loss` (a batch's logits, loss and loss terms). This
    base logs ``<stage>_loss`` and the terms per step, ``<stage>_mIoU`` (mean over the classes other than the ignore index),
    ``<stage>_accuracy`` (pixel accuracy) and one ``<stage>_IoU_<class name>``
    per class (non-alphanumeric runs of the name replaced by ``_``) at each
    epoch's end, and ``predict_step`` returns ``prediction`` (B, H, W) class
    ids plus the batch's :attr:`~PluginTask.passthrough_keys`.
    """

    monitor = 'val_mIoU'
    mode = 'max'

    def configure_metrics(self) -> None:
        """Initialize per-stage IoU (per class) and pixel-accuracy metrics."""
        num_classes = self.hparams['num_classes']
        ignore_index = self.hparams['ignore_index']
        for stage in _STAGES:
            # torchmetrics states are registered per attribute (reset per stage).
            setattr(
                self,
                f'{stage}_iou',
                MulticlassJaccardIndex(
                    num_classes, average='none', ignore_index=ignore_index
                ),
            )
            setattr(
                self,
                f'{stage}_accuracy',
                MulticlassAccuracy(
                    num_classes, average='micro', ignore_index=ignore_index
                ),
            )

    def predict_logits(self, x: Tensor) -> Tensor:
        """Logits for prediction: the ignore class (if a model output) is never chosen.

        An ignore class that is an output channel but never a training target
        (FYH's fill class 10) gets the logit ``-inf``: argmax and softmax give
        it no pixel.

        Args:
            x: Images (B, C, H, W).

        Returns:
            Logits (B, num_classes, H, W).
        """
        return _without_class(self(x), self.hparams['ignore_index'])

    @staticmethod
    def _target(batch: dict[str, Any]) -> Tensor:
        """The batch's mask as (B, H, W) int64 class ids."""
        y: Tensor = batch['mask']
        if y.ndim == 4:  # (B, 1, H, W) masks from some data modules / Kornia
            y = y.squeeze(1)
        return y.long()

    def _iou(self, stage: str) -> MulticlassJaccardIndex:
        return cast(MulticlassJaccardIndex, getattr(self, f'{stage}_iou'))

    def _accuracy(self, stage: str) -> MulticlassAccuracy:
        return cast(MulticlassAccuracy, getattr(self, f'{stage}_accuracy'))

    def _update_metrics(self, logits: Tensor, y: Tensor, stage: str) -> None:
        """Update the stage's IoU and accuracy with a batch's (undetached) logits."""
        preds = _without_class(logits.detach(), self.hparams['ignore_index']).argmax(
            dim=1
        )
        self._iou(stage).update(preds, y)
        self._accuracy(stage).update(preds, y)

    def _logits_and_loss(
        self, x: Tensor, y: Tensor
    ) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
        """Run the model on a batch and compute its loss.

        Args:
            x: Images (B, C, H, W).
            y: Targets (B, H, W) int64.

        Returns:
            The logits (B, num_classes, H, W), the loss, and further loss
            terms to log as ``<stage>_<name>`` (may be empty).
        """
        raise NotImplementedError

    def _shared_step(self, batch: dict[str, Any], stage: str) -> Tensor:
        x, y = batch['image'], self._target(batch)
        logits, loss, terms = self._logits_and_loss(x, y)
        self._update_metrics(logits, y, stage)
        batch_size = x.shape[0]
        self.log(
            f'{stage}_loss', loss, batch_size=batch_size, prog_bar=stage == 'train'
        )
        for name, value in terms.items():
            self.log(f'{stage}_{name}', value, batch_size=batch_size)
        return loss

    def _log_epoch_metrics(self, stage: str) -> None:
        iou_metric = self._iou(stage)
        if not iou_metric.update_called:
            return
        iou = iou_metric.compute()
        ignore_index = self.hparams['ignore_index']
        keep = [k for k in range(len(iou)) if k != ignore_index]
        values = {
            f'{stage}_IoU_{self.metric_name(self.class_names[k])}': iou[k] for k in keep
        }
        values[f'{stage}_mIoU'] = iou[keep].mean()
        accuracy = self._accuracy(stage)
        values[f'{stage}_accuracy'] = accuracy.compute()
        self.log_dict(values)
        iou_metric.reset()
        accuracy.reset()

    def training_step(
        self, batch: Any, batch_idx: int, dataloader_idx: int = 0
    ) -> Tensor:
        """Compute the training loss and update the metrics.

        Args:
            batch: A batch with ``image`` and ``mask``.
            batch_idx: Index of the batch.
            dataloader_idx: Index of the data loader.

        Returns:
            The loss.
        """
        return self._shared_step(batch, 'train')

    def validation_step(
        self, batch: Any, batch_idx: int, dataloader_idx: int = 0
    ) -> None:
        """Compute the validation loss and update the metrics.

        Args:
            batch: A batch with ``image`` and ``mask``.
            batch_idx: Index of the batch.
            dataloader_idx: Index of the data loader.
        """
        self._shared_step(batch, 'val')

    def test_step(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None:
        """Compute the test loss and update the metrics.

        Args:
            batch: A batch with ``image`` and ``mask``.
            batch_idx: Index of the batch.
            dataloader_idx: Index of the data loader.
        """
        self._shared_step(batch, 'test')

    def on_train_epoch_end(self) -> None:
        """Log the epoch's training IoUs."""
        self._log_epoch_metrics('train')

    def on_validation_epoch_end(self) -> None:
        """Log the epoch's validation IoUs."""
        self._log_epoch_metrics('val')

    def on_test_epoch_end(self) -> None:
        """Log the test IoUs."""
        self._log_epoch_metrics('test')

    def predict_step(
        self, batch: Any, batch_idx: int, dataloader_idx: int = 0
    ) -> dict[str, Any]:
        """Predict class maps.

        Args:
            batch: A batch with ``image`` and optionally georeferencing keys.
            batch_idx: Index of the batch.
            dataloader_idx: Index of the data loader.

        Returns:
            ``prediction`` (B, H, W) int64 class ids (never the ignore
            index, see :meth:`predict_logits`), and the batch's
            :attr:`~PluginTask.passthrough_keys` (``transform``, ``crs``,
            ``id``, ``bounds``, ``path``, ...) where present.
        """
        logits = self.predict_logits(batch['image'])
        return self.passthrough(batch, {'prediction': logits.argmax(dim=1)})


class SegmentationTask(SemanticSegmentationBase):
    """Semantic segmentation with this library's paper models.

    Logs ``<stage>_loss``, ``<stage>_mIoU`` (mean over the classes other than
    the ignore index), ``<stage>_accuracy`` (pixel accuracy) and one
    ``<stage>_IoU_<class name>`` per class (non-alphanumeric runs of the
    name replaced by ``_``). ``predict_step`` returns
    ``prediction`` (B, H, W) class ids plus the batch's georeferencing keys.
    """

    def __init__(
        self,
        model: str = 'dianet_w48',
        in_channels: int = 14,
        num_classes: int = 11,
        class_names: Sequence[str] | None = None,
        ignore_index: int | None = 10,
        loss: Literal['dal', 'ohem', 'ce'] = 'dal',
        ohem_threshold: float = 0.7,
        ohem_min_kept: int = 100_000,
        optimizer: Literal['sgd', 'adamw'] = 'sgd',
        lr: float = 0.01,
        momentum: float = 0.9,
        weight_decay: float = 5e-4,
        poly_power: float = 0.9,
        tile_size: int = 100,
        model_kwargs: dict[str, Any] | None = None,
    ) -> None:
        """Initialize a new SegmentationTask.

        Args:
            model: Builder name: ``dianet_w48`` (the paper), ``dianet_w18``,
                ``dianet_w8`` (tiny, for tests).
            in_channels: Input bands.
            num_classes: Output classes (including the ignore class if it is one
                of ``0..num_classes-1``, as FYH's fill class 10 is).
            class_names: One name per class (default: the data module's, else
                ``class_<k>``).
            ignore_index: Target value skipped by loss and metrics (None: none).
            loss: ``dal`` (distribution-aware loss), ``ohem`` (OHEM
                cross-entropy) or ``ce`` (cross-entropy).
            ohem_threshold: OHEM probability threshold.
            ohem_min_kept: OHEM minimum kept pixels per batch.
            optimizer: ``sgd`` (the paper) or ``adamw``.
            lr: Initial learning rate, decayed by the poly schedule per step.
            momentum: SGD momentum (AdamW beta1).
            weight_decay: Weight decay.
            poly_power: Exponent of the poly schedule
                ``lr * (1 - step / total_steps) ** poly_power``.
            tile_size: Training tile size, the default tile of tiled inference.
            model_kwargs: Further arguments of the model builder.

        Raises:
            ValueError: If the model is unknown or ``class_names`` has the wrong length.
        """
        get_model_builder(model)  # fail early on an unknown name
        if class_names is not None and len(class_names) != num_classes:
            raise ValueError(
                f'class_names has {len(class_names)} names for {num_classes} classes'
            )
        super().__init__()

    @property
    def in_channels(self) -> int:
        """Number of input bands the model expects."""
        return int(self.hparams['in_channels'])

    def configure_models(self) -> None:
        """Initialize the model."""
        kwargs = dict(self.hparams['model_kwargs'] or {})
        self.model: nn.Module = get_model(
            self.hparams['model'],
            in_channels=self.hparams['in_channels'],
            num_classes=self.hparams['num_classes'],
            **kwargs,
        )

    def configure_losses(self) -> None:
        """Initialize the loss criterion.

        Raises:
            ValueError: If the loss name is unknown.
        """
        ignore_index = self.hparams['ignore_index']
        match self.hparams['loss']:
            case 'dal':
                self.criterion: nn.Module = DistributionAwareLoss(
                    self.hparams['num_classes'], ignore_index
                )
            case 'ohem':
                self.criterion = OhemCrossEntropyLoss(
                    ignore_index,
                    self.hparams['ohem_threshold'],
                    self.hparams['ohem_min_kept'],
                )
            case 'ce':
                self.criterion = nn.CrossEntropyLoss(
                    ignore_index=-100 if ignore_index is None else ignore_index
                )
            case other:
                raise ValueError(f'unknown loss {other!r}; choose dal, ohem or ce')

    def configure_optimizers(self) -> OptimizerLRScheduler:
        """SGD (or AdamW) with a per-step poly learning-rate schedule.

        Returns:
            Optimizer and scheduler.
        """
        params = [p for p in self.parameters() if p.requires_grad]
        hp = self.hparams
        optimizer = build_optimizer(
            params, hp['optimizer'], hp['lr'], hp['momentum'], hp['weight_decay']
        )
        total, _ = schedule_steps(self._trainer)
        scheduler = poly(optimizer, total, hp['poly_power'])
        return {
            'optimizer': optimizer,
            'lr_scheduler': {'scheduler': scheduler, 'interval': 'step'},
        }

    def forward(self, x: Tensor) -> Tensor:
        """Compute logits.

        Args:
            x: Images (B, C, H, W).

        Returns:
            Logits (B, num_classes, H, W).
        """
        logits: Tensor = self.model(x)
        return logits

    def _logits_and_loss(
        self, x: Tensor, y: Tensor
    ) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
        logits = self(x)
        loss: Tensor = self.criterion(logits, y)
        return logits, loss, {}
