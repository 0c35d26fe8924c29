"""Trento datamodule."""

from __future__ import annotations

from ..datasets.trento import Trento
from .hsi_lidar import HSILiDARDataModule


class TrentoDataModule(HSILiDARDataModule):
    """LightningDataModule for :class:`~torchgeo_ext.datasets.trento.Trento`.

    See :class:`~torchgeo_ext.datamodules.hsi_lidar.HSILiDARDataModule` for
    the splits (validation runs on the test pixels).
    """

    dataset_class = Trento
