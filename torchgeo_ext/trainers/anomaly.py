"""Hyperspectral anomaly detection tasks on HAD100-style scenes: BSDM and STAD."""

from __future__ import annotations

import inspect
import os
import warnings
from typing import Any

import torch
import torch.nn.functional as F
from lightning.pytorch.utilities.types import OptimizerLRScheduler
from torch import Tensor
from torchmetrics import MetricCollection

from ..losses.anomaly import stad_distillation_loss, stad_teacher_loss
from ..metrics.anomaly import AnomalyMetrics
from ..models.api import get_model
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
from .base import PluginTask, load_task_model
from .optimization import ExponentialMovingAverage, schedule_steps

__all__ = ('AnomalyDetectionTask', 'BSDMTask', 'STADTask', 'load_bsdm', 'load_stad')


class AnomalyTaskBase(PluginTask):
    """What the anomaly tasks share: scene scoring in evaluation and prediction.

    Validation/test (batch size 1, whole scenes with ``mask``) log the mean over
    scenes of rank ROC AUC(D,F), the authors' 30,000-threshold AUC(D,F),
    AUC(F,tau) and the background-suppression measures
    (:class:`~torchgeo_ext.metrics.anomaly.AnomalyMetrics`). ``predict_step``
    returns the batch with the score map under ``prediction`` (B x H x W), and
    ``crs``/``transform`` passed through so that
    :class:`~torchgeo_ext.export.writer.GeoPredictionWriter` can write
    georeferenced GeoTIFFs.
    """

    monitor = 'val_auc_df'
    mode = 'max'

    def build_metrics(self) -> MetricCollection:
        """The anomaly measures, averaged over scenes.

        Returns:
            The collection.
        """
        return MetricCollection({'anomaly': AnomalyMetrics()})

    def score_scene(self, image: Tensor, valid_mask: Tensor | None = None) -> Tensor:
        """Score one ``C x H x W`` scene, on the model's device.

        Args:
            image: The scene.
            valid_mask: Optional ``H x W`` validity mask.

        Returns:
            ``H x W`` scores.
        """
        # Lightning evaluates under inference mode; BSDM's scene fitting and
        # STAD's saliency need autograd, on ordinary (non-inference) tensors.
        with torch.inference_mode(False), torch.enable_grad():
            image = image.detach().to(self.device, torch.float32).clone()
            mask = None if valid_mask is None else valid_mask.detach().clone()
            return self._score(image, mask)

    def _score(self, image: Tensor, valid_mask: Tensor | None) -> Tensor:
        raise NotImplementedError

    def compute_loss(self, x: Tensor) -> dict[str, Tensor]:
        """The loss terms of a batch of prepared crops (``'loss'``: their total)."""
        raise NotImplementedError

    def prepare_crops(self, image: Tensor) -> Tensor:
        """What the loss sees of a batch of crops (default: the crops themselves).

        Args:
            image: ``B x C x H x W`` float32 crops, NaN replaced by 0.

        Returns:
            The loss's input.
        """
        return image

    def training_step(
        self, batch: Any, batch_idx: int, dataloader_idx: int = 0
    ) -> Tensor:
        """One training step on anomaly-free crops.

        Args:
            batch: Mini-batch with ``image`` (anomaly-free crops).
            batch_idx: Index of the batch.
            dataloader_idx: Index of the dataloader.

        Returns:
            The loss.
        """
        x = self.prepare_crops(torch.nan_to_num(batch['image'].to(torch.float32)))
        terms = self.compute_loss(x)
        self.log_losses(terms, 'train', x.shape[0])
        return terms['loss']

    def _evaluate(self, batch: dict[str, Any], stage: str) -> None:
        metrics = self.stage_metrics(stage)
        for i in range(batch['image'].shape[0]):
            valid = batch['valid_mask'][i] if 'valid_mask' in batch else None
            scores = self.score_scene(batch['image'][i], valid)
            metrics.update(scores, batch['mask'][i], valid)

    def validation_step(
        self, batch: Any, batch_idx: int, dataloader_idx: int = 0
    ) -> None:
        """Score the scene and update the metrics.

        Args:
            batch: One scene with ``image`` and ``mask``.
            batch_idx: Index of the batch.
            dataloader_idx: Index of the dataloader.
        """
        self._evaluate(batch, 'val')

    def test_step(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None:
        """Score the scene and update the metrics.

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


class BSDMTask(AnomalyTaskBase):
    """BSDM: a background-suppressing diffusion denoiser trained on anomaly-free crops.

    As in the authors' code unless said otherwise: the denoiser learns
    pseudo-background noise at t = 500 on the training crops, each crop min-max
    normalised with its own scalar noise mean and standard deviation (the
    authors' per-scene recipe; the noise is drawn afresh each step, since one
    fixed draw per crop would need a per-sample cache). Crops with another band
    count are aligned with the authors' channel alignment
    (:func:`~torchgeo_ext.models.bsdm.channel_groups`). At test/predict time
    each scene is fitted on itself for ``scene_iterations`` steps (0: the
    trained model as is, the authors' generalisation protocol).
    :func:`load_bsdm` returns the trained model of a checkpoint.
    """

    models = ('bsdm',)

    def __init__(
        self,
        model: str = 'bsdm',
        in_channels: int = 10,
        model_kwargs: dict[str, Any] | None = None,
        lr: float = 1e-4,
        min_lr: float = 1e-5,
        diffusion_step: int = 500,
        repeats: int = 10,
        scene_iterations: int = 500,
        pixels_per_step: int | None = None,
    ) -> None:
        """Initialise a new BSDMTask.

        Args:
            model: ``'bsdm'``.
            in_channels: Model band count; inputs with another count are
                aligned to it with the authors' channel alignment.
            model_kwargs: Further :class:`~torchgeo_ext.models.bsdm.BSDM` arguments.
            lr: AdamW learning rate.
            min_lr: Final learning rate of the cosine schedule.
            diffusion_step: Training/suppression step t.
            repeats: Suppression steps.
            scene_iterations: Per-scene fitting steps at test/predict time.
            pixels_per_step: Pixels per scene-fitting step (``None``: every
                pixel, the authors').
        """
        super().__init__()

    def configure_models(self) -> None:
        """Build the denoiser and its noise schedule."""
        hp = self.hparams
        self.model: BSDM = get_model(
            hp['model'], in_channels=hp['in_channels'], **(hp['model_kwargs'] or {})
        )
        self.schedule = GammaSchedule()

    def configure_optimizers(self) -> OptimizerLRScheduler:
        """AdamW with a per-step cosine schedule over the fit.

        Returns:
            Optimizer and scheduler.
        """
        hp = self.hparams
        optimizer = torch.optim.AdamW(self.model.parameters(), lr=hp['lr'])
        total, _ = schedule_steps(self._trainer)
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(
            optimizer, T_max=total, eta_min=hp['min_lr']
        )
        return {
            'optimizer': optimizer,
            'lr_scheduler': {'scheduler': scheduler, 'interval': 'step'},
        }

    def compute_loss(self, image: Tensor) -> dict[str, Tensor]:
        """Noise MSE at t on min-max crops with their own scalar noise statistics.

        Args:
            image: ``B x C x H x W`` anomaly-free crops.

        Returns:
            ``loss``.
        """
        bands = self.hparams['in_channels']
        b, c, h, w = image.shape
        x = _standardise(image)
        pixels = torch.cat(
            [
                x[:, g].permute(0, 2, 3, 1).reshape(b, h * w, bands)
                for g in channel_groups(c, bands)
            ],
            dim=1,
        )
        noise = torch.stack([pseudo_background_noise(p) for p in pixels])
        t = self.hparams['diffusion_step']
        noisy = self.schedule.sample(pixels, t, noise)
        step = torch.tensor([t], device=noisy.device)
        predicted = self.model(noisy.reshape(-1, bands), step)
        return {'loss': F.mse_loss(predicted, noise.reshape(-1, bands))}

    def _score(self, image: Tensor, valid_mask: Tensor | None) -> Tensor:
        hp = self.hparams
        return bsdm_scores(
            image,
            valid_mask=valid_mask,
            model=self.model,
            iterations=hp['scene_iterations'],
            batch_size=hp['pixels_per_step'],
            t=hp['diffusion_step'],
            repeats=hp['repeats'],
        )


class STADTask(AnomalyTaskBase):
    """STAD: a transformer teacher (and distilled student) trained on anomaly-free crops.

    As in the authors' code unless said otherwise: the teacher learns to
    reconstruct the anomaly-free training crops (each min-max normalised, first
    ``in_channels`` bands) from inputs carrying the authors' synthetic blobs
    (``x * (1 + mask)``, sum of stage MSEs, Adam); an EMA (decay 0.99, the
    shared :class:`~torchgeo_ext.trainers.optimization.ExponentialMovingAverage`,
    BatchNorm buffers averaged) of the teacher is what scores scenes. The
    authors distil the convolutional student afterwards from the finished
    teacher; here it is distilled in the same step from the EMA teacher's
    reconstructions of the clean crop (stage-wise MSE), and its own EMA (decay
    0.9) is kept. :func:`load_stad` returns the trained model of a checkpoint.
    """

    models = ('stad',)

    def __init__(
        self,
        model: str = 'stad',
        in_channels: int = 10,
        model_kwargs: dict[str, Any] | None = None,
        student_width: int = 100,
        lr: float = 1e-4,
        ema_decay: float = 0.99,
        student_ema_decay: float = 0.9,
        distill_weight: float = 1.0,
        blob_count: tuple[int, int] = (1, 32),
        blob_area: tuple[int, int] = (3, 20),
        window: int = 64,
    ) -> None:
        """Initialise a new STADTask.

        Args:
            model: ``'stad'``.
            in_channels: Model band count; inputs with another count use
                their first ``in_channels`` bands.
            model_kwargs: Further :class:`~torchgeo_ext.models.stad.STADTeacher`
                arguments.
            student_width: Student hidden channels (the authors': 100).
            lr: Adam learning rate (teacher and student).
            ema_decay: Teacher EMA decay (the authors': 0.99).
            student_ema_decay: Student EMA decay (the authors': 0.9).
            distill_weight: Weight of the student distillation loss.
            blob_count: Synthetic blobs per crop (inclusive range).
            blob_area: Blob area in pixels (inclusive range).
            window: Attention window at test/predict time.
        """
        super().__init__()

    def configure_models(self) -> None:
        """Build the teacher, the student and their EMA copies."""
        hp = self.hparams
        self.model: STADTeacher = get_model(
            hp['model'], in_channels=hp['in_channels'], **(hp['model_kwargs'] or {})
        )
        self.student = STADStudent(
            hp['in_channels'], stages=len(self.model.stages), width=hp['student_width']
        )
        self.ema_teacher = ExponentialMovingAverage(
            self.model, decay=hp['ema_decay'], tau=None
        )
        self.ema_student = ExponentialMovingAverage(
            self.student, decay=hp['student_ema_decay'], tau=None
        )

    def configure_optimizers(self) -> OptimizerLRScheduler:
        """Adam on teacher and student.

        Returns:
            The optimizer.
        """
        return torch.optim.Adam(
            [*self.model.parameters(), *self.student.parameters()],
            lr=self.hparams['lr'],
        )

    def compute_loss(self, x: Tensor) -> dict[str, Tensor]:
        """Teacher reconstruction of blob-corrupted crops plus student distillation.

        Args:
            x: ``B x in_channels x H x W`` standardised crops.

        Returns:
            ``loss``, ``teacher_loss`` and ``student_loss``.
        """
        b, _, h, w = x.shape
        mask = synthetic_blobs(
            b,
            h,
            w,
            count=tuple(self.hparams['blob_count']),
            area=tuple(self.hparams['blob_area']),
        ).to(x)
        teacher_loss = stad_teacher_loss(self.model(x * (1 + mask)), x)
        teacher = self.ema_teacher.module
        teacher.eval()
        with torch.no_grad():
            targets = teacher(x)
        student_loss = stad_distillation_loss(self.student(x), targets)
        loss = teacher_loss + self.hparams['distill_weight'] * student_loss
        return {
            'loss': loss,
            'teacher_loss': teacher_loss,
            'student_loss': student_loss,
        }

    def prepare_crops(self, image: Tensor) -> Tensor:
        """STAD trains on the first ``in_channels`` bands, standardised per crop."""
        return _standardise(select_bands(image, self.hparams['in_channels']))

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        """Update the EMA copies."""
        self.ema_teacher.update_parameters(self.model)
        self.ema_student.update_parameters(self.student)

    def _score(self, image: Tensor, valid_mask: Tensor | None) -> Tensor:
        return stad_scores(
            image,
            model=self.ema_teacher.module,
            window=self.hparams['window'],
            valid_mask=valid_mask,
        )


#: The task of each method of the former single task.
_METHODS: dict[str, type[AnomalyTaskBase]] = {'bsdm': BSDMTask, 'stad': STADTask}


class AnomalyDetectionTask:
    """Deprecated: use :class:`BSDMTask` or :class:`STADTask`.

    ``AnomalyDetectionTask(method='bsdm'|'stad', **kwargs)`` builds the task of
    that method (arguments the method does not take are ignored, as the
    former task did), and :meth:`load_from_checkpoint` loads checkpoints the
    former task wrote.
    """

    def __new__(  # type: ignore[misc]
        cls, method: str = 'stad', **kwargs: Any
    ) -> AnomalyTaskBase:
        """Build the task of *method*.

        Args:
            method: ``'bsdm'`` or ``'stad'``.
            **kwargs: Arguments of that task.

        Returns:
            The task.
        """
        task_class = _task_class(method)
        warnings.warn(
            f'AnomalyDetectionTask is deprecated: use {task_class.__name__}',
            DeprecationWarning,
            stacklevel=2,
        )
        accepted = inspect.signature(task_class.__init__).parameters
        return task_class(**{k: v for k, v in kwargs.items() if k in accepted})

    @classmethod
    def load_from_checkpoint(
        cls, checkpoint_path: str | os.PathLike[str], **kwargs: Any
    ) -> AnomalyTaskBase:
        """Load a checkpoint of the former task as the task of its method.

        Args:
            checkpoint_path: The checkpoint.
            **kwargs: Passed to Lightning's ``load_from_checkpoint``.

        Returns:
            The task.
        """
        checkpoint = torch.load(checkpoint_path, map_location='cpu', weights_only=False)
        method = checkpoint.get('hyper_parameters', {}).get('method', 'stad')
        task: AnomalyTaskBase = _task_class(method).load_from_checkpoint(
            os.fspath(checkpoint_path), **kwargs
        )
        return task


def _task_class(method: str) -> type[AnomalyTaskBase]:
    if method not in _METHODS:
        raise ValueError(f"method must be 'stad' or 'bsdm', got {method!r}")
    return _METHODS[method]


def load_bsdm(checkpoint: str | os.PathLike[str]) -> BSDM:
    """The BSDM model of an anomaly-task checkpoint.

    Args:
        checkpoint: Checkpoint of :class:`BSDMTask`.

    Returns:
        The model, in eval mode.

    Raises:
        InvalidInputError: If the checkpoint holds no BSDM model.
    """
    return load_task_model(
        checkpoint, BSDM, 'not a BSDM checkpoint (model is not BSDM)'
    )


def load_stad(
    checkpoint: str | os.PathLike[str], student: bool = False
) -> STADTeacher | STADStudent:
    """The STAD teacher or student (their EMA weights) of an anomaly-task checkpoint.

    Args:
        checkpoint: Checkpoint of :class:`STADTask`.
        student: Return the distilled student instead of the teacher.

    Returns:
        The model, in eval mode.

    Raises:
        InvalidInputError: If the checkpoint holds no STAD model.
    """
    return load_task_model(
        checkpoint,
        (STADStudent, STADTeacher),
        'not a STAD checkpoint (no STAD teacher/student)',
        attribute=f'{"ema_student" if student else "ema_teacher"}.module',
    )
