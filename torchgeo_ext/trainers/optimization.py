"""Training machinery shared by the tasks: optimisers, learning-rate schedules, EMA."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any, Literal

import torch
from torch import Tensor, nn
from torch.optim import SGD, Adam, AdamW, Optimizer
from torch.optim.lr_scheduler import (
    ChainedScheduler,
    CosineAnnealingLR,
    LinearLR,
    LRScheduler,
    PolynomialLR,
    SequentialLR,
)
from torch.optim.swa_utils import AveragedModel

__all__ = [
    'OPTIMIZERS',
    'ExponentialMovingAverage',
    'build_optimizer',
    'decay_groups',
    'poly',
    'schedule_epochs',
    'schedule_steps',
    'warmup_cosine',
]

#: Optimiser names accepted by :func:`build_optimizer`.
OPTIMIZERS = ('sgd', 'adam', 'adamw')

Params = Iterable[Tensor] | Iterable[dict[str, Any]]


def decay_groups(module: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Split trainable parameters into decayed weights and undecayed biases/norms.

    Matrices and convolution kernels (``ndim > 1``) get ``weight_decay``;
    biases and normalisation scales (``ndim <= 1``) get none.

    Args:
        module: The module whose trainable parameters are grouped.
        weight_decay: Weight decay of the first group.

    Returns:
        Two optimiser parameter groups.
    """
    decay: list[nn.Parameter] = []
    no_decay: list[nn.Parameter] = []
    for p in module.parameters():
        if p.requires_grad:
            (decay if p.ndim > 1 else no_decay).append(p)
    return [
        {'params': decay, 'weight_decay': weight_decay},
        {'params': no_decay, 'weight_decay': 0.0},
    ]


def build_optimizer(
    params: Params,
    name: str = 'sgd',
    lr: float = 0.01,
    momentum: float = 0.9,
    weight_decay: float = 0.0,
    nesterov: bool = False,
) -> Optimizer:
    """Build an optimiser by name.

    Args:
        params: Parameters or parameter groups (groups may set their own
            ``weight_decay``, see :func:`decay_groups`).
        name: ``'sgd'``, ``'adam'`` or ``'adamw'``.
        lr: Learning rate.
        momentum: SGD momentum; Adam's and AdamW's first beta
            (``betas=(momentum, 0.999)``).
        weight_decay: Default weight decay of groups that set none.
        nesterov: Nesterov momentum (SGD only).

    Returns:
        The optimiser.

    Raises:
        ValueError: For an unknown name.
    """
    match name.lower():
        case 'sgd':
            return SGD(
                params,
                lr=lr,
                momentum=momentum,
                nesterov=nesterov,
                weight_decay=weight_decay,
            )
        case 'adam':
            return Adam(
                params, lr=lr, betas=(momentum, 0.999), weight_decay=weight_decay
            )
        case 'adamw':
            return AdamW(
                params, lr=lr, betas=(momentum, 0.999), weight_decay=weight_decay
            )
    raise ValueError(f'unknown optimizer {name!r}; choose one of {OPTIMIZERS}')


def schedule_steps(trainer: Any, warmup_epochs: float = 0.0) -> tuple[int, int]:
    """Total optimiser steps of a fit and the warm-up length in steps.

    Args:
        trainer: The Lightning trainer (``None`` or one not attached to a fit
            gives one step, e.g. when a task is used outside ``Trainer.fit``).
        warmup_epochs: Warm-up length in epochs (may be fractional).

    Returns:
        ``(total_steps, warmup_steps)``, ``total_steps >= 1``.
    """
    if trainer is None:
        return 1, 0
    try:
        total = max(int(trainer.estimated_stepping_batches), 1)
    except (RuntimeError, AttributeError):
        total = 1
    max_epochs = getattr(trainer, 'max_epochs', None)
    epochs = int(max_epochs) if max_epochs and max_epochs > 0 else 1
    return total, round(warmup_epochs * total / epochs)


def schedule_epochs(trainer: Any) -> int:
    """The number of epochs of a fit, for schedules stepped per epoch.

    Args:
        trainer: The Lightning trainer (``None``, or one without a positive
            ``max_epochs``, e.g. a run bounded by ``max_steps``: the epochs
            the step budget spans, at least 1).

    Returns:
        The epoch count, at least 1.
    """
    max_epochs = getattr(trainer, 'max_epochs', None)
    if max_epochs and max_epochs > 0:
        return int(max_epochs)
    total, _ = schedule_steps(trainer)
    try:
        per_epoch = max(int(trainer.num_training_batches), 1)
    except (AttributeError, TypeError, ValueError, OverflowError):
        return 1
    return max(1, math.ceil(total / per_epoch))


def warmup_cosine(
    optimizer: Optimizer,
    warmup_steps: int,
    total_steps: int,
    final_ratio: float,
    cosine_from: Literal['start', 'warmup_end'] = 'warmup_end',
) -> LRScheduler:
    """Linear warm-up to the base learning rate, then cosine decay, per step.

    With ``cosine_from='warmup_end'`` (``SequentialLR``) the factor is
    ``(step + 1) / warmup_steps`` during the warm-up, then a cosine from 1 to
    ``final_ratio`` over the remaining ``total_steps - warmup_steps`` steps.

    With ``cosine_from='start'`` (``ChainedScheduler``, YOLOv5's one-cycle) the
    cosine spans all ``total_steps`` steps from 1 to ``final_ratio`` and the
    warm-up ramp multiplies it while it lasts. ``ChainedScheduler`` composes the
    two recursively, so during the warm-up the factor differs from the exact
    product by ``O((warmup_steps / total_steps) ** 2)`` and that difference decays
    with the cosine afterwards (at most 3.5e-5 for 30 of 3000 steps, final ratio
    0.2; 2e-3 for 10 of 100).

    Args:
        optimizer: The optimiser (its current learning rate, the same in every
            group, is the base).
        warmup_steps: Warm-up length in steps (0: none).
        total_steps: Total optimiser steps.
        final_ratio: Factor of the base learning rate reached at ``total_steps``.
        cosine_from: Where the cosine starts (see above).

    Returns:
        A scheduler to step once per optimiser step.

    Raises:
        ValueError: If the parameter groups have different learning rates.
    """
    lrs = {float(g['lr']) for g in optimizer.param_groups}
    if len(lrs) != 1:
        # CosineAnnealingLR has one eta_min for all groups.
        raise ValueError('warmup_cosine needs one learning rate for all groups')
    eta_min = final_ratio * lrs.pop()
    total_steps = max(total_steps, 1)
    if cosine_from == 'start':
        cosine = CosineAnnealingLR(optimizer, T_max=total_steps, eta_min=eta_min)
        if warmup_steps <= 1:
            return cosine
        ramp = LinearLR(optimizer, 1 / warmup_steps, 1.0, total_iters=warmup_steps - 1)
        return ChainedScheduler([ramp, cosine], optimizer)
    if warmup_steps <= 0:
        return CosineAnnealingLR(optimizer, T_max=total_steps, eta_min=eta_min)
    ramp = LinearLR(
        optimizer, 1 / warmup_steps, 1.0, total_iters=max(warmup_steps - 1, 1)
    )
    cosine = CosineAnnealingLR(
        optimizer, T_max=max(total_steps - warmup_steps, 1), eta_min=eta_min
    )
    return SequentialLR(optimizer, [ramp, cosine], milestones=[warmup_steps])


def poly(optimizer: Optimizer, total_steps: int, power: float = 0.9) -> LRScheduler:
    """Poly schedule ``(1 - step / total_steps) ** power`` (``PolynomialLR``), per step.

    Args:
        optimizer: The optimiser.
        total_steps: Steps until the learning rate reaches 0.
        power: The exponent.

    Returns:
        A scheduler to step once per optimiser step.
    """
    return PolynomialLR(optimizer, total_iters=max(total_steps, 1), power=power)


class ExponentialMovingAverage(AveragedModel):
    """An exponential moving average of a model's parameters and buffers.

    The averaged copy is ``self.module``. Each :meth:`update_parameters` moves
    every floating-point parameter and buffer (BatchNorm running statistics
    included) towards the model: ``avg = d * avg + (1 - d) * model``, with
    ``d = decay * (1 - exp(-updates / tau))`` (YOLOv5: the average follows the
    model closely over the first updates) or ``d = decay`` when ``tau`` is
    ``None``. Integer buffers (``num_batches_tracked``) are copied.

    The average starts as a copy of the model given here, counted as the first
    averaged model, so the ``k``-th update uses ``updates = k``. The update
    count is the ``n_averaged`` buffer: it is saved in checkpoints, and the
    ramp resumes where it was.
    """

    def __init__(
        self, model: nn.Module, decay: float = 0.9999, tau: float | None = 2000.0
    ) -> None:
        """Initialise a new ExponentialMovingAverage.

        Args:
            model: The model to average (deep-copied; the copy is frozen).
            decay: Final (or constant) decay.
            tau: Ramp-up time constant in updates (``None``: constant decay).
        """
        self.decay = decay
        self.tau = tau
        self._current = decay
        super().__init__(model, multi_avg_fn=self._average, use_buffers=True)
        self.n_averaged.fill_(1)
        self.module.requires_grad_(False)

    @torch.no_grad()
    def update_parameters(self, model: nn.Module) -> None:
        """Move the average one step towards *model*.

        Args:
            model: The trained model (same architecture).
        """
        # One decay per update, computed once rather than once per tensor.
        self._current = self.current_decay(int(self.n_averaged))
        super().update_parameters(model)

    def current_decay(self, updates: int) -> float:
        """The decay of the ``updates``-th update.

        Args:
            updates: Update count, from 1.

        Returns:
            The decay ``d``.
        """
        if self.tau is None:
            return self.decay
        return self.decay * (1 - math.exp(-updates / self.tau))

    def _average(
        self,
        averaged: Sequence[Tensor],
        current: Sequence[Tensor],
        updates: Tensor | int,
    ) -> None:
        # Called per device and dtype group, in place (foreach kernels).
        averaged, current = list(averaged), list(current)
        if not averaged[0].dtype.is_floating_point:
            torch._foreach_copy_(averaged, current)
            return
        d = self._current
        torch._foreach_mul_(averaged, d)
        torch._foreach_add_(averaged, current, alpha=1 - d)
