"""Lightning tasks for axis-aligned object detection: SuperYOLO, SeaDATE, SAR-Net and GHOST."""

from __future__ import annotations

import copy
import warnings
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from lightning.pytorch.utilities.types import OptimizerLRScheduler
from torch import Tensor, nn
from torchmetrics import MetricCollection
from torchmetrics.detection import MeanAveragePrecision

from ..losses.yolo import YOLOv5Loss
from ..models.api import get_model
from ..models.ghost import (
    SELF_TEACHING_LAYERS,
    FeatureTap,
    OneToOneSelfTeaching,
    quantization_report,
    quantize_superyolo,
)
from ..models.obb_detector import pad_to_stride
from ..models.sarnet import SARNet
from ..models.seadate import SeaDATE
from ..models.superyolo import Detect, SuperYOLO, postprocess
from ..models.weights import read_state_dict
from .base import PluginTask
from .optimization import (
    ExponentialMovingAverage,
    build_optimizer,
    decay_groups,
    schedule_steps,
    warmup_cosine,
)

Batch = dict[str, Any]

#: The detectors with YOLOv5 heads that :class:`SuperYOLOTask` trains.
YOLOv5Detector = SuperYOLO | SeaDATE | SARNet

#: Raw head output: one tensor (one head) or one per level (SAR-Net).
RawOutput = Tensor | list[Tensor]

#: YOLOv5's objectness weights of the stride 8, 16 and 32 levels (one level: 1).
OBJECTNESS_BALANCE = {1: (1.0,), 3: (4.0, 1.0, 0.4)}


def _load_state_dict(path: str) -> dict[str, Tensor]:
    # Prefer the EMA weights of a task checkpoint, then the raw model weights.
    return read_state_dict(
        path,
        nested=('state_dict',),
        prefixes=('ema_model.module.', 'model.'),
        weights_only=False,  # Lightning checkpoints also hold hyperparameters
    )


class SuperYOLOTask(PluginTask):
    """SuperYOLO detection task (multimodal RGB+IR by default).

    Trains :class:`~torchgeo_ext.models.superyolo.SuperYOLO` with the YOLOv5
    loss (CIoU box regression, BCE objectness and class terms), the paper's
    auxiliary super-resolution L1 loss (weight 0.1) whenever the batch carries
    the high-resolution image ``image_hr``, and SGD with linear warm-up and a
    cosine schedule. Batches: ``image`` (B, C, H, W) float, ``bbox_xyxy`` a
    list of (N_i, 4) pixel boxes, ``label`` a list of (N_i,) int64;
    predictions come back under ``prediction_bbox_xyxy``, ``prediction_label``
    and ``prediction_score``.

    It also trains the detectors with SuperYOLO's head: SeaDATE and its
    two-stream baseline (:mod:`torchgeo_ext.models.seadate`), and SAR-Net
    (:class:`~torchgeo_ext.models.sarnet.SARNet`: single-band SAR, a head at
    each of strides 8, 16 and 32, each with its YOLOv5 loss, objectness
    weighed 4.0, 1.0 and 0.4 as in YOLOv5). A model's own training-only losses
    (SeaDATE's contrastive alignment) come from its ``forward_with_losses``
    and are added as ``loss_<name>`` terms.

    Validation and test use an exponential moving average of the weights
    (``ema=True``). Metrics:
    ``val_map_50``, ``val_map`` (mAP50:95), the other scalars of
    :class:`~torchmetrics.detection.MeanAveragePrecision` (``val_map_75``,
    ``val_mar_100``, ...), ``val_loss`` and their ``test_`` counterparts.
    """

    models: tuple[str, ...] = (
        'superyolo_mf',
        'superyolo_rgb',
        'superyolo_ir',
        'superyolo_early',
        'seadate_yolov5s',
        'two_stream_yolov5s',
        'sarnet_n',
        'sarnet_s',
    )
    #: Without ``class_metrics``, mAP's per-class results are a -1 placeholder.
    per_class_names = {'map_per_class': 'ap', 'mar_100_per_class': 'ar_100'}

    #: Outputs axis-aligned boxes (``prediction_bbox_xyxy``).
    oriented = False
    #: Inference engines of :meth:`set_engine`.
    engines: tuple[str, ...] = ('torch', 'onnxruntime')
    #: The engine's inference copy of the model (None: the live evaluation model).
    _inference_model: nn.Module | None = None
    #: Keep every argument (``weights`` is a path, safe to record).
    ignore = 'variant'
    monitor = 'val_map_50'
    mode = 'max'

    def __init__(
        self,
        model: str = 'superyolo_mf',
        num_classes: int = 8,
        class_names: Sequence[str] | None = None,
        rgb_bands: Sequence[int] = (0, 1, 2),
        ir_bands: Sequence[int] = (3,),
        in_channels: int = 4,
        width: float = 1.0,
        super_resolution: bool = True,
        sr_weight: float = 0.1,
        box_gain: float = 0.15,
        obj_gain: float = 7.68,
        cls_gain: float = 0.15,
        anchor_threshold: float = 4.0,
        label_smoothing: float = 0.0,
        lr: float = 0.01,
        momentum: float = 0.937,
        weight_decay: float = 5e-4,
        warmup_epochs: float = 3.0,
        final_lr_ratio: float = 0.2,
        ema: bool = True,
        ema_decay: float = 0.9999,
        ema_tau: float = 2000.0,
        val_score_threshold: float = 0.001,
        val_iou_threshold: float = 0.6,
        score_threshold: float = 0.25,
        iou_threshold: float = 0.45,
        max_detections: int = 300,
        weights: str | None = None,
        model_kwargs: dict[str, Any] | None = None,
        variant: str | None = None,
    ) -> None:
        """Initialise a new SuperYOLOTask.

        Args:
            model: ``'superyolo_mf'`` (RGB+IR), ``'superyolo_rgb'``,
                ``'superyolo_ir'``, ``'superyolo_early'`` (all
                ``in_channels`` bands fused at the input), ``'seadate_yolov5s'``
                or ``'two_stream_yolov5s'`` (SeaDATE's baseline; both read
                ``rgb_bands`` and ``ir_bands`` and have no SR branch), or
                SAR-Net (``'sarnet_n'``, ``'sarnet_s'``: ``in_channels`` bands,
                1 for SAR; no SR branch).
            num_classes: Number of object classes.
            class_names: Names of the classes (default: the data module's,
                else ``class_<i>``).
            rgb_bands: RGB band indices of the input image.
            ir_bands: Infrared band indices of the input image.
            in_channels: Input bands of ``'superyolo_early'`` and SAR-Net.
            width: Channel multiplier of the model (1: the paper's; 0.25: a
                small model for quick CPU training, as in the detection demo).
            super_resolution: Train the SR branch when batches hold ``image_hr``.
            sr_weight: Weight of the SR L1 loss.
            box_gain: YOLOv5 box loss gain.
            obj_gain: YOLOv5 objectness loss gain.
            cls_gain: YOLOv5 class loss gain.
            anchor_threshold: Maximum box/anchor size ratio for assignment.
            label_smoothing: Class label smoothing.
            lr: Base learning rate (SGD, Nesterov).
            momentum: SGD momentum.
            weight_decay: Weight decay of convolution/linear weights.
            warmup_epochs: Linear warm-up length in epochs.
            final_lr_ratio: Learning-rate factor reached at the end (cosine).
            ema: Keep and evaluate with an EMA of the weights.
            ema_decay: EMA decay.
            ema_tau: EMA ramp-up in steps.
            val_score_threshold: Score threshold for mAP evaluation.
            val_iou_threshold: NMS IoU threshold for mAP evaluation.
            score_threshold: Score threshold for prediction.
            iou_threshold: NMS IoU threshold for prediction.
            max_detections: Maximum boxes per image.
            weights: Optional path to initial weights: a task checkpoint or a
                model state dict.
            model_kwargs: Further builder arguments (e.g. SeaDATE's
                ``contrast_weight`` and ``temperature``).
            variant: Deprecated: ``model='superyolo_<variant>'`` (checkpoints
                of earlier versions name the variant).
        """
        if variant is not None:
            warnings.warn(
                f"SuperYOLOTask: variant is deprecated, use model='superyolo_{variant}'",
                DeprecationWarning,
                stacklevel=2,
            )
            model = f'superyolo_{variant}'  # noqa: F841 (recorded from this frame)
        super().__init__()

    # -- set-up -----------------------------------------------------------------

    def build_model(self) -> YOLOv5Detector:
        """Build the model from the hyperparameters.

        Returns:
            The model: a SuperYOLO, a SeaDATE (or its two-stream baseline) or
            a SAR-Net.
        """
        h = self.hparams
        if h['model'].startswith('sarnet_'):
            sarnet: SARNet = get_model(
                h['model'],
                num_classes=h['num_classes'],
                in_channels=h['in_channels'],
                **(h.get('model_kwargs') or {}),
            )
            return sarnet
        kwargs: dict[str, Any] = {'num_classes': h['num_classes']}
        if h.get('width', 1.0) != 1.0:  # older checkpoints have no width
            kwargs['width'] = h['width']
        if not h['model'].startswith('superyolo_'):
            kwargs['rgb_bands'] = list(h['rgb_bands'])
            kwargs['ir_bands'] = list(h['ir_bands'])
            model: YOLOv5Detector = get_model(
                h['model'], **kwargs, **(h.get('model_kwargs') or {})
            )
            return model
        kwargs['super_resolution'] = h['super_resolution']
        variant = h['model'].removeprefix('superyolo_')
        if variant in ('mf', 'rgb'):
            kwargs['rgb_bands'] = list(h['rgb_bands'])
        if variant in ('mf', 'ir'):
            kwargs['ir_bands'] = list(h['ir_bands'])
        if variant == 'early':
            kwargs['in_channels'] = h['in_channels']
        model = get_model(h['model'], **kwargs, **(h.get('model_kwargs') or {}))
        return model

    def configure_models(self) -> None:
        """Build the model, its EMA copy and load initial weights."""
        self.model: nn.Module = self.build_model()
        if not isinstance(self.model, SuperYOLO):
            self.engines = ()  # the inference engines compose SuperYOLO's stem
        weights = self.hparams['weights']
        if weights:
            self.model.load_state_dict(_load_state_dict(weights), strict=False)
        self.ema_model: ExponentialMovingAverage | None = None
        if self.hparams['ema']:
            self.ema_model = ExponentialMovingAverage(
                self.model, self.hparams['ema_decay'], self.hparams['ema_tau']
            )

    def configure_losses(self) -> None:
        """Build the YOLOv5 loss of every head."""
        h = self.hparams
        heads = _heads(self.model)
        self.criteria = nn.ModuleList(
            YOLOv5Loss(
                detect.anchors,
                detect.stride,
                h['num_classes'],
                h['box_gain'],
                h['obj_gain'] * balance,
                h['cls_gain'],
                h['anchor_threshold'],
                h['label_smoothing'],
            )
            for detect, balance in zip(
                heads, OBJECTNESS_BALANCE[len(heads)], strict=True
            )
        )

    def build_metrics(self) -> MetricCollection:
        """COCO-style mAP (pycocotools backend).

        Returns:
            The collection.
        """
        return MetricCollection(
            {'map': MeanAveragePrecision(box_format='xyxy', iou_type='bbox')}
        )

    def configure_optimizers(self) -> OptimizerLRScheduler:
        """SGD (Nesterov) with weight decay on weights only, warm-up + cosine.

        Returns:
            Optimizer and a per-step learning-rate scheduler.
        """
        h = self.hparams
        optimizer = build_optimizer(
            self.param_groups(), 'sgd', h['lr'], h['momentum'], nesterov=True
        )
        total, warmup = schedule_steps(self._trainer, h['warmup_epochs'])
        # YOLOv5's one-cycle: the cosine spans the run, the warm-up ramp scales it.
        scheduler = warmup_cosine(
            optimizer, warmup, total, h['final_lr_ratio'], cosine_from='start'
        )
        return {
            'optimizer': optimizer,
            'lr_scheduler': {'scheduler': scheduler, 'interval': 'step'},
        }

    def param_groups(self) -> list[dict[str, Any]]:
        """Optimiser parameter groups: decayed weights, undecayed biases/norms.

        Returns:
            The groups.
        """
        return decay_groups(self.model, self.hparams['weight_decay'])

    # -- helpers ----------------------------------------------------------------

    @property
    def detector(self) -> YOLOv5Detector:
        """The underlying detector (the student network for GHOST)."""
        model = self.model
        assert isinstance(model, SuperYOLO | SeaDATE | SARNet)
        return model

    def eval_model(self) -> nn.Module:
        """The weights used for evaluation and prediction (EMA if kept).

        Returns:
            The model.
        """
        return self.ema_model.module if self.ema_model is not None else self.model

    def forward(self, x: Tensor) -> Any:
        """Run the evaluation model.

        Args:
            x: Image (B, C, H, W).

        Returns:
            Decoded predictions in eval mode, raw outputs in training mode.
        """
        return self.eval_model()(x)

    def set_engine(
        self, engine: str | None = 'torch', threads: int | None = None
    ) -> SuperYOLOTask:
        """Run :meth:`detect_images` through an inference copy of the model.

        The copy is a snapshot of the current evaluation weights (EMA if kept),
        fused for inference (batch norms folded into the convolutions, the
        super-resolution branch dropped), on the model's current device: move
        the task first. Training again resets the engine; ``set_engine(None)``
        does it by hand.

        Args:
            engine: ``'torch'`` (the fused model, eager, with the stem composed
                and convolution and SiLU as one oneDNN kernel:
                :class:`~torchgeo_ext.models.superyolo_engine.SuperYOLOEagerEngine`),
                ``'onnxruntime'`` (the fused model exported to ONNX and run by
                ONNX Runtime on the CPU:
                :class:`~torchgeo_ext.models.superyolo_engine.SuperYOLOOnnxEngine`)
                or None (the live, unfused evaluation model: the default).
            threads: ONNX Runtime intra-op threads (default: PyTorch's).

        Returns:
            This task, for chaining (``load_task(ckpt).set_engine(...)``).

        Raises:
            ValueError: If *engine* is not one of :attr:`engines`.
            InvalidInputError: If ONNX Runtime is not installed.
        """
        if engine is None:
            object.__setattr__(self, '_inference_model', None)
            return self
        if engine not in self.engines:
            raise ValueError(
                f'engine must be one of {", ".join(self.engines)} or None, '
                f'got {engine!r}'
            )
        from ..models.superyolo_engine import inference_engine

        source = self.eval_model()
        assert isinstance(source, SuperYOLO)
        model = inference_engine(source, engine, threads)
        # Not a submodule: the copy stays out of the state dict and checkpoints.
        object.__setattr__(self, '_inference_model', model)
        return self

    def on_fit_start(self) -> None:
        """Drop the inference copy of :meth:`set_engine`: training changes weights."""
        self.set_engine(None)

    def detect_images(
        self,
        x: Tensor,
        score_threshold: float | None = None,
        iou_threshold: float | None = None,
        normalised: bool = False,
    ) -> list[dict[str, Tensor]]:
        """Detect objects in a batch of images of any size.

        Images are normalised with the recorded normalisation (see
        :meth:`~torchgeo_ext.trainers.base.PluginTask.normalise`), then
        zero-padded at the bottom/right to a multiple of 16, and run through
        the engine chosen by :meth:`set_engine` (default: the evaluation
        model as it is).

        Args:
            x: Image (B, C, H, W): raw values as the rasters or the dataset
                hold them (a checkpoint without a recorded normalisation
                expects them normalised as in training).
            score_threshold: Minimum score (default: the task's).
            iou_threshold: NMS IoU threshold (default: the task's).
            normalised: ``x`` is already normalised (a data module's batch).

        Returns:
            Per image ``prediction_bbox_xyxy`` (N, 4), ``prediction_label``
            (N,), ``prediction_score`` (N,).
        """
        if not normalised:
            x = self.normalise(x)
        h, w = x.shape[-2:]
        x = pad_to_stride(x, 16)
        model = self._inference_model
        if model is None:
            model = self.eval_model()
        was_training = model.training
        model.eval()
        with torch.no_grad():
            decoded = model(x)
        model.train(was_training)
        results = postprocess(
            decoded,
            self.hparams['score_threshold']
            if score_threshold is None
            else score_threshold,
            self.hparams['iou_threshold'] if iou_threshold is None else iou_threshold,
            self.hparams['max_detections'],
        )
        out = []
        for r in results:
            boxes = r['boxes'].clone()
            boxes[:, 0::2] = boxes[:, 0::2].clamp(0, w)
            boxes[:, 1::2] = boxes[:, 1::2].clamp(0, h)
            out.append(
                {
                    'prediction_bbox_xyxy': boxes,
                    'prediction_label': r['labels'],
                    'prediction_score': r['scores'],
                }
            )
        return out

    def compute_loss(
        self, batch: Batch, model: nn.Module
    ) -> tuple[dict[str, Tensor], RawOutput]:
        """YOLOv5 loss plus the weighted SR loss and the model's auxiliary losses.

        The SR loss applies with ``image_hr`` in the batch; auxiliary losses
        come, in training, from a model that defines ``forward_with_losses``
        (SeaDATE's contrastive alignment), already weighted by the model.

        Args:
            batch: A batch.
            model: The SuperYOLO, SeaDATE or SAR-Net to run.

        Returns:
            The total under ``'loss'`` with its (detached) terms (``loss_det``,
            ``loss_box``, ``loss_obj``, ``loss_cls`` summed over the heads,
            ``loss_sr``, ``loss_<auxiliary name>``), and the raw head output (a
            list over SAR-Net's levels).
        """
        assert isinstance(model, SuperYOLO | SeaDATE | SARNet)
        use_sr = (
            model.training
            and model.sr is not None
            and self.hparams['sr_weight'] > 0
            and 'image_hr' in batch
        )
        auxiliary: dict[str, Tensor] = {}
        forward_with_losses = getattr(model, 'forward_with_losses', None)
        if model.training and forward_with_losses is not None:
            raw, auxiliary = forward_with_losses(batch['image'])
            sr = None
        else:
            raw, sr = model.forward_raw(batch['image'], with_sr=use_sr)
        loss, parts = self.detection_loss(raw, batch)
        parts = {'loss_det': loss.detach(), **parts}
        for name, value in auxiliary.items():
            loss = loss + value
            parts[f'loss_{name}'] = value.detach()
        if sr is not None:
            target = batch['image_hr'][:, model.bands]
            if target.shape[-2:] != sr.shape[-2:]:
                target = F.interpolate(target, size=sr.shape[-2:], mode='bilinear')
            loss_sr = F.l1_loss(sr, target)
            loss = loss + self.hparams['sr_weight'] * loss_sr
            parts['loss_sr'] = loss_sr.detach()
        return {'loss': loss, **parts}, raw

    def detection_loss(
        self, raw: RawOutput, batch: Batch
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """The YOLOv5 loss summed over the heads.

        Args:
            raw: Raw head output (a list over SAR-Net's levels).
            batch: The batch (``bbox_xyxy``, ``label``).

        Returns:
            The loss and its (detached) box, objectness and class terms.
        """
        levels = raw if isinstance(raw, list) else [raw]
        loss = levels[0].new_zeros(())
        parts: dict[str, Tensor] = {}
        for criterion, level in zip(self.criteria, levels, strict=True):
            level_loss, level_parts = criterion(
                level, batch['bbox_xyxy'], batch['label']
            )
            loss = loss + level_loss
            for key, value in level_parts.items():
                parts[key] = parts[key] + value if key in parts else value
        return loss, parts

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Restore the normalisation; read the single loss of older checkpoints.

        Args:
            checkpoint: The loaded checkpoint dictionary.
        """
        super().on_load_checkpoint(checkpoint)
        state = checkpoint.get('state_dict', {})
        if 'criterion.anchors' in state:  # one head, before SAR-Net's three
            state['criteria.0.anchors'] = state.pop('criterion.anchors')

    # -- steps ------------------------------------------------------------------

    def training_step(
        self, batch: Batch, batch_idx: int, dataloader_idx: int = 0
    ) -> Tensor:
        """Compute the training loss.

        Args:
            batch: The batch.
            batch_idx: Batch index.
            dataloader_idx: Data loader index.

        Returns:
            The loss.
        """
        terms, _ = self.compute_loss(batch, self.model)
        self.log_losses(terms, 'train', batch['image'].shape[0])
        return terms['loss']

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        """Update the EMA weights.

        Args:
            outputs: Step outputs.
            batch: The batch.
            batch_idx: Batch index.
        """
        if self.ema_model is not None:
            self.ema_model.update_parameters(self.model)

    def _evaluate(self, batch: Batch, prefix: str) -> None:
        model = self.eval_model()
        assert isinstance(model, SuperYOLO | SeaDATE | SARNet)
        model.eval()
        with torch.no_grad():
            terms, raw = self.compute_loss(batch, model)
            decoded = decode(model, raw)
        bs = batch['image'].shape[0]
        self.log(f'{prefix}_loss', terms['loss'], batch_size=bs)
        preds = postprocess(
            decoded,
            self.hparams['val_score_threshold'],
            self.hparams['val_iou_threshold'],
            self.hparams['max_detections'],
        )
        targets = [
            {'boxes': b.float(), 'labels': lab.long()}
            for b, lab in zip(batch['bbox_xyxy'], batch['label'])
        ]
        self.stage_metrics(prefix).update(
            [
                {k: v.float() if k != 'labels' else v for k, v in p.items()}
                for p in preds
            ],
            targets,
        )

    def validation_step(
        self, batch: Batch, batch_idx: int, dataloader_idx: int = 0
    ) -> None:
        """Accumulate validation loss and mAP.

        Args:
            batch: The batch.
            batch_idx: Batch index.
            dataloader_idx: Data loader index.
        """
        self._evaluate(batch, 'val')

    def test_step(self, batch: Batch, batch_idx: int, dataloader_idx: int = 0) -> None:
        """Accumulate test loss and mAP.

        Args:
            batch: The batch.
            batch_idx: Batch index.
            dataloader_idx: Data loader index.
        """
        self._evaluate(batch, 'test')

    def predict_step(
        self, batch: Batch, batch_idx: int, dataloader_idx: int = 0
    ) -> Batch:
        """Detect objects.

        Args:
            batch: The batch (``image``; ``transform``/``crs`` are passed through).
            batch_idx: Batch index.
            dataloader_idx: Data loader index.

        Returns:
            ``prediction_bbox_xyxy``, ``prediction_label``, ``prediction_score``
            (lists over the batch), plus the batch's pass-through keys.
        """
        results = self.detect_images(batch['image'], normalised=True)
        out: Batch = {
            key: [r[key] for r in results]
            for key in ('prediction_bbox_xyxy', 'prediction_label', 'prediction_score')
        }
        return self.passthrough(batch, out)


class GHOSTTask(SuperYOLOTask):
    """GHOST: hybrid-bit quantised SuperYOLO guided by its full-precision self.

    The student is the SuperYOLO described by the hyperparameters (by default
    the paper's VEDAI model: 4-band early fusion), initialised from the
    teacher checkpoint, with every convolution quantised to the bit width
    chosen by k-means (:func:`~torchgeo_ext.models.ghost.allocate_bits`).
    The loss is ``det_weight * L_det + ost_weight * L_OST``.
    """

    #: No inference engine: folding batch norms into the quantised convolutions
    #: would change what they quantise.
    engines: tuple[str, ...] = ()
    models = ('superyolo_mf', 'superyolo_rgb', 'superyolo_ir', 'superyolo_early')

    def __init__(
        self,
        model: str = 'superyolo_early',
        teacher: str | None = None,
        fixed_bits: int | None = None,
        bit_widths: dict[str, int] | None = None,
        activation_bits: int | None = None,
        kmeans_threshold: float = 0.1,
        det_weight: float = 2.0,
        ost_weight: float = 400.0,
        ost_dim: int = 128,
        gumbel_tau: float = 1.0,
        super_resolution: bool = False,
        **kwargs: Any,
    ) -> None:
        """Initialise a new GHOSTTask.

        Args:
            model: SuperYOLO of teacher and student (``'superyolo_early'``
                for the paper's VEDAI model).
            teacher: Checkpoint of the trained full-precision model (a
                :class:`SuperYOLOTask` checkpoint or a model state dict). The
                student starts from the same weights. Without it, both start
                from the same random initialisation (for tests only).
            fixed_bits: Use this weight bit width everywhere instead of k-means.
            bit_widths: Weight bit widths by layer (e.g. from :meth:`report`);
                saved checkpoints record them here so that loading needs no
                k-means.
            activation_bits: Activation bit width (default: each layer's weight
                bit width).
            kmeans_threshold: Threshold of the k-means allocation criterion.
            det_weight: Weight of the detection loss.
            ost_weight: Weight of the one-to-one self-teaching loss.
            ost_dim: Embedding width of the switch control gate.
            gumbel_tau: Temperature of the gate's Gumbel-sigmoid.
            super_resolution: Train the SR branch as well (off in GHOST).
            **kwargs: The other :class:`SuperYOLOTask` arguments (``weights``
                is a path to initial student weights, overriding the teacher's).
        """
        # The arguments whose defaults differ from SuperYOLOTask's are passed on
        # by name: Lightning records each __init__ frame's values.
        super().__init__(model=model, super_resolution=super_resolution, **kwargs)

    def configure_models(self) -> None:
        """Build the teacher, the quantised student, the OST module and the EMA."""
        h = self.hparams
        teacher = self.build_model()
        assert isinstance(teacher, SuperYOLO)  # GHOST quantises SuperYOLO only
        if h['teacher']:
            teacher.load_state_dict(_load_state_dict(h['teacher']), strict=False)
        teacher.sr = None
        student = copy.deepcopy(teacher)
        if h['super_resolution']:
            fresh = self.build_model()
            assert isinstance(fresh, SuperYOLO)
            student.sr = fresh.sr
        if h['weights']:
            student.load_state_dict(_load_state_dict(h['weights']), strict=False)
        self.bit_widths = quantize_superyolo(
            student,
            fixed_bits=h['fixed_bits'],
            activation_bits=h['activation_bits'],
            threshold=h['kmeans_threshold'],
            bit_widths=h['bit_widths'],
        )
        teacher.eval().requires_grad_(False)
        self.teacher = teacher
        self.model = student
        self.teacher_tap = FeatureTap(teacher, SELF_TEACHING_LAYERS)
        self.student_tap = FeatureTap(student, SELF_TEACHING_LAYERS)
        channels = _layer_channels(student, SELF_TEACHING_LAYERS)
        self.ost = OneToOneSelfTeaching(channels, h['ost_dim'], h['gumbel_tau'])
        self.ema_model = None
        if h['ema']:
            self.ema_model = ExponentialMovingAverage(
                self.model, h['ema_decay'], h['ema_tau']
            )

    @property
    def detector(self) -> SuperYOLO:
        """The quantised SuperYOLO student."""
        model = self.model
        assert isinstance(model, SuperYOLO)
        return model

    def param_groups(self) -> list[dict[str, Any]]:
        """The student's groups plus the OST gates (the teacher stays frozen).

        Returns:
            The groups.
        """
        ost = [p for p in self.ost.parameters() if p.requires_grad]
        return [*super().param_groups(), {'params': ost, 'weight_decay': 0.0}]

    def on_train_epoch_start(self) -> None:
        """Keep the teacher in eval mode (frozen batch-norm statistics)."""
        self.teacher.eval()

    def training_step(
        self, batch: Batch, batch_idx: int, dataloader_idx: int = 0
    ) -> Tensor:
        """Detection loss of the student plus the self-teaching loss.

        Args:
            batch: The batch.
            batch_idx: Batch index.
            dataloader_idx: Data loader index.

        Returns:
            The loss.
        """
        h = self.hparams
        self.teacher.eval()
        with self.student_tap.capture() as student_feats:
            terms, _ = self.compute_loss(batch, self.model)
        with self.teacher_tap.capture() as teacher_feats, torch.no_grad():
            self.teacher.forward_raw(batch['image'])
        ost_loss, gates = self.ost(student_feats, teacher_feats)
        loss = h['det_weight'] * terms['loss'] + h['ost_weight'] * ost_loss
        bs = batch['image'].shape[0]
        self.log_losses({**terms, 'loss': loss, 'loss_ost': ost_loss}, 'train', bs)
        self.log('train_gate_open', gates.mean(), batch_size=bs)
        return loss

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Record the task class; drop the teacher path (its weights are saved).

        Args:
            checkpoint: The checkpoint dictionary Lightning is about to save.
        """
        super().on_save_checkpoint(checkpoint)
        hparams = checkpoint.get('hyper_parameters')
        if isinstance(hparams, dict):
            hparams['teacher'] = None
            hparams['weights'] = None
            hparams['bit_widths'] = dict(self.bit_widths)

    def report(self, input_shape: tuple[int, ...] | None = None) -> dict[str, Any]:
        """Per-layer bit widths, model size in MB and BOPs of the student.

        Args:
            input_shape: Input shape for the BOPs (default 1 x bands x 512 x 512).

        Returns:
            ``weight_bits``, ``activation_bits``, ``size_mb``, ``fp32_size_mb``
            and ``gbops``.
        """
        model = self.detector
        if input_shape is None:
            input_shape = (1, max(model.bands) + 1, 512, 512)
        r = quantization_report(model, input_shape)
        return {
            'weight_bits': r.weight_bits,
            'activation_bits': r.activation_bits,
            'size_mb': r.size_mb,
            'fp32_size_mb': r.fp32_size_mb,
            'gbops': r.gbops,
        }


def _head(model: nn.Module) -> Detect:
    """The anchor head of a SuperYOLO-family detector (its loss is built from it).

    Args:
        model: A SuperYOLO or SeaDATE.

    Returns:
        Its :class:`~torchgeo_ext.models.superyolo.Detect` head.

    Raises:
        TypeError: If the model has no such head.
    """
    detect = getattr(model, 'detect', None)
    if not isinstance(detect, Detect):
        raise TypeError(f'{type(model).__name__} has no SuperYOLO Detect head')
    return detect


def _heads(model: nn.Module) -> list[Detect]:
    """The anchor heads of a detector: SAR-Net's three, else the one of :func:`_head`.

    Args:
        model: A SuperYOLO, SeaDATE or SAR-Net.

    Returns:
        Its heads, finest stride first.
    """
    return model.heads() if isinstance(model, SARNet) else [_head(model)]


def decode(model: nn.Module, raw: RawOutput) -> Tensor:
    """Decode the raw output of every head into boxes in pixels.

    Args:
        model: The detector.
        raw: Its raw head output.

    Returns:
        (B, N, 5 + classes): boxes (cx, cy, w, h), objectness and class
        probabilities of all heads.
    """
    levels = raw if isinstance(raw, list) else [raw]
    heads = _heads(model)
    return torch.cat([h.decode(r) for h, r in zip(heads, levels, strict=True)], 1)


def _layer_channels(model: SuperYOLO, names: Sequence[str]) -> list[int]:
    """Output channels of named layers, from a shape-only pass on the meta device.

    Args:
        model: The model.
        names: Layer names.

    Returns:
        Channels per layer.
    """
    probe = copy.deepcopy(model).to('meta').eval()
    tap = FeatureTap(probe, names)
    with tap.capture() as feats, torch.no_grad():
        probe.forward_raw(torch.zeros(1, max(model.bands) + 1, 64, 64, device='meta'))
    return [int(f.shape[1]) for f in feats]
