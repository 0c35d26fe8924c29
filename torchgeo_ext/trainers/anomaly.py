"""Hyperspectral anomaly detection task (BSDM, STAD) on HAD100-style scenes.

Training:

* ``method='stad'``: the transformer teacher learns to reconstruct the
  anomaly-free training crops from inputs carrying synthetic blob anomalies
  (``x * (1 + mask)``, sum of stage MSEs); the CNN student is distilled from
  the teacher's stage outputs in the same step; an EMA copy of the teacher
  (``ema_teacher``) is what scores scenes.
* ``method='bsdm'``: the denoiser learns pseudo-background noise on the
  training crops (t = 500, MSE), the statistical offset module letting it
  carry over to other scenes; at test/predict time each scene is further
  fitted on itself for ``scene_iterations`` steps (BSDM's unsupervised
  per-scene fitting; 0 uses the trained model as is).

Validation/test (batch size 1, whole scenes with ``mask``) log the mean over
scenes of ROC AUC(D,F), AUC(F,tau) and the background-suppression measures
(:mod:`torchgeo_ext.metrics.anomaly`). ``predict_step`` returns the batch
with the score map under ``prediction`` (B x H x W), ``crs``/``transform``
passed through so :class:`~torchgeo_ext.export.writer.GeoPredictionWriter`
can write georeferenced GeoTIFFs.
"""

from __future__ import annotations

import copy
import math
from typing import Any

import torch
import torch.nn.functional as F
from lightning.pytorch.utilities.types import OptimizerLRScheduler
from torch import Tensor

from ..metrics.anomaly import anomaly_metrics
from ..models.bsdm import (
    BSDM,
    GammaSchedule,
    align_bands,
    bsdm_scores,
    pseudo_background_noise,
)
from ..models.stad import (
    STADStudent,
    STADTeacher,
    distillation_loss,
    stad_scores,
    synthetic_blobs,
    teacher_loss,
)
from .base import PluginTask

__all__ = ('AnomalyDetectionTask',)

#: Metrics logged at validation and test time.
METRICS = ('auc_df', 'auc_dtau', 'auc_ftau', 'auc_bs', 'auc_snpr', 'auc_odp')


def _standardise(x: Tensor) -> Tensor:
    low = x.amin(dim=(1, 2, 3), keepdim=True)
    high = x.amax(dim=(1, 2, 3), keepdim=True)
    return (x - low) / (high - low).clamp_min(1e-12)


class AnomalyDetectionTask(PluginTask):
    """Unsupervised / anomaly-free-trained hyperspectral anomaly detection."""

    monitor = 'val_auc_df'
    mode = 'max'

    def __init__(
        self,
        method: str = 'stad',
        in_channels: int = 10,
        model_kwargs: dict[str, Any] | None = None,
        student_width: int = 32,
        lr: float = 1e-4,
        min_lr: float = 1e-5,
        ema_decay: float = 0.999,
        distill_weight: float = 1.0,
        blob_count: tuple[int, int] = (1, 32),
        blob_area: tuple[int, int] = (3, 20),
        diffusion_step: int = 500,
        repeats: int = 10,
        scene_iterations: int = 500,
        pixels_per_step: int = 1024,
        window: int = 64,
    ) -> None:
        """Initialise a new AnomalyDetectionTask.

        Args:
            method: ``'stad'`` or ``'bsdm'``.
            in_channels: Model band count; inputs with another count are
                resampled to it (channel alignment).
            model_kwargs: Extra arguments of :class:`~torchgeo_ext.models.bsdm.BSDM`
                or :class:`~torchgeo_ext.models.stad.STADTeacher`.
            student_width: STAD student hidden channels.
            lr: Learning rate (AdamW for BSDM, Adam for STAD).
            min_lr: Final learning rate of BSDM's cosine schedule.
            ema_decay: STAD teacher EMA decay.
            distill_weight: Weight of the student distillation loss.
            blob_count: STAD synthetic blobs per crop (inclusive range).
            blob_area: STAD blob area in pixels (inclusive range).
            diffusion_step: BSDM training/suppression step t.
            repeats: BSDM suppression steps.
            scene_iterations: BSDM per-scene fitting steps at test/predict time.
            pixels_per_step: BSDM pixels per scene-fitting step.
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
            self.student = STADStudent(hp['in_channels'], width=hp['student_width'])
            self.ema_teacher = copy.deepcopy(self.model)
            self.ema_teacher.requires_grad_(False)

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

    def _images(self, batch: dict[str, Any]) -> Tensor:
        """Batch images with bands aligned to the model and NaNs zeroed."""
        x = torch.nan_to_num(batch['image'].to(torch.float32))
        bands = self.hparams['in_channels']
        if x.shape[1] != bands:
            x = align_bands(x.permute(0, 2, 3, 1), bands).permute(0, 3, 1, 2)
        return x

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
        x = _standardise(self._images(batch))
        b, c, h, w = x.shape
        if self.hparams['method'] == 'bsdm':
            pixels = x.permute(0, 2, 3, 1).reshape(b, h * w, c)
            # Pseudo-background noise drawn from each crop's own band statistics.
            noise = torch.stack([pseudo_background_noise(p) for p in pixels]).reshape(
                -1, c
            )
            flat = pixels.reshape(-1, c)
            t = self.hparams['diffusion_step']
            noisy = self.schedule.sample(flat, t, noise)
            loss = F.mse_loss(self.model(noisy, torch.tensor([t])), noise)
            self.log('train_loss', loss, batch_size=b)
            return loss
        mask = synthetic_blobs(
            b,
            h,
            w,
            count=tuple(self.hparams['blob_count']),
            area=tuple(self.hparams['blob_area']),
        ).to(x)
        corrupted = x * (1 + mask)
        outputs = self.model(corrupted)
        loss_teacher = teacher_loss(outputs, x)
        loss_student = distillation_loss(self.student(corrupted), outputs)
        loss = loss_teacher + self.hparams['distill_weight'] * loss_student
        self.log('train_teacher_loss', loss_teacher, batch_size=b)
        self.log('train_student_loss', loss_student, batch_size=b)
        self.log('train_loss', loss, batch_size=b)
        return loss

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        """Update the STAD teacher's EMA copy."""
        if self.hparams['method'] != 'stad':
            return
        decay = self.hparams['ema_decay']
        with torch.no_grad():
            for ema, live in zip(
                self.ema_teacher.parameters(), self.model.parameters()
            ):
                ema.lerp_(live, 1 - decay)

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
        # STAD's saliency need autograd, on ordinary (non-inference) tensors.
        with torch.inference_mode(False), torch.enable_grad():
            image = image.detach().cpu().to(torch.float32).clone()
            mask = None if valid_mask is None else valid_mask.detach().cpu().clone()
            if hp['method'] == 'bsdm':
                model = self.model
                if hp['scene_iterations']:
                    model = copy.deepcopy(self.model).cpu()
                return bsdm_scores(
                    image,
                    valid_mask=mask,
                    model=model,  # type: ignore[arg-type]
                    iterations=hp['scene_iterations'],
                    batch_size=hp['pixels_per_step'],
                    t=hp['diffusion_step'],
                    repeats=hp['repeats'],
                )
            return stad_scores(
                image, model=self.ema_teacher, window=hp['window'], valid_mask=mask
            )

    def _evaluate(self, batch: dict[str, Any], stage: str) -> None:
        for i in range(batch['image'].shape[0]):
            valid = batch['valid_mask'][i] if 'valid_mask' in batch else None
            scores = self.score_scene(batch['image'][i], valid)
            target = batch['mask'][i].cpu()
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
