"""MUUFL datamodule."""

from __future__ import annotations

from ..datasets.muufl import MUUFL
from .hsi_lidar import HSILiDARDataModule


class MUUFLDataModule(HSILiDARDataModule):
    """LightningDataModule for :class:`~torchgeo_ext.datasets.muufl.MUUFL`.

    See :class:`~torchgeo_ext.datamodules.hsi_lidar.HSILiDARDataModule` for
    the splits (validation runs on the test pixels).
    """

    dataset_class = MUUFL
