"""Patch classification task (HSI + LiDAR land cover: MIViT, M3amba)."""

from __future__ import annotations

import inspect
import warnings
from collections.abc import Sequence
from typing import Any, Literal

import torch
from lightning.pytorch.utilities.types import OptimizerLRScheduler
from torch import Tensor
from torch.optim.lr_scheduler import CosineAnnealingLR, StepLR
from torchmetrics import MetricCollection
from torchmetrics.classification import MulticlassAccuracy, MulticlassCohenKappa

from ..losses.classification import (
    distillation_loss,
    information_aggregation_loss,
    mivit_class_weights,
    reconstruction_loss,
    softmax_focal_loss,
)
from ..models.api import get_model, get_model_builder
from .base import PluginTask
from .optimization import build_optimizer, schedule_epochs

__all__ = ['PatchClassificationTask']


class PatchClassificationTask(PluginTask):
    """Classify the centre pixels of multimodal patches (MIViT, M3amba).

    Trains a patch classifier of the registry on batches of patches around
    labelled pixels (``image``, ``label``), e.g. from
    :class:`~torchgeo_ext.datamodules.houston2013.Houston2013DataModule`. The
    loss is the sum of the terms the model's outputs allow:

    * focal loss on ``logits`` (MIViT's classification loss; ``focal_gamma=0``
      gives cross-entropy), optionally with MIViT's class weights;
    * ``aux_weight`` x focal loss on every ``aux_logits`` entry (MIViT's
      modality classifiers, M3amba's CLIP text-similarity logits);
    * ``distillation_weight`` x KL from ``logits`` to every ``aux_logits``
      entry (MIViT's information distribution flow);
    * ``reconstruction_weight`` x MSE of ``reconstruction`` against
      ``reconstruction_target`` (MIViT's decoder);
    * ``mi_weight`` x the information aggregation constraint on ``features``
      (``hsi``, ``lidar``, ``fused``; MIViT).

    Metrics, per stage: overall accuracy (``OA``), average (mean per-class)
    accuracy (``AA``), Cohen's ``kappa`` and ``accuracy_<class>``. Predictions
    (``prediction_label``, ``prediction_score``) keep the batch's
    ``row``/``col`` so that a whole-scene map can be assembled
    (:func:`torchgeo_ext.pipelines.classification.classify_scene`).
    """

    monitor = 'val_OA'
    mode = 'max'
    models = ('mivit_base', 'mivit_tiny', 'm3amba_base', 'm3amba_tiny')

    def __init__(
        self,
        model: str = 'mivit_base',
        hsi_bands: int = 144,
        lidar_bands: int = 1,
        num_classes: int = 15,
        class_names: Sequence[str] | None = None,
        model_kwargs: dict[str, Any] | None = None,
        focal_gamma: float = 2.0,
        class_weighting: Literal['none', 'mivit'] = 'none',
        aux_weight: float = 0.3,
        distillation_weight: float = 1.0,
        reconstruction_weight: float = 5.0,
        mi_weight: float = 0.1,
        mi_weights: tuple[float, float] = (0.5, 0.5),
        prediction_head: str = 'fused',
        optimizer: Literal['sgd', 'adam', 'adamw'] = 'adam',
        lr: float = 1e-4,
        weight_decay: float = 1e-3,
        scheduler: Literal['step', 'cosine', 'none'] = 'step',
        step_size: int | None = None,
        gamma: float = 0.9,
    ) -> None:
        """Initialise a new PatchClassificationTask.

        Args:
            model: Builder name (``mivit_base``, ``mivit_tiny``,
                ``m3amba_base``, ``m3amba_tiny``, see
                :func:`~torchgeo_ext.models.api.list_models`).
            hsi_bands: HSI bands (first in ``image``).
            lidar_bands: LiDAR bands (after the HSI bands).
            num_classes: Number of classes.
            class_names: Class names (metric keys; M3amba's text prompts).
            model_kwargs: Extra builder arguments (e.g. ``clip_weights``).
            focal_gamma: Focusing exponent of the focal loss.
            class_weighting: ``'mivit'``: MIViT's class weights from the
                training split's counts (read from the data module at fit
                start); ``'none'``.
            aux_weight: Weight of the auxiliary classifiers' focal losses.
            distillation_weight: Weight of the distillation into them.
            reconstruction_weight: Weight of the reconstruction loss.
            mi_weight: Weight of the mutual-information constraint.
            mi_weights: ``(w1, w2)`` inside that constraint.
            prediction_head: ``'fused'`` (``logits``) or an ``aux_logits`` name
                (e.g. ``'hsi'`` when the LiDAR is missing) for predictions
                and metrics.
            optimizer: ``'adam'`` (MIViT), ``'adamw'`` or ``'sgd'``.
            lr: Learning rate.
            weight_decay: Weight decay.
            scheduler: ``'step'`` (StepLR, MIViT), ``'cosine'`` or ``'none'``.
            step_size: StepLR period in epochs (default: a tenth of the
                trainer's ``max_epochs``).
            gamma: StepLR factor.
        """
        self.class_weights: Tensor | None = None
        super().__init__()

    def configure_models(self) -> None:
        """Build the model through the registry."""
        h = self.hparams
        kwargs = dict(h['model_kwargs'] or {})
        builder = get_model_builder(h['model'])
        parameters = inspect.signature(builder).parameters
        if h['class_names'] is not None and 'class_names' in parameters:
            kwargs.setdefault('class_names', list(h['class_names']))
        self.model = get_model(
            h['model'],
            hsi_bands=h['hsi_bands'],
            lidar_bands=h['lidar_bands'],
            num_classes=h['num_classes'],
            **kwargs,
        )

    def build_metrics(self) -> MetricCollection:
        """OA, AA, kappa and per-class accuracy (``<stage>_accuracy_<class>``).

        Returns:
            The collection.
        """
        k = self.hparams['num_classes']
        return MetricCollection(
            {
                'OA': MulticlassAccuracy(k, average='micro'),
                'AA': MulticlassAccuracy(k, average='macro'),
                'kappa': MulticlassCohenKappa(k),
                'accuracy': MulticlassAccuracy(k, average='none'),
            }
        )

    def configure_optimizers(self) -> OptimizerLRScheduler:
        """The optimiser and schedule of the hyperparameters.

        Returns:
            Optimizer and, unless ``scheduler='none'``, its epoch scheduler.
        """
        h = self.hparams
        params = [p for p in self.parameters() if p.requires_grad]
        optimizer = build_optimizer(
            params, h['optimizer'], lr=h['lr'], weight_decay=h['weight_decay']
        )
        if h['scheduler'] == 'none':
            return optimizer
        epochs = schedule_epochs(self._trainer)
        if h['scheduler'] == 'step':
            step = h['step_size'] or max(1, epochs // 10)
            scheduler: Any = StepLR(optimizer, step_size=step, gamma=h['gamma'])
        else:
            scheduler = CosineAnnealingLR(optimizer, T_max=epochs)
        return {'optimizer': optimizer, 'lr_scheduler': scheduler}

    def on_fit_start(self) -> None:
        """Compute MIViT's class weights from the training split if asked."""
        if self.hparams['class_weighting'] != 'mivit':
            return
        dataset = getattr(
            getattr(self.trainer, 'datamodule', None), 'train_dataset', None
        )
        labels = getattr(dataset, 'labels', None)
        if labels is None:
            warnings.warn(
                'class_weighting="mivit" needs a data module whose train_dataset has '
                '`labels`; training without class weights',
                stacklevel=2,
            )
            return
        counts = torch.bincount(
            torch.as_tensor(labels), minlength=self.hparams['num_classes']
        )
        self.class_weights = mivit_class_weights(counts).to(self.device)

    def forward(self, x: Tensor) -> dict[str, Any]:  # type: ignore[override]
        """Run the model.

        Args:
            x: B x C x P x P patches.

        Returns:
            The model's outputs (``logits`` and the model's extra outputs).
        """
        out: dict[str, Any] = self.model(x)
        return out

    def compute_loss(self, out: dict[str, Any], target: Tensor) -> dict[str, Tensor]:
        """The total loss and its terms.

        Args:
            out: Model outputs.
            target: B class indices.

        Returns:
            ``loss`` and the terms that apply (``focal``, ``aux``,
            ``distillation``, ``reconstruction``, ``mi``).
        """
        h = self.hparams
        weight = self.class_weights
        gamma = h['focal_gamma']
        terms: dict[str, Tensor] = {
            'focal': softmax_focal_loss(out['logits'], target, gamma, weight)
        }
        loss = terms['focal']
        aux = out.get('aux_logits') or {}
        if aux:
            terms['aux'] = torch.stack(
                [softmax_focal_loss(a, target, gamma, weight) for a in aux.values()]
            ).sum()
            terms['distillation'] = torch.stack(
                [distillation_loss(a, out['logits']) for a in aux.values()]
            ).sum()
            loss = (
                loss
                + h['aux_weight'] * terms['aux']
                + h['distillation_weight'] * terms['distillation']
            )
        if out.get('reconstruction'):
            terms['reconstruction'] = reconstruction_loss(
                out['reconstruction'], out['reconstruction_target']
            )
            loss = loss + h['reconstruction_weight'] * terms['reconstruction']
        features = out.get('features')
        if h['mi_weight'] and features and target.numel() > 1:
            terms['mi'] = information_aggregation_loss(
                features['hsi'],
                features['lidar'],
                features['fused'],
                tuple(h['mi_weights']),
            )
            loss = loss + h['mi_weight'] * terms['mi']
        terms['loss'] = loss
        return terms

    def _logits(self, out: dict[str, Any]) -> Tensor:
        head = self.hparams['prediction_head']
        if head == 'fused':
            logits: Tensor = out['logits']
            return logits
        aux = out.get('aux_logits') or {}
        if head not in aux:
            raise ValueError(
                f'prediction_head {head!r} is not an output of this model '
                f'(choose fused or one of {sorted(aux)})'
            )
        logits = aux[head]
        return logits

    def _step(self, batch: dict[str, Any], stage: str) -> Tensor:
        target = batch['label'].reshape(-1).long()
        out = self(batch['image'])
        terms = self.compute_loss(out, target)
        self.log_losses(terms, stage, target.shape[0])
        self.stage_metrics(stage).update(self._logits(out).detach().argmax(1), target)
        return terms['loss']

    def training_step(
        self, batch: Any, batch_idx: int, dataloader_idx: int = 0
    ) -> Tensor:
        """Compute the training loss.

        Args:
            batch: Patch batch.
            batch_idx: Batch index.
            dataloader_idx: Data loader index.

        Returns:
            The loss.
        """
        return self._step(batch, 'train')

    def validation_step(
        self, batch: Any, batch_idx: int, dataloader_idx: int = 0
    ) -> None:
        """Compute the validation loss and update the metrics.

        Args:
            batch: Patch batch.
            batch_idx: Batch index.
            dataloader_idx: Data loader index.
        """
        self._step(batch, 'val')

    def test_step(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None:
        """Compute the test loss and update the metrics.

        Args:
            batch: Patch batch.
            batch_idx: Batch index.
            dataloader_idx: Data loader index.
        """
        self._step(batch, 'test')

    @torch.no_grad()
    def classify(self, x: Tensor) -> Tensor:
        """Class probabilities of patches (``prediction_head``), in eval mode.

        Args:
            x: B x C x P x P patches.

        Returns:
            B x K probabilities.
        """
        return self._logits(self(x)).float().softmax(dim=1)

    def predict_step(
        self, batch: Any, batch_idx: int, dataloader_idx: int = 0
    ) -> dict[str, Any]:
        """Predict the classes of a batch.

        Args:
            batch: Patch batch.
            batch_idx: Batch index.
            dataloader_idx: Data loader index.

        Returns:
            ``prediction_label`` (B), ``prediction_score`` (B, the class
            probability), the batch's ``row``/``col`` and its pass-through
            keys (``crs``, ``transform``, ...) if present.
        """
        probs = self.classify(batch['image'])
        score, label = probs.max(dim=1)
        out: dict[str, Any] = {'prediction_label': label, 'prediction_score': score}
        for key in ('row', 'col'):
            if key in batch:
                out[key] = batch[key]
        return self.passthrough(batch, out)
