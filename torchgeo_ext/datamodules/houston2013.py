"""Houston2013 datamodule."""

from __future__ import annotations

from ..datasets.houston2013 import Houston2013
from .hsi_lidar import HSILiDARDataModule


class Houston2013DataModule(HSILiDARDataModule):
    """LightningDataModule for :class:`~torchgeo_ext.datasets.houston2013.Houston2013`.

    See :class:`~torchgeo_ext.datamodules.hsi_lidar.HSILiDARDataModule` for
    the splits (validation runs on the test pixels).
    """

    dataset_class = Houston2013
