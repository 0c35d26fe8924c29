"""Lightning tasks for oriented (rotated-box) object detection: FoRA/LMA, SAR-Net and E2E-MFD."""

from __future__ import annotations

import inspect
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from lightning.pytorch.utilities import rank_zero_info
from lightning.pytorch.utilities.types import OptimizerLRScheduler
from torch import Tensor, nn
from torch.optim import Optimizer
from torchmetrics import MetricCollection

from ..losses.fusion import FusionLoss
from ..losses.obb import OBBLoss
from ..metrics.detection import OrientedMeanAveragePrecision
from ..models.api import get_model_builder
from ..models.e2emfd import E2EMFD, gmta_backward
from ..models.lma import DEFAULT_MODALITIES, LMADetector, RankAllocator, adaptor_ranks
from ..models.obb_detector import OBBOutput, postprocess
from .base import PluginTask
from .optimization import build_optimizer, schedule_steps, warmup_cosine

Batch = dict[str, Any]


class ObbDetectionBase(PluginTask):
    """The shared part of the oriented-detection tasks (arguments, loss, metrics).

    Subclasses pass ``model`` (a :func:`~torchgeo_ext.models.api.get_model`
    name, one of their :attr:`~PluginTask.models`) and their own arguments'
    values; :meth:`builder_kwargs` adds model-specific builder arguments.

    Batches follow docs/architecture.md and the DroneVehicle data module:
    ``image`` (B, C, H, W) in [0, 1] with the bands of ``modalities`` (default
    RGB 0-2, IR 3), ``bbox`` a list of (N_i, 8) oriented boxes in pixels,
    ``label`` a list of (N_i,) int64. Predictions: ``prediction_bbox`` (list of
    (N, 8) polygons), ``prediction_label``, ``prediction_score``; the batch's
    ``transform`` / ``crs`` keys pass through. Validation and test report
    DOTA-style oriented mAP
    (:class:`~torchgeo_ext.metrics.detection.OrientedMeanAveragePrecision`):
    ``<stage>_map_50``, ``_map_75``, ``_map`` (over both IoU thresholds),
    ``_map_voc07``, ``_map_auc`` and ``<stage>_ap_<class>``.
    """

    #: Predictions are oriented (``prediction_bbox``), read by ``torchgeo-ext detect``.
    oriented = True
    monitor = 'val_map_50'
    mode = 'max'
    per_class_names = {'map_per_class': 'ap'}

    def __init__(
        self,
        model: str,
        num_classes: int = 5,
        class_names: Sequence[str] | None = None,
        modalities: Mapping[str, Sequence[int]] | None = None,
        in_channels: int | None = None,
        width: float = 0.25,
        depth: float = 0.33,
        optimizer: str = 'sgd',
        lr: float = 0.01,
        momentum: float = 0.937,
        weight_decay: float = 5e-4,
        warmup_epochs: float = 3.0,
        final_lr_ratio: float = 0.01,
        box_gain: float = 7.5,
        cls_gain: float = 0.5,
        dfl_gain: float = 1.5,
        val_score_threshold: float = 0.001,
        score_threshold: float = 0.25,
        iou_threshold: float = 0.7,
        max_detections: int = 300,
        ap_method: str = 'voc07',
    ) -> None:
        """Initialise a new oriented-detection task.

        Args:
            model: Model name (see :func:`~torchgeo_ext.models.api.list_models`).
            num_classes: Number of classes.
            class_names: Class names (default: the data module's, else
                ``class_<i>``).
            modalities: Band indices of each modality in ``image`` (default
                ``{'rgb': [0, 1, 2], 'ir': [3]}``).
            in_channels: Number of input bands; with no ``modalities``, 4
                means RGB + IR, anything else a single modality.
            width: Width multiple (0.25: YOLOv8n).
            depth: Depth multiple (0.33: YOLOv8n).
            optimizer: ``'sgd'`` (Nesterov) or ``'adamw'``.
            lr: Base learning rate.
            momentum: SGD momentum (AdamW beta1).
            weight_decay: Weight decay.
            warmup_epochs: Linear warm-up length in epochs.
            final_lr_ratio: Final learning-rate factor of the cosine schedule.
            box_gain: ProbIoU loss gain.
            cls_gain: Class BCE gain.
            dfl_gain: DFL gain.
            val_score_threshold: Score threshold for evaluation.
            score_threshold: Score threshold for prediction.
            iou_threshold: Rotated NMS IoU threshold.
            max_detections: Detections kept per image.
            ap_method: ``'voc07'`` or ``'auc'`` for the reported mAP.

        """
        super().__init__()

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
    def detector(self) -> nn.Module:
        """The detection model (its ``bands`` tell ``torchgeo-ext detect`` what it reads)."""
        return self.model

    def builder_kwargs(self) -> dict[str, Any]:
        """Builder arguments beyond the shared ones (none here).

        Returns:
            Keyword arguments.
        """
        return {}

    def configure_models(self) -> None:
        """Build the model by name; the builder gets the arguments it takes."""
        h = self.hparams
        builder = get_model_builder(h['model'])
        bands = sum(len(v) for v in self.modalities.values())
        offered: dict[str, Any] = {
            'num_classes': h['num_classes'],
            'modalities': self.modalities,
            'in_channels': bands,
            'width': h['width'],
            'depth': h['depth'],
            **self.builder_kwargs(),
        }
        accepted = inspect.signature(builder).parameters
        self.model: nn.Module = builder(
            **{k: v for k, v in offered.items() if k in accepted}
        )

    def configure_losses(self) -> None:
        """Build the detection loss."""
        h = self.hparams
        self.criterion = OBBLoss(
            h['num_classes'],
            box_gain=h['box_gain'],
            cls_gain=h['cls_gain'],
            dfl_gain=h['dfl_gain'],
        )

    def build_metrics(self) -> MetricCollection:
        """Oriented mAP at IoU 0.5 and 0.75.

        Returns:
            The collection.
        """
        h = self.hparams
        return MetricCollection(
            {
                'map': OrientedMeanAveragePrecision(
                    h['num_classes'], iou_thresholds=(0.5, 0.75), method=h['ap_method']
                )
            }
        )

    def configure_optimizers(self) -> OptimizerLRScheduler:
        """SGD (or AdamW) with linear warm-up, then a cosine schedule, per step.

        Returns:
            The optimiser and its step-wise scheduler.
        """
        h = self.hparams
        optimizer = build_optimizer(
            self.parameters(),
            h['optimizer'],
            h['lr'],
            h['momentum'],
            h['weight_decay'],
            nesterov=h['optimizer'] == 'sgd',
        )
        total, warmup = schedule_steps(self._trainer, h['warmup_epochs'])
        scheduler = warmup_cosine(optimizer, warmup, total, h['final_lr_ratio'])
        return {
            'optimizer': optimizer,
            'lr_scheduler': {'scheduler': scheduler, 'interval': 'step'},
        }

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
        conf = h['score_threshold'] if predict else h['val_score_threshold']
        return postprocess(out, reg_max, conf, h['iou_threshold'], h['max_detections'])

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
        terms = self.compute_loss(out, batch)
        self.log_losses(terms, 'train', batch['image'].shape[0])
        return terms['loss']

    def compute_loss(self, out: OBBOutput, batch: Batch) -> dict[str, Tensor]:
        """The detection loss (ProbIoU, class BCE, DFL).

        Args:
            out: Raw head outputs.
            batch: The batch (``bbox``, ``label``).

        Returns:
            ``loss`` and its terms.
        """
        loss, parts = self.criterion(out, batch['bbox'], batch['label'])
        return {'loss': loss, **parts}

    def _evaluate(self, batch: Batch, prefix: str) -> None:
        out = self.detection_output(batch['image'])
        terms = self.compute_loss(out, batch)
        self.log(f'{prefix}_loss', terms['loss'], batch_size=batch['image'].shape[0])
        preds = self.detect(out)
        targets = [
            {'bbox': b, 'label': lab}
            for b, lab in zip(batch['bbox'], batch['label'], strict=True)
        ]
        self.stage_metrics(prefix).update(preds, targets)

    def validation_step(
        self, batch: Batch, batch_idx: int, dataloader_idx: int = 0
    ) -> None:
        """Accumulate validation mAP.

        Args:
            batch: A batch.
            batch_idx: Its index.
            dataloader_idx: Index of the dataloader.
        """
        self._evaluate(batch, 'val')

    def test_step(self, batch: Batch, batch_idx: int, dataloader_idx: int = 0) -> None:
        """Accumulate test mAP.

        Args:
            batch: A batch.
            batch_idx: Its index.
            dataloader_idx: Index of the dataloader.
        """
        self._evaluate(batch, 'test')

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
        return self.passthrough(batch, self.predict_images(image))

    def predict_images(self, image: Tensor) -> Batch:
        """Detect oriented objects in a batch of images.

        Args:
            image: Images (B, C, H, W).

        Returns:
            ``prediction_bbox`` (list of (N, 8)), ``prediction_label`` and
            ``prediction_score`` (lists over the batch).
        """
        return _as_lists(self.detect(self.detection_output(image), predict=True))


class OrientedDetectionTask(ObbDetectionBase):
    """Oriented object detection with YOLOv8n-OBB-style detectors.

    Models, built by name from :mod:`torchgeo_ext.models.api`: FoRA/LMA
    (``model='lma_yolov8n_obb'``: :class:`~torchgeo_ext.models.lma.LMADetector`,
    a shared backbone with low-rank modal adaptors, whose ranks are reallocated
    during training with ``adaptive_rank``), the two-stream baseline
    (``'two_stream_yolov8n_obb'``), a single-stream detector on the stacked
    bands (``'yolov8n_obb'``) and SAR-Net (``'sarnet_n_obb'``,
    ``'sarnet_s_obb'``: :class:`~torchgeo_ext.models.sarnet.SARNetOBB`, single-band
    SAR with ``in_channels=1``; its widths come with its name).
    """

    models = (
        'lma_yolov8n_obb',
        'two_stream_yolov8n_obb',
        'yolov8n_obb',
        'sarnet_n_obb',
        'sarnet_s_obb',
    )

    def __init__(
        self,
        model: str = 'lma_yolov8n_obb',
        rank: int = 9,
        target_rank: float = 6.0,
        alpha: float | None = None,
        adaptive_rank: bool = True,
        **kwargs: Any,
    ) -> None:
        """Initialise a new OrientedDetectionTask.

        Args:
            model: ``'lma_yolov8n_obb'``, ``'two_stream_yolov8n_obb'``,
                ``'yolov8n_obb'`` (single stream on all stacked bands), or
                ``'sarnet_n_obb'``, ``'sarnet_s_obb'`` (SAR-Net).
            rank: Initial adaptor rank (LMA).
            target_rank: Average adaptor rank at the end (LMA).
            alpha: Adaptor scaling numerator (default ``rank``).
            adaptive_rank: Reallocate adaptor ranks during training (LMA).
            **kwargs: The arguments of :class:`ObbDetectionBase`.
        """
        self.allocator: RankAllocator | None = None
        super().__init__(model, **kwargs)

    def builder_kwargs(self) -> dict[str, Any]:
        """The adaptor rank and scaling (taken by the LMA builders).

        Returns:
            Keyword arguments.
        """
        return {'rank': self.hparams['rank'], 'alpha': self.hparams['alpha']}

    def on_fit_start(self) -> None:
        """Create the rank allocator (LMA) now that the training length is known."""
        h = self.hparams
        if isinstance(self.model, LMADetector) and h['adaptive_rank']:
            total, _ = schedule_steps(self._trainer)
            self.allocator = RankAllocator(
                self.model, total, h['rank'], h['target_rank']
            )

    def on_before_optimizer_step(self, optimizer: Optimizer) -> None:
        """Update the adaptor importance scores and rank masks (LMA).

        Args:
            optimizer: The optimiser about to step.
        """
        if self.allocator is not None:
            budget = self.allocator.step(self.global_step)
            self.log('train_rank_budget', budget, on_step=True, on_epoch=False)

    def final_ranks(self) -> dict[str, int]:
        """Active adaptor rank of each backbone convolution (LMA; empty otherwise).

        Returns:
            Layer name to rank.
        """
        return adaptor_ranks(self.model)

    def on_train_epoch_end(self) -> None:
        """Log the mean active adaptor rank (LMA)."""
        super().on_train_epoch_end()
        ranks = self.final_ranks()
        if ranks:
            self.log('train_adaptor_rank_mean', sum(ranks.values()) / len(ranks))

    def on_train_end(self) -> None:
        """Report the final adaptor ranks (LMA) through Lightning's logger."""
        ranks = self.final_ranks()
        if ranks:
            self.rank_report = ranks
            mean = sum(ranks.values()) / len(ranks)
            rank_zero_info(f'LMA final adaptor ranks (mean {mean:.2f}): {ranks}')


class E2EMFDTask(ObbDetectionBase):
    """E2E-MFD: joint image fusion and oriented detection, GMTA on the backbone.

    ``model='e2emfd_yolov8n_obb'``; predictions also carry the fused image
    under ``prediction``.

    Optimisation is manual: each step back-propagates the fusion and detection
    losses separately, aligns their gradients on the shared backbone with
    GMTA (:func:`~torchgeo_ext.models.e2emfd.gmta_backward`), and steps the
    optimiser. ``gmta=False`` back-propagates the plain sum instead.
    """

    models = ('e2emfd_yolov8n_obb',)

    def __init__(
        self,
        model: str = 'e2emfd_yolov8n_obb',
        fusion_channels: Sequence[int] = (64, 128),
        fusion_weight: float = 10.0,
        gmta: bool = True,
        **kwargs: Any,
    ) -> None:
        """Initialise a new E2EMFDTask.

        Args:
            model: ``'e2emfd_yolov8n_obb'``.
            fusion_channels: Channels of the fusion network's pixel path.
            fusion_weight: Factor of the fusion loss (10 in the paper).
            gmta: Align the task gradients on the shared backbone.
            **kwargs: The arguments of :class:`ObbDetectionBase` (``modalities``
                needs ``rgb`` (3 bands) and ``ir``; without it ``in_channels``
                must be 4).
        """
        super().__init__(model, **kwargs)
        self.automatic_optimization = False

    def builder_kwargs(self) -> dict[str, Any]:
        """The fusion network's channels.

        Returns:
            Keyword arguments.
        """
        return {'fusion_channels': tuple(self.hparams['fusion_channels'])}

    def configure_losses(self) -> None:
        """Build the detection and fusion losses."""
        super().configure_losses()
        self.fusion_criterion = FusionLoss(weight=self.hparams['fusion_weight'])

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
        total = (det_loss + fus_loss).detach()
        terms = {'loss': total, 'loss_det': det_loss, 'loss_fusion': fus_loss}
        self.log_losses({**terms, **det_parts, **fus_parts}, 'train', len(out.fused))
        return total

    def predict_images(self, image: Tensor) -> Batch:
        """Detect oriented objects and fuse the images.

        Args:
            image: Images (B, C, H, W).

        Returns:
            As :meth:`ObbDetectionBase.predict_images`, plus ``prediction``:
            the fused image (B, 1, H, W) in [0, 1].
        """
        out = self.model(image)
        result = _as_lists(self.detect(out.detection, predict=True))
        result['prediction'] = out.fused.clamp(0, 1)
        return result


def _as_lists(preds: list[dict[str, Tensor]]) -> Batch:
    """Per-image detections as per-key lists (the prediction layout)."""
    return {
        key: [p[key] for p in preds]
        for key in ('prediction_bbox', 'prediction_label', 'prediction_score')
    }
