"""Fixtures shared by the trainer tests."""

from __future__ import annotations

from collections.abc import Callable
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
