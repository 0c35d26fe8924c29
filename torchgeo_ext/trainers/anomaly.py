"""Hyperspectral anomaly detection task (BSDM, STAD) on HAD100-style scenes.

Training, as in the authors' code unless said otherwise:

* ``method='stad'``: the transformer teacher learns to reconstruct the
  anomaly-free training crops (each min-max normalised, first
  ``in_channels`` bands) from inputs carrying the authors' synthetic blobs
  (``x * (1 + mask)``, sum of stage MSEs, Adam); an EMA (decay 0.99, the
  shared :class:`~torchgeo_ext.trainers.optimization.ExponentialMovingAverage`,
  BatchNorm buffers averaged) of the teacher is what scores scenes. The
  authors distil the convolutional student afterwards from the finished
  teacher; here it is distilled in the same step from the EMA teacher's
  reconstructions of the clean crop (stage-wise MSE), and its own EMA
  (decay 0.9) is kept.
* ``method='bsdm'``: the denoiser learns pseudo-background noise at t = 500
  on the training crops, each crop min-max normalised with its own scalar
  noise mean and standard deviation (the authors' per-scene recipe; the
  noise is drawn afresh each step, since one fixed draw per crop would need
  a per-sample cache). Crops with another band count are aligned with the
  authors' channel alignment (:func:`~torchgeo_ext.models.bsdm.channel_groups`).
  At test/predict time each scene is fitted on itself for
  ``scene_iterations`` steps (0: the trained model as is, the authors'
  generalisation protocol).

Validation/test (batch size 1, whole scenes with ``mask``) log the mean over
scenes of rank ROC AUC(D,F), the authors' 30,000-threshold AUC(D,F),
AUC(F,tau) and the background-suppression measures
(:mod:`torchgeo_ext.metrics.anomaly`). ``predict_step`` returns the batch
with the score map under ``prediction`` (B x H x W), ``crs``/``transform``
passed through so :class:`~torchgeo_ext.export.writer.GeoPredictionWriter`
can write georeferenced GeoTIFFs. :func:`load_bsdm` and :func:`load_stad`
return the trained model of a checkpoint.
"""

from __future__ import annotations

import math
import os
from typing import Any

import torch
import torch.nn.functional as F
from lightning.pytorch.utilities.types import OptimizerLRScheduler
from torch import Tensor

from ..errors import InvalidInputError
from ..losses.anomaly import stad_distillation_loss, stad_teacher_loss
from ..metrics.anomaly import anomaly_metrics
from ..models.bsdm import (
    BSDM,
    GammaSchedule,
    bsdm_scores,
    channel_groups,
    pseudo_background_noise,
)
from ..models.stad import (
    STADStudent,
    STADTeacher,
    _standardise,
    select_bands,
    stad_scores,
    synthetic_blobs,
)
from .base import PluginTask, load_task
from .optimization import ExponentialMovingAverage

__all__ = ('AnomalyDetectionTask', 'load_bsdm', 'load_stad')

#: Metrics logged at validation and test time.
METRICS = (
    'auc_df',
    'auc_df_30k',
    'auc_dtau',
    'auc_ftau',
    'auc_bs',
    'auc_snpr',
    'auc_odp',
)


class AnomalyDetectionTask(PluginTask):
    """Unsupervised / anomaly-free-trained hyperspectral anomaly detection."""

    monitor = 'val_auc_df'
    mode = 'max'

    def __init__(
        self,
        method: str = 'stad',
        in_channels: int = 10,
        model_kwargs: dict[str, Any] | None = None,
        student_width: int = 100,
        lr: float = 1e-4,
        min_lr: float = 1e-5,
        ema_decay: float = 0.99,
        student_ema_decay: float = 0.9,
        distill_weight: float = 1.0,
        blob_count: tuple[int, int] = (1, 32),
        blob_area: tuple[int, int] = (3, 20),
        diffusion_step: int = 500,
        repeats: int = 10,
        scene_iterations: int = 500,
        pixels_per_step: int | None = None,
        window: int = 64,
    ) -> None:
        """Initialise a new AnomalyDetectionTask.

        Args:
            method: ``'stad'`` or ``'bsdm'``.
            in_channels: Model band count; inputs with another count are
                aligned to it (BSDM: the authors' channel alignment; STAD:
                the first ``in_channels`` bands).
            model_kwargs: Extra arguments of :class:`~torchgeo_ext.models.bsdm.BSDM`
                or :class:`~torchgeo_ext.models.stad.STADTeacher`.
            student_width: STAD student hidden channels (the authors': 100).
            lr: Learning rate (AdamW for BSDM, Adam for STAD).
            min_lr: Final learning rate of BSDM's cosine schedule.
            ema_decay: STAD teacher EMA decay (the authors': 0.99).
            student_ema_decay: STAD student EMA decay (the authors': 0.9).
            distill_weight: Weight of the student distillation loss.
            blob_count: STAD synthetic blobs per crop (inclusive range).
            blob_area: STAD blob area in pixels (inclusive range).
            diffusion_step: BSDM training/suppression step t.
            repeats: BSDM suppression steps.
            scene_iterations: BSDM per-scene fitting steps at test/predict time.
            pixels_per_step: BSDM pixels per scene-fitting step (``None``:
                every pixel, the authors').
            window: STAD attention window at test/predict time.
        """
        if method not in ('stad', 'bsdm'):
            raise ValueError(f"method must be 'stad' or 'bsdm', got {method!r}")
        super().__init__()

    def configure_models(self) -> None:
        """Build the model(s)."""
        hp = self.hparams
        kwargs = dict(hp['model_kwargs'] or {})
        if hp['method'] == 'bsdm':
            self.model: torch.nn.Module = BSDM(hp['in_channels'], **kwargs)
            self.schedule = GammaSchedule()
        else:
            self.model = STADTeacher(hp['in_channels'], **kwargs)
            stages = len(self.model.stages)
            self.student = STADStudent(
                hp['in_channels'], stages=stages, width=hp['student_width']
            )
            self.ema_teacher = ExponentialMovingAverage(
                self.model, decay=hp['ema_decay'], tau=None
            )
            self.ema_student = ExponentialMovingAverage(
                self.student, decay=hp['student_ema_decay'], tau=None
            )

    def configure_optimizers(self) -> OptimizerLRScheduler:
        """AdamW + cosine (BSDM) or Adam (STAD: teacher and student).

        Returns:
            Optimizer and scheduler.
        """
        hp = self.hparams
        if hp['method'] == 'stad':
            return torch.optim.Adam(
                [*self.model.parameters(), *self.student.parameters()], lr=hp['lr']
            )
        optimizer = torch.optim.AdamW(self.model.parameters(), lr=hp['lr'])
        total = max(int(self.trainer.estimated_stepping_batches), 1)
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(
            optimizer, T_max=total, eta_min=hp['min_lr']
        )
        return {
            'optimizer': optimizer,
            'lr_scheduler': {'scheduler': scheduler, 'interval': 'step'},
        }

    def training_step(
        self, batch: Any, batch_idx: int, dataloader_idx: int = 0
    ) -> Tensor:
        """One training step.

        Args:
            batch: Mini-batch with ``image`` (anomaly-free crops).
            batch_idx: Index of the batch.
            dataloader_idx: Index of the dataloader.

        Returns:
            The loss.
        """
        image = torch.nan_to_num(batch['image'].to(torch.float32))
        bands = self.hparams['in_channels']
        if self.hparams['method'] == 'bsdm':
            return self._bsdm_step(image, bands)
        x = _standardise(select_bands(image, bands))
        b, _, h, w = x.shape
        mask = synthetic_blobs(
            b,
            h,
            w,
            count=tuple(self.hparams['blob_count']),
            area=tuple(self.hparams['blob_area']),
        ).to(x)
        loss_teacher = stad_teacher_loss(self.model(x * (1 + mask)), x)
        teacher = self.ema_teacher.module
        teacher.eval()
        with torch.no_grad():
            targets = teacher(x)
        loss_student = stad_distillation_loss(self.student(x), targets)
        loss = loss_teacher + self.hparams['distill_weight'] * loss_student
        self.log('train_teacher_loss', loss_teacher, batch_size=b)
        self.log('train_student_loss', loss_student, batch_size=b)
        self.log('train_loss', loss, batch_size=b)
        return loss

    def _bsdm_step(self, image: Tensor, bands: int) -> Tensor:
        """Noise MSE at t on min-max crops with their own scalar noise statistics."""
        b, c, h, w = image.shape
        x = _standardise(image)
        groups = channel_groups(c, bands)
        pixels = torch.cat(
            [x[:, g].permute(0, 2, 3, 1).reshape(b, h * w, bands) for g in groups],
            dim=1,
        )
        noise = torch.stack([pseudo_background_noise(p) for p in pixels])
        t = self.hparams['diffusion_step']
        noisy = self.schedule.sample(pixels, t, noise)
        step = torch.tensor([t], device=noisy.device)
        predicted = self.model(noisy.reshape(-1, bands), step)
        loss = F.mse_loss(predicted, noise.reshape(-1, bands))
        self.log('train_loss', loss, batch_size=b)
        return loss

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        """Update the STAD EMA copies."""
        if self.hparams['method'] != 'stad':
            return
        self.ema_teacher.update_parameters(self.model)
        self.ema_student.update_parameters(self.student)

    def score_scene(self, image: Tensor, valid_mask: Tensor | None = None) -> Tensor:
        """Score one ``C x H x W`` scene.

        Args:
            image: The scene.
            valid_mask: Optional ``H x W`` validity mask.

        Returns:
            ``H x W`` scores.
        """
        hp = self.hparams
        # Lightning evaluates under inference mode; BSDM's scene fitting and
        # STAD's saliency need autograd, on ordinary (non-inference) tensors,
        # on the model's device.
        with torch.inference_mode(False), torch.enable_grad():
            image = image.detach().to(self.device, torch.float32).clone()
            mask = None if valid_mask is None else valid_mask.detach().clone()
            if hp['method'] == 'bsdm':
                return bsdm_scores(
                    image,
                    valid_mask=mask,
                    model=self.model,  # type: ignore[arg-type]
                    iterations=hp['scene_iterations'],
                    batch_size=hp['pixels_per_step'],
                    t=hp['diffusion_step'],
                    repeats=hp['repeats'],
                )
            return stad_scores(
                image,
                model=self.ema_teacher.module,
                window=hp['window'],
                valid_mask=mask,
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


def load_bsdm(checkpoint: str | os.PathLike[str]) -> BSDM:
    """The BSDM model of an anomaly-task checkpoint.

    Args:
        checkpoint: Checkpoint of :class:`AnomalyDetectionTask`.

    Returns:
        The model, in eval mode.

    Raises:
        InvalidInputError: If the checkpoint holds no BSDM model.
    """
    task = load_task(checkpoint)
    model = getattr(task, 'model', None)
    if not isinstance(model, BSDM):
        raise InvalidInputError(checkpoint, 'not a BSDM checkpoint (model is not BSDM)')
    model.eval()
    return model


def load_stad(
    checkpoint: str | os.PathLike[str], student: bool = False
) -> STADTeacher | STADStudent:
    """The STAD teacher or student (their EMA weights) of an anomaly-task checkpoint.

    Args:
        checkpoint: Checkpoint of :class:`AnomalyDetectionTask`.
        student: Return the distilled student instead of the teacher.

    Returns:
        The model, in eval mode.

    Raises:
        InvalidInputError: If the checkpoint holds no STAD model.
    """
    task = load_task(checkpoint)
    average = getattr(task, 'ema_student' if student else 'ema_teacher', None)
    model = getattr(average, 'module', None)
    if not isinstance(model, STADStudent | STADTeacher):
        raise InvalidInputError(
            checkpoint, 'not a STAD checkpoint (no STAD teacher/student)'
        )
    model.eval()
    return model
