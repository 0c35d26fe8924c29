"""STAD: small target aware detector for hyperspectral anomaly detection.

Ma, Xie, Li, "Exploring Hyperspectral Anomaly Detection with Human Vision: A
Small Target Aware Detector". Pieces (see ``docs/models/anomaly.md``):

* :class:`STADTeacher`: three post-norm transformer encoder stages over
  *pixel tokens* (``d_model`` = bands, 2 heads, FFN 1000); each stage
  reconstructs the background spectra. Trained on anomaly-free scenes
  (HAD100 train crops, 64 x 64, first 10 bands) whose input carries synthetic
  blob anomalies (1-32 blobs of 3-20 px, input ``x * (1 + mask)``), loss the
  sum of the stage MSEs against the clean scene (:func:`teacher_loss`).
* :class:`STADStudent`: a light CNN with one reconstruction per stage,
  distilled from the teacher stage by stage (:func:`distillation_loss`).
* :func:`small_target_filter`: RX map -> bilateral filter (Kornia) ->
  subtract its median -> clamp at 0; it keeps small, compact responses.
* :func:`saliency_scores`: the score map is the max over bands of
  ``|d/dx mean(STF * sum of stage errors)|``.

Attention is over all pixels of a window, so its cost grows with the square
of the window's pixel count: :func:`stad_scores` processes large scenes in
``window x window`` tiles (64 by default, the training crop size). Any band
count works: spectra are resampled to the model's band count
(:func:`torchgeo_ext.models.bsdm.align_bands`).
"""

from __future__ import annotations

import os
from typing import Any

import torch
import torch.nn.functional as F
from numpy.typing import NDArray
from torch import Tensor, nn

from .bsdm import align_bands

__all__ = (
    'STADStudent',
    'STADTeacher',
    'distillation_loss',
    'saliency_scores',
    'small_target_filter',
    'stad_scores',
    'synthetic_blobs',
    'teacher_loss',
)


def _standardise(x: Tensor) -> Tensor:
    """Min-max scale each image of a ``B x C x H x W`` batch to [0, 1]."""
    low = x.amin(dim=(1, 2, 3), keepdim=True)
    high = x.amax(dim=(1, 2, 3), keepdim=True)
    return (x - low) / (high - low).clamp_min(1e-12)


class STADTeacher(nn.Module):
    """Transformer teacher: ``B x C x H x W`` -> one reconstruction per stage."""

    def __init__(
        self, in_channels: int = 10, stages: int = 3, heads: int = 2, ffn: int = 1000
    ) -> None:
        """Initialise the teacher (defaults: the paper's).

        Args:
            in_channels: Bands = token size (divisible by ``heads``).
            stages: Number of encoder stages.
            heads: Attention heads.
            ffn: Feed-forward width.
        """
        super().__init__()
        if in_channels % heads:
            raise ValueError(
                f'in_channels ({in_channels}) must be divisible by heads ({heads})'
            )
        self.in_channels = in_channels
        self.stages = nn.ModuleList(
            nn.TransformerEncoderLayer(
                in_channels,
                heads,
                dim_feedforward=ffn,
                dropout=0.0,
                batch_first=True,
                norm_first=False,
            )
            for _ in range(stages)
        )

    def forward(self, x: Tensor) -> list[Tensor]:
        """Reconstruct.

        Args:
            x: ``B x C x H x W`` images (standardised to [0, 1]).

        Returns:
            ``stages`` reconstructions, each ``B x C x H x W``.
        """
        b, c, h, w = x.shape
        tokens = x.flatten(2).transpose(1, 2)  # B x HW x C
        outputs = []
        for stage in self.stages:
            tokens = stage(tokens)
            outputs.append(tokens.transpose(1, 2).reshape(b, c, h, w))
        return outputs


class STADStudent(nn.Module):
    """Light convolutional student: one reconstruction per teacher stage."""

    def __init__(self, in_channels: int = 10, stages: int = 3, width: int = 32) -> None:
        """Initialise the student.

        Args:
            in_channels: Bands.
            stages: Number of stages (as the teacher's).
            width: Hidden channels.
        """
        super().__init__()
        self.in_channels = in_channels
        self.stages = nn.ModuleList(
            nn.Sequential(
                nn.Conv2d(in_channels, width, 3, padding=1),
                nn.GELU(),
                nn.Conv2d(width, width, 3, padding=1, groups=width),
                nn.GELU(),
                nn.Conv2d(width, in_channels, 1),
            )
            for _ in range(stages)
        )

    def forward(self, x: Tensor) -> list[Tensor]:
        """Reconstruct.

        Args:
            x: ``B x C x H x W`` images.

        Returns:
            One ``B x C x H x W`` reconstruction per stage.
        """
        outputs = []
        h = x
        for stage in self.stages:
            h = h + stage(h)
            outputs.append(h)
        return outputs


def synthetic_blobs(
    batch: int,
    height: int,
    width: int,
    *,
    count: tuple[int, int] = (1, 32),
    area: tuple[int, int] = (3, 20),
    generator: torch.Generator | None = None,
) -> Tensor:
    """Random compact blobs for training on anomaly-free scenes.

    Each blob is the ``a`` pixels nearest to a random centre under a random
    elliptical metric (``a`` uniform in ``area``), so blobs are compact and of
    exact size.

    Args:
        batch: Number of masks.
        height: Mask height.
        width: Mask width.
        count: Range of blobs per mask (inclusive).
        area: Range of blob areas in pixels (inclusive).
        generator: Random generator.

    Returns:
        ``batch x 1 x height x width`` float mask in {0, 1}.
    """
    rows = torch.arange(height, dtype=torch.float32)[:, None]
    cols = torch.arange(width, dtype=torch.float32)[None, :]
    mask = torch.zeros(batch, 1, height, width)
    for b in range(batch):
        n = int(torch.randint(count[0], count[1] + 1, (1,), generator=generator))
        for _ in range(n):
            a = int(torch.randint(area[0], area[1] + 1, (1,), generator=generator))
            cy, cx, stretch, angle = torch.rand(4, generator=generator).tolist()
            cy, cx = cy * (height - 1), cx * (width - 1)
            stretch = 0.5 + 1.5 * stretch
            cos, sin = (
                torch.tensor(angle * 3.1416).cos(),
                torch.tensor(angle * 3.1416).sin(),
            )
            u = (rows - cy) * cos + (cols - cx) * sin
            v = -(rows - cy) * sin + (cols - cx) * cos
            dist = (u / stretch) ** 2 + (v * stretch) ** 2
            nearest = dist.reshape(-1).argsort()[: min(a, height * width)]
            mask[b, 0].view(-1)[nearest] = 1
    return mask


def teacher_loss(outputs: list[Tensor], clean: Tensor) -> Tensor:
    """Sum over stages of the reconstruction MSE against the clean scene.

    Args:
        outputs: Stage reconstructions.
        clean: ``B x C x H x W`` anomaly-free input.

    Returns:
        Scalar loss.
    """
    return torch.stack([F.mse_loss(out, clean) for out in outputs]).sum()


def distillation_loss(student: list[Tensor], teacher: list[Tensor]) -> Tensor:
    """Stage-wise MSE between student and (detached) teacher reconstructions.

    Args:
        student: Student stage outputs.
        teacher: Teacher stage outputs.

    Returns:
        Scalar loss.
    """
    return torch.stack(
        [F.mse_loss(s, t.detach()) for s, t in zip(student, teacher)]
    ).sum()


def small_target_filter(
    rx_map: Tensor,
    kernel_size: int = 5,
    sigma_color: float = 0.1,
    sigma_space: float = 1.5,
) -> Tensor:
    """Small target filter: bilateral-filtered RX map minus its median, clamped at 0.

    Args:
        rx_map: ``B x 1 x H x W`` (or ``H x W``) RX scores.
        kernel_size: Bilateral kernel size (odd).
        sigma_color: Range sigma, relative to the map normalised to [0, 1].
        sigma_space: Spatial sigma in pixels.

    Returns:
        Filter weights of the input's shape, >= 0.
    """
    from kornia.filters import bilateral_blur

    squeeze = rx_map.ndim == 2
    x = rx_map[None, None] if squeeze else rx_map
    x = torch.nan_to_num(x.to(torch.float32), nan=0.0)
    low = x.amin(dim=(2, 3), keepdim=True)
    high = x.amax(dim=(2, 3), keepdim=True)
    x = (x - low) / (high - low).clamp_min(1e-12)
    smooth = bilateral_blur(
        x, (kernel_size, kernel_size), sigma_color, (sigma_space, sigma_space)
    )
    median = smooth.flatten(1).median(dim=1).values.view(-1, 1, 1, 1)
    out = (smooth - median).clamp_min(0)
    return out[0, 0] if squeeze else out


def saliency_scores(model: nn.Module, x: Tensor, stf: Tensor) -> Tensor:
    """Gradient saliency: max over bands of ``|d/dx mean(STF * sum of stage errors)|``.

    Args:
        model: Teacher or student (returns a list of stage reconstructions).
        x: ``B x C x H x W`` standardised images.
        stf: ``B x 1 x H x W`` small target filter weights.

    Returns:
        ``B x H x W`` saliency.
    """
    with torch.enable_grad():
        inp = x.detach().clone().requires_grad_(True)
        outputs = model(inp)
        error = torch.stack(
            [(out - inp).square().sum(dim=1, keepdim=True) for out in outputs]
        )
        objective = (stf * error.sum(dim=0)).mean()
        (grad,) = torch.autograd.grad(objective, inp)
    return grad.abs().amax(dim=1)


def stad_scores(
    cube: Tensor | NDArray[Any],
    *,
    checkpoint: str | os.PathLike[str] | None = None,
    model: nn.Module | None = None,
    student: bool = False,
    window: int = 64,
    valid_mask: Tensor | NDArray[Any] | None = None,
) -> Tensor:
    """STAD scores of a scene.

    Args:
        cube: ``C x H x W`` scene (any band count: resampled to the model's).
        checkpoint: Anomaly-task checkpoint with a STAD model.
        model: A teacher or student to use instead of a checkpoint.
        student: With a checkpoint, use the distilled student rather than the teacher.
        window: Side of the tiles attention runs over (bounds its quadratic cost).
        valid_mask: Optional ``H x W`` mask; invalid pixels are zeroed and score NaN.

    Returns:
        ``H x W`` float32 scores.

    Raises:
        ValueError: If neither a checkpoint nor a model is given.
    """
    from .rx import rx_scores

    if model is None:
        if checkpoint is None:
            raise ValueError('stad_scores needs a checkpoint or a model')
        model = load_stad(checkpoint, student=student)
    model.eval()
    x = torch.as_tensor(cube).to(torch.float32)
    _, h, w = x.shape
    valid = torch.isfinite(x).all(dim=0)
    if valid_mask is not None:
        valid &= torch.as_tensor(valid_mask, dtype=torch.bool)
    x = torch.where(valid[None], x, torch.zeros(()))
    bands = int(getattr(model, 'in_channels', x.shape[0]))
    aligned = align_bands(x.permute(1, 2, 0), bands).permute(2, 0, 1)[None]
    aligned = _standardise(aligned)
    stf = small_target_filter(rx_scores(aligned[0], valid).nan_to_num(0.0)[None, None])
    scores = torch.zeros(h, w)
    for r0 in range(0, h, window):
        for c0 in range(0, w, window):
            tile = aligned[:, :, r0 : r0 + window, c0 : c0 + window]
            weights = stf[:, :, r0 : r0 + window, c0 : c0 + window]
            scores[r0 : r0 + window, c0 : c0 + window] = saliency_scores(
                model, tile, weights
            )[0]
    return scores.masked_fill(~valid, float('nan'))


def load_stad(checkpoint: str | os.PathLike[str], student: bool = False) -> nn.Module:
    """The STAD teacher (EMA weights) or student of an anomaly-task checkpoint.

    Args:
        checkpoint: Checkpoint of :class:`torchgeo_ext.trainers.anomaly.AnomalyDetectionTask`.
        student: Return the student instead of the teacher.

    Returns:
        The model, in eval mode.

    Raises:
        InvalidInputError: If the checkpoint holds no STAD model.
    """
    from ..errors import InvalidInputError
    from ..trainers.base import load_task

    task = load_task(checkpoint)
    name = 'student' if student else 'ema_teacher'
    model = getattr(task, name, None)
    if not isinstance(model, STADStudent | STADTeacher):
        raise InvalidInputError(
            checkpoint, 'not a STAD checkpoint (no STAD teacher/student)'
        )
    model.eval()
    return model
