"""Semantic segmentation task (DIAnet cloud recognition on FYH and similar data)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

from lightning.pytorch.utilities.types import OptimizerLRScheduler
from torch import Tensor, nn
from torchmetrics import MetricCollection
from torchmetrics.classification import MulticlassAccuracy, MulticlassJaccardIndex

from ..losses.segmentation import DistributionAwareLoss, OhemCrossEntropyLoss
from ..models.api import get_model
from .base import PluginTask
from .optimization import build_optimizer, poly, schedule_steps

__all__ = ['SegmentationTask', 'SemanticSegmentationBase']


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
    :meth:`compute_loss` (a batch's logits, loss and loss terms). This
    base logs ``<stage>_loss`` and the terms per step, ``<stage>_mIoU`` (mean over the classes other than the ignore index),
    ``<stage>_accuracy`` (pixel accuracy) and one ``<stage>_IoU_<class name>``
    per class (non-alphanumeric runs of the name replaced by ``_``) at each
    epoch's end, and ``predict_step`` returns ``prediction`` (B, H, W) class
    ids plus the batch's :attr:`~PluginTask.passthrough_keys`.
    """

    monitor = 'val_mIoU'
    mode = 'max'

    def build_metrics(self) -> MetricCollection:
        """IoU per class and pixel accuracy, the ignore index left out.

        Returns:
            The collection.
        """
        num_classes = self.hparams['num_classes']
        ignore_index = self.hparams['ignore_index']
        return MetricCollection(
            {
                'IoU': MulticlassJaccardIndex(
                    num_classes, average='none', ignore_index=ignore_index
                ),
                'accuracy': MulticlassAccuracy(
                    num_classes, average='micro', ignore_index=ignore_index
                ),
            }
        )

    def loggable_metrics(self, values: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """Per-class IoU and the mIoU, both without the ignore class.

        Args:
            values: The collection's computed values.

        Returns:
            Metric name to scalar.
        """
        ignore_index = self.hparams['ignore_index']
        values = dict(values)
        derived = {}
        for key, iou in list(values.items()):
            if not key.endswith('IoU'):
                continue
            keep = [k for k in range(len(iou)) if k != ignore_index]
            derived[f'{key[: -len("IoU")]}mIoU'] = iou[keep].mean()
            values[key] = iou.clone()
            if ignore_index is not None and 0 <= ignore_index < len(iou):
                values[key][ignore_index] = float('nan')  # not logged
        return {**super().loggable_metrics(values), **derived}

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

    def compute_loss(self, x: Tensor, y: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        """Run the model on a batch and compute its loss.

        Args:
            x: Images (B, C, H, W).
            y: Targets (B, H, W) int64.

        Returns:
            The logits (B, num_classes, H, W), and the loss under ``'loss'``
            with its terms.
        """
        raise NotImplementedError

    def _shared_step(self, batch: dict[str, Any], stage: str) -> Tensor:
        x, y = batch['image'], self._target(batch)
        logits, terms = self.compute_loss(x, y)
        ignore_index = self.hparams['ignore_index']
        preds = _without_class(logits.detach(), ignore_index).argmax(dim=1)
        self.stage_metrics(stage).update(preds, y)
        self.log_losses(terms, stage, x.shape[0])
        return terms['loss']

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

    Trains the paper segmentation models of :mod:`torchgeo_ext.models` with
    their losses; class maps keep each sample's georeferencing (``transform``,
    ``crs``) so that :class:`~torchgeo_ext.export.writer.GeoPredictionWriter`
    and ``torchgeo-ext segment`` write them as GeoTIFFs.

    Logs ``<stage>_loss``, ``<stage>_mIoU`` (mean over the classes other than
    the ignore index), ``<stage>_accuracy`` (pixel accuracy) and one
    ``<stage>_IoU_<class name>`` per class (non-alphanumeric runs of the
    name replaced by ``_``). ``predict_step`` returns
    ``prediction`` (B, H, W) class ids plus the batch's georeferencing keys.
    """

    models = ('dianet_w48', 'dianet_w18', 'dianet_w8')

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
        """Initialise a new SegmentationTask.

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
        """
        super().__init__()

    @property
    def in_channels(self) -> int:
        """Number of input bands the model expects."""
        return int(self.hparams['in_channels'])

    def configure_models(self) -> None:
        """Initialise the model."""
        kwargs = dict(self.hparams['model_kwargs'] or {})
        self.model: nn.Module = get_model(
            self.hparams['model'],
            in_channels=self.hparams['in_channels'],
            num_classes=self.hparams['num_classes'],
            **kwargs,
        )

    def configure_losses(self) -> None:
        """Initialise the loss criterion.

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

    def compute_loss(self, x: Tensor, y: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        """The model's logits and its loss.

        Args:
            x: Images (B, C, H, W).
            y: Targets (B, H, W) int64.

        Returns:
            The logits and ``{'loss': loss}``.
        """
        logits = self(x)
        loss: Tensor = self.criterion(logits, y)
        return logits, {'loss': loss}
