"""Pre-training SAP's self-supervised anomaly prior on HAD100, and scoring with it."""

from __future__ import annotations

import os
from typing import Any

import torch
from lightning.pytorch.utilities.types import OptimizerLRScheduler
from torch import Tensor

from ..models.api import get_model
from ..models.sap import AnomalyPrior, prior_loss, sap_scores
from .anomaly import AnomalyTaskBase
from .base import load_task_model

__all__ = ('SAPPriorTask', 'load_sap_prior')


class SAPPriorTask(AnomalyTaskBase):
    """Self-supervised pre-training of SAP's anomaly prior.

    Trains :class:`~torchgeo_ext.models.sap.AnomalyPrior` on anomaly-free
    training crops (any band count, e.g.
    :class:`~torchgeo_ext.datamodules.had100.HAD100DataModule`'s): each crop
    against its copy with pseudo-anomaly prisms (the pretext classification,
    :func:`~torchgeo_ext.models.sap.prior_loss`, Adam). As in BSDM's
    generalisation protocol, validation/test score whole scenes of other
    sensors with the trained prior as is (``scene_steps: 0``) through
    :func:`~torchgeo_ext.models.sap.sap_scores`. :func:`load_sap_prior` returns
    the trained prior of a checkpoint (``torchgeo-ext anomaly --method sap
    --checkpoint``).
    """

    models = ('sap_prior',)

    def __init__(
        self,
        model: str = 'sap_prior',
        model_kwargs: dict[str, Any] | None = None,
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
            model: ``'sap_prior'``.
            model_kwargs: Further :class:`~torchgeo_ext.models.sap.AnomalyPrior`
                arguments (``features``, ``top_fraction``).
            rank: Principal components removed from the prior's input.
            lr: Adam learning rate.
            seed: Seed of the prisms' generator (and of scene scoring).
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
        self.model: AnomalyPrior = get_model(hp['model'], **(hp['model_kwargs'] or {}))
        self.prisms = torch.Generator().manual_seed(hp['seed'])

    def configure_optimizers(self) -> OptimizerLRScheduler:
        """Adam.

        Returns:
            The optimizer.
        """
        return torch.optim.Adam(self.model.parameters(), lr=self.hparams['lr'])

    def compute_loss(self, image: Tensor) -> dict[str, Tensor]:
        """The pretext loss on anomaly-free crops and their prism copies.

        Args:
            image: ``B x C x H x W`` anomaly-free crops.

        Returns:
            ``loss``.
        """
        rank = self.hparams['rank']
        return {'loss': prior_loss(self.model, image, self.prisms, rank)}

    def _score(self, image: Tensor, valid_mask: Tensor | None) -> Tensor:
        hp = self.hparams
        return sap_scores(
            image,
            valid_mask=valid_mask,
            prior=self.model,
            fit_steps=hp['scene_steps'],
            clusters=hp['clusters'],
            atoms=hp['atoms'],
            purge=hp['purge'],
            iterations=hp['iterations'],
            seed=hp['seed'],
        )


def load_sap_prior(checkpoint: str | os.PathLike[str]) -> AnomalyPrior:
    """The trained prior of a :class:`SAPPriorTask` checkpoint.

    Args:
        checkpoint: The checkpoint.

    Returns:
        The prior, in eval mode.

    Raises:
        InvalidInputError: If the checkpoint holds no SAP prior.
    """
    return load_task_model(checkpoint, AnomalyPrior, 'not a SAP prior checkpoint')
