"""Losses of the hyperspectral anomaly detectors: STAD teacher and distillation terms."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ('stad_distillation_loss', 'stad_teacher_loss')


def stad_teacher_loss(outputs: list[Tensor], clean: Tensor) -> Tensor:
    """Sum over stages of the reconstruction MSE against the clean scene.

    BSDM has no loss here: it trains on the plain noise MSE
    (``torch.nn.functional.mse_loss``).

    Args:
        outputs: Stage reconstructions.
        clean: ``B x C x H x W`` anomaly-free input.

    Returns:
        Scalar loss.
    """
    return torch.stack([F.mse_loss(out, clean) for out in outputs]).sum()


def stad_distillation_loss(student: list[Tensor], teacher: list[Tensor]) -> Tensor:
    """Stage-wise MSE between student and (detached) teacher reconstructions.

    Args:
        student: Student stage outputs.
        teacher: Teacher stage outputs.

    Returns:
        Scalar loss.
    """
    return torch.stack(
        [F.mse_loss(s, t.detach()) for s, t in zip(student, teacher, strict=True)]
    ).sum()
