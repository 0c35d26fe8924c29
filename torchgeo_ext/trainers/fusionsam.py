"""FusionSAM semantic segmentation task (RGB-thermal: MFNet, FMB)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from lightning.pytorch.utilities.types import OptimizerLRScheduler
from torch import Tensor

from ..errors import MissingInputError
from ..losses.fusionsam import FusionSAMLoss
from ..models.api import get_model
from ..models.fusionsam import FusionSAM
from .optimization import build_optimizer, decay_groups, schedule_steps, warmup_cosine
from .segmentation import SemanticSegmentationBase

__all__ = ['FusionSAMTask']


class FusionSAMTask(SemanticSegmentationBase):
    """RGB-thermal semantic segmentation with FusionSAM.

    Trains :class:`~torchgeo_ext.models.fusionsam.FusionSAM` (SAM's image
    encoder frozen; LSTG codebooks, fusion, prompt encoder and mask decoder
    trained) with :class:`~torchgeo_ext.losses.fusionsam.FusionSAMLoss`.

    Logs ``<stage>_loss`` and its terms (``<stage>_ce``, ``_dice``,
    ``_codebook``, ``_commitment``), ``<stage>_mIoU`` (mean over the classes
    other than ``ignore_index``), ``<stage>_accuracy`` and one
    ``<stage>_IoU_<class name>`` per class. ``predict_step`` returns
    ``prediction`` (B, H, W) class ids and the batch's georeferencing keys.

    Checkpoints hold every weight, the frozen SAM encoder included, so
    :func:`~torchgeo_ext.trainers.base.load_task` needs no SAM checkpoint.
    Metrics, steps and prediction come from
    :class:`~torchgeo_ext.trainers.segmentation.SemanticSegmentationBase`.
    """

    models = ('fusionsam_vit_b', 'fusionsam_vit_l', 'fusionsam_vit_h', 'fusionsam_tiny')

    def __init__(
        self,
        model: str = 'fusionsam_vit_b',
        sam_checkpoint: str | None = None,
        num_classes: int = 9,
        class_names: Sequence[str] | None = None,
        ignore_index: int | None = None,
        rgb_bands: Sequence[int] = (0, 1, 2),
        thermal_band: int = 3,
        codebook_size: int = 512,
        num_prompt_tokens: int = 4,
        fusion_depth: int = 1,
        dice_weight: float = 1.0,
        vq_weight: float = 1.0,
        beta: float = 0.25,
        optimizer: str = 'adamw',
        lr: float = 1e-4,
        weight_decay: float = 1e-4,
        warmup_epochs: float = 1.0,
        final_lr_ratio: float = 0.01,
        model_kwargs: dict[str, Any] | None = None,
        normalisation: dict[str, Any] | None = None,
    ) -> None:
        """Initialise a new FusionSAMTask.

        Args:
            model: ``fusionsam_vit_b`` (the paper), ``fusionsam_vit_l``,
                ``fusionsam_vit_h`` or ``fusionsam_tiny`` (tests).
            sam_checkpoint: SAM state dict of the model's variant (e.g.
                ``sam_vit_b_01ec64.pth``); None: random SAM weights (tests only).
            num_classes: Output classes (MFNet 9, FMB 15 with unlabelled).
            class_names: One name per class (default ``class_<k>``).
            ignore_index: Target value left out of loss and metrics (None: none;
                MFNet's usual protocol counts ``unlabelled``, FMB's does not).
            rgb_bands: Input bands of the visible image.
            thermal_band: Input band of the thermal image.
            codebook_size: Codes per modality codebook.
            num_prompt_tokens: Sparse prompt tokens made from the fused tokens.
            fusion_depth: Rounds of two-way cross-attention in the fusion module.
            dice_weight: Weight of the Dice term.
            vq_weight: Weight of the vector-quantisation terms.
            beta: Commitment weight.
            optimizer: ``adamw``, ``adam`` or ``sgd``.
            lr: Peak learning rate.
            weight_decay: Weight decay (not on biases and norms).
            warmup_epochs: Linear warm-up length, then cosine decay per step.
            final_lr_ratio: Learning rate at the end, as a fraction of ``lr``.
            model_kwargs: Further :class:`~torchgeo_ext.models.fusionsam.FusionSAM`
                arguments.
            normalisation: The input normalisation recorded at fit time (see
                :class:`~torchgeo_ext.trainers.base.PluginTask`); accepted so that
                ``test``/``predict --ckpt_path`` can pass a checkpoint's
                hyperparameters back. Leave it None.
        """
        super().__init__()

    @classmethod
    def load_from_checkpoint(  # type: ignore[override]
        cls, checkpoint_path: Any, *args: Any, **kwargs: Any
    ) -> FusionSAMTask:
        """Load a task; SAM's weights come from the checkpoint, not the SAM file.

        Args:
            checkpoint_path: The Lightning checkpoint.
            *args: Passed to Lightning's ``load_from_checkpoint``.
            **kwargs: Passed on; ``sam_checkpoint`` defaults to None (the
                checkpoint already holds the SAM weights).

        Returns:
            The task.
        """
        kwargs.setdefault('sam_checkpoint', None)
        task: FusionSAMTask = super().load_from_checkpoint(
            checkpoint_path, *args, **kwargs
        )
        return task

    @property
    def in_channels(self) -> int:
        """Number of input bands the model reads."""
        hp = self.hparams
        return int(max(*hp['rgb_bands'], hp['thermal_band'])) + 1

    def configure_models(self) -> None:
        """Build the model through the registry.

        A ``sam_checkpoint`` that does not exist is not an error yet: a task
        checkpoint restored afterwards (``load_task``, ``--ckpt_path``, whose
        hyperparameters name the SAM file of the machine that trained it)
        brings SAM's weights. Using the task before that raises
        :class:`~torchgeo_ext.errors.MissingInputError`.
        """
        hp = self.hparams
        kwargs = dict(hp['model_kwargs'] or {})
        sam_checkpoint = hp['sam_checkpoint']
        #: A SAM file that was not found and whose weights no checkpoint gave yet.
        self.missing_sam: str | None = None
        if sam_checkpoint is not None and not os.path.isfile(sam_checkpoint):
            self.missing_sam, sam_checkpoint = str(sam_checkpoint), None
        self.model: FusionSAM = get_model(
            hp['model'],
            num_classes=hp['num_classes'],
            sam_checkpoint=sam_checkpoint,
            rgb_bands=tuple(hp['rgb_bands']),
            thermal_band=hp['thermal_band'],
            codebook_size=hp['codebook_size'],
            num_prompt_tokens=hp['num_prompt_tokens'],
            fusion_depth=hp['fusion_depth'],
            **kwargs,
        )

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Restore the recorded normalisation; SAM's weights come with the checkpoint.

        Args:
            checkpoint: The loaded checkpoint dictionary.
        """
        super().on_load_checkpoint(checkpoint)
        self.missing_sam = None

    def _check_sam(self) -> None:
        if self.missing_sam is not None:
            raise MissingInputError(
                self.missing_sam,
                'SAM checkpoint not found, and no task checkpoint with SAM weights '
                'was loaded',
            )

    def configure_losses(self) -> None:
        """Initialise the loss."""
        hp = self.hparams
        self.criterion = FusionSAMLoss(
            hp['ignore_index'], hp['dice_weight'], hp['vq_weight'], hp['beta']
        )

    def configure_optimizers(self) -> OptimizerLRScheduler:
        """AdamW on the trainable parameters, linear warm-up then cosine decay per step.

        Returns:
            Optimizer and scheduler.
        """
        hp = self.hparams
        optimizer = build_optimizer(
            decay_groups(self, hp['weight_decay']),
            hp['optimizer'],
            lr=hp['lr'],
            weight_decay=hp['weight_decay'],
        )
        total, warmup = schedule_steps(self.trainer, hp['warmup_epochs'])
        scheduler = warmup_cosine(optimizer, warmup, total, hp['final_lr_ratio'])
        return {
            'optimizer': optimizer,
            'lr_scheduler': {'scheduler': scheduler, 'interval': 'step'},
        }

    def forward(self, x: Tensor) -> Tensor:
        """Compute logits.

        Args:
            x: Images (B, C, H, W) in [0, 1].

        Returns:
            Logits (B, num_classes, H, W).
        """
        self._check_sam()
        logits: Tensor = self.model(x)
        return logits

    def compute_loss(self, x: Tensor, y: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        """The logits and the loss: cross-entropy, Dice and the codebook terms.

        Args:
            x: Images (B, C, H, W) in [0, 1].
            y: Targets (B, H, W) int64.

        Returns:
            The logits, and ``loss`` with ``ce``, ``dice``, ``codebook`` and
            ``commitment``.
        """
        self._check_sam()
        out = self.model.forward_with_latents(x)
        terms = self.criterion(out.logits, y, out.latents)
        keys = ('loss', 'ce', 'dice', 'codebook', 'commitment')
        return out.logits, {k: terms[k] for k in keys}
