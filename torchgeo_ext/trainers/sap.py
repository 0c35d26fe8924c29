"""Pre-training SAP's self-supervised anomaly prior on HAD100, and scoring with it.

:class:`SAPPriorTask` trains :class:`~torchgeo_ext.models.sap.AnomalyPrior`
on anomaly-free training crops (any band count, e.g.
:class:`~torchgeo_ext.datamodules.had100.HAD100DataModule`'s): each crop
against its copy with pseudo-anomaly prisms (the pretext classification,
:func:`~torchgeo_ext.models.sap.prior_loss`, Adam). As in BSDM's
generalisation protocol, validation/test score whole scenes of other
sensors with the trained prior as is (``scene_steps: 0``) through
:func:`~torchgeo_ext.models.sap.sap_scores`, and log the anomaly AUCs
(:func:`~torchgeo_ext.metrics.anomaly.anomaly_metrics`). ``predict_step``
returns score maps under ``prediction``. :func:`load_sap_prior` returns the
trained prior of a checkpoint (``torchgeo-ext anomaly --method sap
--checkpoint``).
"""

from __future__ import annotations

import math
import os
from typing import Any

import torch
from lightning.pytorch.utilities.types import OptimizerLRScheduler
from torch import Tensor

from ..errors import InvalidInputError
from ..metrics.anomaly import anomaly_metrics
from ..models.sap import AnomalyPrior, prior_loss, sap_scores
from .base import PluginTask, load_task

__all__ = ('SAPPriorTask', 'load_sap_prior')


class SAPPriorTask(PluginTask):
    """Self-supervised pre-training of SAP's anomaly prior."""

    monitor = 'val_auc_df'
    mode = 'max'

    def __init__(
        self,
        features: int = 8,
        top_fraction: float = 0.02,
        rank: int = 3,
        lr: float = 1e-3,
        seed: int = 0,
        scene_steps: int = 0,
        clusters: int = 10,
        atoms: int = 20,
        purge: float = 0.05,
        iterations: int = 50,
    ) -> None:
        """Initialise a new SAPPriorTask.

        Args:
            features: Prior width (:class:`~torchgeo_ext.models.sap.AnomalyPrior`).
            top_fraction: Pixels making the prior's image logit.
            rank: Principal components removed from the prior's input.
            lr: Adam learning rate.
            seed: Seed of the prisms' generator.
            scene_steps: Self-supervised steps on each scored scene before
                scoring (0: the pre-trained prior as is).
            clusters: Dictionary k-means clusters (scoring).
            atoms: Dictionary atoms per cluster (scoring).
            purge: Fraction removed by the second purification (scoring).
            iterations: ALM iterations per pass (scoring).
        """
        super().__init__()

    def configure_models(self) -> None:
        """Build the prior."""
        hp = self.hparams
        self.model = AnomalyPrior(hp['features'], hp['top_fraction'])
        self.prisms = torch.Generator().manual_seed(hp['seed'])

    def configure_optimizers(self) -> OptimizerLRScheduler:
        """Adam.

        Returns:
            The optimizer.
        """
        return torch.optim.Adam(self.model.parameters(), lr=self.hparams['lr'])

    def training_step(
        self, batch: Any, batch_idx: int, dataloader_idx: int = 0
    ) -> Tensor:
        """The pretext loss on anomaly-free crops and their prism copies.

        Args:
            batch: Mini-batch with ``image`` (``B x C x H x W`` crops).
            batch_idx: Index of the batch.
            dataloader_idx: Index of the dataloader.

        Returns:
            The loss.
        """
        image = torch.nan_to_num(batch['image'].to(torch.float32))
        loss = prior_loss(self.model, image, self.prisms, self.hparams['rank'])
        self.log('train_loss', loss, batch_size=image.shape[0])
        return loss

    def score_scene(self, image: Tensor, valid_mask: Tensor | None = None) -> Tensor:
        """Score one ``C x H x W`` scene with the trained prior.

        Args:
            image: The scene.
            valid_mask: Optional ``H x W`` validity mask.

        Returns:
            ``H x W`` scores.
        """
        hp = self.hparams
        # Lightning evaluates under inference mode; scene fine-tuning needs
        # autograd on ordinary tensors.
        with torch.inference_mode(False), torch.enable_grad():
            return sap_scores(
                image.detach().clone(),
                valid_mask=None if valid_mask is None else valid_mask.clone(),
                prior=self.model,
                fit_steps=hp['scene_steps'],
                clusters=hp['clusters'],
                atoms=hp['atoms'],
                purge=hp['purge'],
                iterations=hp['iterations'],
                seed=hp['seed'],
            )

    def _evaluate(self, batch: dict[str, Any], stage: str) -> None:
        for i in range(batch['image'].shape[0]):
            valid = batch['valid_mask'][i] if 'valid_mask' in batch else None
            scores = self.score_scene(batch['image'][i], valid)
            target = batch['mask'][i]
            if not bool(target.any()) or bool(target.all()):
                continue  # AUC is undefined on a scene with one class
            for name, value in anomaly_metrics(scores, target, valid).items():
                if math.isfinite(value):
                    self.log(f'{stage}_{name}', value, batch_size=1, on_epoch=True)

    def validation_step(
        self, batch: Any, batch_idx: int, dataloader_idx: int = 0
    ) -> None:
        """Score the scene and log its metrics.

        Args:
            batch: One scene with ``image`` and ``mask``.
            batch_idx: Index of the batch.
            dataloader_idx: Index of the dataloader.
        """
        self._evaluate(batch, 'val')

    def test_step(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None:
        """Score the scene and log its metrics.

        Args:
            batch: One scene with ``image`` and ``mask``.
            batch_idx: Index of the batch.
            dataloader_idx: Index of the dataloader.
        """
        self._evaluate(batch, 'test')

    def predict_step(
        self, batch: Any, batch_idx: int, dataloader_idx: int = 0
    ) -> dict[str, Any]:
        """Score maps under ``prediction``, georeferencing passed through.

        Args:
            batch: Scenes with ``image`` (and optionally ``valid_mask``, ``crs``, ``transform``).
            batch_idx: Index of the batch.
            dataloader_idx: Index of the dataloader.

        Returns:
            The batch with ``prediction`` (float32 B x H x W).
        """
        scores = [
            self.score_scene(
                batch['image'][i],
                batch['valid_mask'][i] if 'valid_mask' in batch else None,
            )
            for i in range(batch['image'].shape[0])
        ]
        out = dict(batch)
        out['prediction'] = torch.stack(scores).to(batch['image'].device)
        return out


def load_sap_prior(checkpoint: str | os.PathLike[str]) -> AnomalyPrior:
    """The trained prior of a :class:`SAPPriorTask` checkpoint.

    Args:
        checkpoint: The checkpoint.

    Returns:
        The prior, in eval mode.

    Raises:
        InvalidInputError: If the checkpoint holds no SAP prior.
    """
    task = load_task(checkpoint)
    model = getattr(task, 'model', None)
    if not isinstance(model, AnomalyPrior):
        raise InvalidInputError(checkpoint, 'not a SAP prior checkpoint')
    model.eval()
    return model
