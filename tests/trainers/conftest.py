"""Fixtures shared by the trainer tests."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import pytest
import torch
from torch.utils.data import DataLoader

from torchgeo_ext.datasets.hotc import HOTC
from torchgeo_ext.samplers.tracking import TrackingPairDataset, TrackingPairSampler


@pytest.fixture
def hotc_pair_batch() -> Callable[[], dict[str, Any]]:
    """A builder of one batch of 4 template/search pairs from the fake HOTC 2020.

    A builder rather than the batch so that a test builds it after seeding and
    building its model, as the tests did before sharing it (the data loader
    draws from the global RNG).
    """

    def build() -> dict[str, Any]:
        frames = HOTC(
            'tests/data/hotc/hotc2020', split='train', modality=('falsecolor', 'hsi')
        )
        pairs = TrackingPairDataset(
            frames,
            template_size=16,
            search_size=32,
            center_jitter=(0, 0),
            scale_jitter=(0, 0),
        )
        sampler = TrackingPairSampler(
            frames, length=4, generator=torch.Generator().manual_seed(0)
        )
        batch: dict[str, Any] = next(
            iter(DataLoader(pairs, batch_size=4, sampler=sampler))
        )
        return batch

    return build


def assert_gradient_step_lowers(
    loss_of: Callable[[], torch.Tensor],
    parameters: Sequence[torch.Tensor],
    fraction: float = 1e-3,
) -> None:
    """A small step against the gradient lowers the loss on the same batch.

    What "the task can learn" means without depending on a training
    trajectory: the loss reaches the trainable parameters and its gradient
    points downhill. The step is sized for a first-order decrease of
    ``fraction`` of the loss; at least a quarter of it must show. ``loss_of``
    is called twice and reseeds the global generator each time, so dropout
    draws the same masks.
    """

    def loss() -> torch.Tensor:
        torch.manual_seed(0)
        return loss_of()

    before = loss()
    grads = torch.autograd.grad(before, parameters, allow_unused=True)
    pairs = [(p, g) for p, g in zip(parameters, grads, strict=True) if g is not None]
    assert pairs, 'no trainable parameter receives a gradient'
    norm2 = sum(float(g.double().square().sum()) for _, g in pairs)
    assert math.isfinite(norm2)
    assert norm2 > 0
    decrease = fraction * float(before)
    with torch.no_grad():
        for p, g in pairs:
            p -= decrease / norm2 * g
        after = float(loss())
    assert after < float(before) - decrease / 4
