"""Losses of the hyperspectral anomaly detectors (STAD).

* :func:`stad_teacher_loss`: the sum over the teacher's stages of the MSE
  between each stage's reconstruction and the clean (anomaly-free) crop;
* :func:`stad_distillation_loss`: the sum over stages of the MSE between the
  student's and the (detached) teacher's reconstructions.

BSDM's loss is the plain noise MSE (``torch.nn.functional.mse_loss``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ('stad_distillation_loss', 'stad_teacher_loss')


def stad_teacher_loss(outputs: list[Tensor], clean: Tensor) -> Tensor:
    """Sum over stages of the reconstruction MSE against the clean scene.

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
