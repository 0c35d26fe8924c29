"""Lightning task for single-object hyperspectral tracking (HyA-T and HyMamba on HOTC)."""

from __future__ import annotations

from typing import Any, Protocol

import torch
from lightning.pytorch.utilities.types import OptimizerLRScheduler
from torch import Tensor
from torch.optim.lr_scheduler import CosineAnnealingLR
from torchmetrics import MetricCollection
from torchvision.ops import box_convert

from ..losses.tracking import TrackingLoss, centre_heatmap
from ..metrics.tracking import OTBMetric
from ..models.api import get_model
from ..models.hyat import HyATracker
from ..samplers.tracking import crop_around_box
from .base import PluginTask
from .optimization import build_optimizer, schedule_epochs


def _to_xywh(box: Tensor) -> Tensor:
    return box_convert(box, 'xyxy', 'xywh')


class FrameSequence(Protocol):
    """Frames of one video (e.g. :class:`~torchgeo_ext.datasets.hotc.HOTCSequenceView`)."""

    def __len__(self) -> int:
        """Number of frames."""
        ...

    def __getitem__(self, frame: int) -> dict[str, Any]:
        """Frame sample with ``image`` (C x H x W) and ``bbox_xyxy`` (1 x 4 or 0 x 4)."""
        ...


class TrackingTask(PluginTask):
    """Train and run a HyA-T or HyMamba tracker on template/search pairs.

    Trains a tracker of the registry (HyA-T's
    :class:`~torchgeo_ext.models.hyat.HyATracker`, or HyMamba's
    :class:`~torchgeo_ext.models.hymamba.HyMambaTracker` built on it) on
    template/search pairs (:class:`~torchgeo_ext.datamodules.hotc.HOTCDataModule`
    fit batches: ``template``, ``search``, ``search_bbox_xyxy``) with a focal
    loss on the centre score map (Gaussian target around the box centre's
    cell) plus L1 and GIoU losses on the box decoded at the ground-truth centre
    cell. Validation logs the loss and the success AUC / DP@20 of the boxes
    decoded at the score maximum, over the validation pairs (in search-crop
    pixels).

    Test and predict batches are single frames in temporal order (``image``,
    ``bbox_xyxy``, ``sequence``, ``frame``); the task keeps a tracker state:
    the first frame of a sequence sets the template from its box, later frames
    are searched around the previous box (score map weighted by a Hanning
    window). Test computes the OTB success AUC and DP@20 per sequence
    (:class:`~torchgeo_ext.metrics.tracking.OTBMetric`); predict returns
    ``prediction_bbox_xyxy``. :meth:`track` runs the same loop over a whole
    sequence view.
    """

    monitor = 'val_loss'
    models = ('hyat_tiny', 'hyat_base', 'hymamba_tiny', 'hymamba_base')

    def __init__(
        self,
        model: str = 'hyat_tiny',
        hsi_bands: int = 16,
        colour_bands: int = 3,
        template_size: int = 128,
        search_size: int = 256,
        template_factor: float = 2.0,
        search_factor: float = 4.0,
        model_kwargs: dict[str, Any] | None = None,
        freeze_backbone: bool = False,
        backbone_weights: str | None = None,
        focal_weight: float = 1.0,
        l1_weight: float = 5.0,
        giou_weight: float = 2.0,
        lr: float = 4e-4,
        weight_decay: float = 1e-4,
    ) -> None:
        """Initialise a new TrackingTask.

        Args:
            model: ``'hyat_tiny'``, ``'hyat_base'``, ``'hymamba_tiny'`` or ``'hymamba_base'``.
            hsi_bands: HSI bands (16 VIS, 25 NIR, 15 RedNIR).
            colour_bands: Colour bands stacked before the HSI bands.
            template_size: Template crop side (as in the data module).
            search_size: Search crop side (as in the data module).
            template_factor: Template context used by :meth:`track`.
            search_factor: Search context used by :meth:`track`.
            model_kwargs: Extra :class:`~torchgeo_ext.models.hyat.HyATracker`
                arguments.
            freeze_backbone: Train only adapters, HEI and head (the paper).
            backbone_weights: Path of pretrained backbone weights (no download).
            focal_weight: Weight of the score-map focal loss.
            l1_weight: Weight of the L1 box loss (normalised coordinates).
            giou_weight: Weight of the GIoU box loss.
            lr: AdamW learning rate.
            weight_decay: AdamW weight decay.
        """
        self._state: dict[str, Any] = {}
        super().__init__()

    def configure_models(self) -> None:
        """Build the tracker, load and freeze its backbone if asked."""
        h = self.hparams
        self.model: HyATracker = get_model(
            h['model'],
            hsi_bands=h['hsi_bands'],
            template_size=h['template_size'],
            search_size=h['search_size'],
            colour_bands=h['colour_bands'],
            **(h['model_kwargs'] or {}),
        )
        if h['backbone_weights']:
            self.model.load_backbone(h['backbone_weights'])
        if h['freeze_backbone']:
            self.model.freeze_backbone()

    def configure_losses(self) -> None:
        """Initialise the focal + L1 + GIoU loss."""
        h = self.hparams
        self.criterion = TrackingLoss(
            h['focal_weight'], h['l1_weight'], h['giou_weight']
        )

    def build_metrics(self) -> MetricCollection:
        """OTB success AUC and DP@20 (``<stage>_success_auc``, ``<stage>_precision_20``).

        Validation counts each batch of pairs as one sequence; test, each video.

        Returns:
            The collection.
        """
        return MetricCollection({'otb': OTBMetric()})

    def configure_optimizers(self) -> OptimizerLRScheduler:
        """AdamW on the trainable parameters with a cosine schedule.

        Returns:
            Optimizer and scheduler.
        """
        params = [p for p in self.parameters() if p.requires_grad]
        optimizer = build_optimizer(
            params,
            'adamw',
            self.hparams['lr'],
            weight_decay=self.hparams['weight_decay'],
        )
        scheduler = CosineAnnealingLR(optimizer, T_max=schedule_epochs(self._trainer))
        return {'optimizer': optimizer, 'lr_scheduler': scheduler}

    def forward(self, template: Tensor, search: Tensor) -> dict[str, Tensor]:  # type: ignore[override]
        """Run the tracker on crops.

        Args:
            template: B x C x t x t template crops.
            search: B x C x s x s search crops.

        Returns:
            The model outputs (maps and ``bbox_xyxy`` in search-crop pixels).
        """
        out: dict[str, Tensor] = self.model(template, search)
        return out

    def compute_loss(
        self, out: dict[str, Tensor], target_xyxy: Tensor
    ) -> dict[str, Tensor]:
        """Focal + L1 + GIoU losses.

        Args:
            out: Model outputs.
            target_xyxy: B x 4 target boxes in search-crop pixels.

        Returns:
            ``loss`` and its parts ``focal``, ``l1``, ``giou``.
        """
        size = float(self.model.search_size)
        target = target_xyxy / size
        heatmap, index = centre_heatmap(target, self.model.search_grid)
        box = self.model.box_at(out, index) / size
        losses: dict[str, Tensor] = self.criterion(out['score'], heatmap, box, target)
        return losses

    def _pair_step(self, batch: dict[str, Any], prefix: str) -> Tensor:
        out = self(batch['template'], batch['search'])
        target = batch['search_bbox_xyxy'].reshape(-1, 4)
        losses = self.compute_loss(out, target)
        self.log_losses(losses, prefix, target.shape[0])
        if prefix == 'val':
            pred = _to_xywh(out['bbox_xyxy'].detach())
            self.stage_metrics('val').update(pred, _to_xywh(target))
        return losses['loss']

    def training_step(
        self, batch: Any, batch_idx: int, dataloader_idx: int = 0
    ) -> Tensor:
        """Compute the training loss of a pair batch.

        Args:
            batch: Pair batch.
            batch_idx: Batch index.
            dataloader_idx: Data loader index.

        Returns:
            The loss.
        """
        return self._pair_step(batch, 'train')

    def validation_step(
        self, batch: Any, batch_idx: int, dataloader_idx: int = 0
    ) -> None:
        """Log validation loss, success AUC and DP@20 on a pair batch.

        Args:
            batch: Pair batch.
            batch_idx: Batch index.
            dataloader_idx: Data loader index.
        """
        self._pair_step(batch, 'val')

    # Tracking.

    @torch.no_grad()
    def init_tracker(self, image: Tensor, box_xywh: Tensor) -> None:
        """Start tracking: crop the template from the first frame.

        Args:
            image: C x H x W first frame.
            box_xywh: Its ``x, y, w, h`` target box.
        """
        h = self.hparams
        template, _, _ = crop_around_box(
            image, box_xywh.cpu(), h['template_factor'], h['template_size']
        )
        self._state = {
            'template': template[None].to(self.device),
            'box': box_xywh.cpu().double(),
        }

    @torch.no_grad()
    def update_tracker(self, image: Tensor) -> Tensor:
        """Locate the target in the next frame, searching around the last box.

        Args:
            image: C x H x W frame.

        Returns:
            The ``x, y, w, h`` box in frame pixels (float32).

        Raises:
            RuntimeError: If :meth:`init_tracker` was not called.
        """
        if 'template' not in self._state:
            raise RuntimeError('call init_tracker first')
        h = self.hparams
        previous = self._state['box']
        search, _, window = crop_around_box(
            image, previous.float(), h['search_factor'], h['search_size']
        )
        out = self(self._state['template'], search[None].to(self.device))
        # Hanning-window penalty: prefer peaks near the previous position.
        g = self.model.search_grid
        hann = torch.hann_window(g + 2, periodic=False, device=self.device)[1:-1]
        score = out['score'][:, 0].sigmoid() * (hann[:, None] * hann[None, :])
        index = score.flatten(1).argmax(dim=1)
        side = float(window[2] - window[0])
        xyxy = self.model.box_at(out, index)[0].double().cpu() * side / h['search_size']
        xyxy = xyxy + window[:2].double().repeat(2)
        height, width = image.shape[-2:]
        x1 = xyxy[0].clamp(0, width - 1)
        y1 = xyxy[1].clamp(0, height - 1)
        x2 = torch.maximum(xyxy[2].clamp(max=width), x1 + 1)
        y2 = torch.maximum(xyxy[3].clamp(max=height), y1 + 1)
        box = torch.stack([x1, y1, x2 - x1, y2 - y1])
        self._state['box'] = box
        return box.float()

    @torch.no_grad()
    def track(self, sequence: FrameSequence) -> Tensor:
        """Track through a sequence view, template from frame 1's box.

        Args:
            sequence: A sequence of frame samples (``image``, ``bbox_xyxy``),
                e.g. a :class:`~torchgeo_ext.datasets.hotc.HOTCSequenceView`;
                its first frame must have a box.

        Returns:
            N x 4 ``x, y, w, h`` boxes, one per frame (the first is the given
            box).

        Raises:
            ValueError: If the first frame has no box.
        """
        was_training = self.training
        self.eval()
        first = sequence[0]
        if len(first['bbox_xyxy']) == 0:
            raise ValueError('the first frame has no box to initialise the tracker')
        init = _to_xywh(first['bbox_xyxy'][0].float())
        self.init_tracker(first['image'], init)
        boxes = [init]
        for i in range(1, len(sequence)):
            boxes.append(self.update_tracker(sequence[i]['image']))
        self.train(was_training)
        return torch.stack(boxes)

    def _stream_step(self, batch: dict[str, Any]) -> tuple[Tensor, Tensor]:
        """Track one frame of a temporal-order batch (batch size 1).

        Returns:
            The predicted and ground-truth ``x, y, w, h`` boxes (NaN if unknown).
        """
        image = batch['image'][0]
        seq = int(batch['sequence'].reshape(-1)[0])
        frame = int(batch['frame'].reshape(-1)[0])
        gt_xyxy = batch['bbox_xyxy'][0].reshape(-1, 4)
        gt = (
            _to_xywh(gt_xyxy[0].float())
            if len(gt_xyxy)
            else torch.full((4,), float('nan'), device=gt_xyxy.device)
        )
        new = self._state.get('sequence') != seq or frame == 0
        if new:
            self._finish_sequence()
            self._state = {'sequence': seq, 'pred': [], 'gt': []}
        if 'template' not in self._state:
            if not torch.isfinite(gt).all():
                pred = torch.full((4,), float('nan'), device=gt.device)
            else:
                state = {k: self._state[k] for k in ('sequence', 'pred', 'gt')}
                self.init_tracker(image, gt)
                self._state.update(state)
                pred = gt.clone()
        else:
            pred = self.update_tracker(image)
        self._state['pred'].append(pred.cpu())
        self._state['gt'].append(gt.cpu())
        return pred, gt

    def _finish_sequence(self) -> None:
        if self._state.get('pred') and self._testing:
            self.test_metrics.update(
                torch.stack(self._state['pred']), torch.stack(self._state['gt'])
            )
        self._state = {}

    _testing = False

    def on_test_epoch_start(self) -> None:
        """Reset the tracker state."""
        self._state = {}
        self._testing = True

    def test_step(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None:
        """Track one test frame; sequences are scored when they end.

        Args:
            batch: One frame (batch size 1).
            batch_idx: Batch index.
            dataloader_idx: Data loader index.
        """
        self._stream_step(batch)

    def on_test_epoch_end(self) -> None:
        """Score the last sequence and log OTB success AUC and DP@20."""
        self._finish_sequence()
        self._testing = False
        super().on_test_epoch_end()

    def on_predict_epoch_start(self) -> None:
        """Reset the tracker state."""
        self._state = {}

    def predict_step(
        self, batch: Any, batch_idx: int, dataloader_idx: int = 0
    ) -> dict[str, Any]:
        """Track one frame.

        Args:
            batch: One frame (batch size 1).
            batch_idx: Batch index.
            dataloader_idx: Data loader index.

        Returns:
            ``prediction_bbox_xyxy`` (1 x 4 frame pixels, 0 x 4 before the
            tracker is initialised), ``sequence`` and ``frame``.
        """
        pred, _ = self._stream_step(batch)
        boxes = box_convert(pred[None], 'xywh', 'xyxy')
        if not torch.isfinite(boxes).all():
            boxes = boxes.new_zeros((0, 4))
        return self.passthrough(batch, {'prediction_bbox_xyxy': [boxes]})
