"""Lightning data modules, one per dataset."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..lazy import lazy_exports

if TYPE_CHECKING:  # real imports for type checkers; at run time names load on first use
    from .dronevehicle import DroneVehicleDataModule
    from .fmb import FMBDataModule
    from .fyh import FYHDataModule
    from .geo import GeoDetectionDataModule, GeoSegmentationDataModule, Normalisation
    from .had100 import HAD100DataModule
    from .hotc import HOTCDataModule
    from .houston2013 import Houston2013DataModule
    from .hrsid import HRSIDDataModule
    from .hsi_lidar import HSILiDARDataModule
    from .llvip import LLVIPDataModule
    from .mfnet import MFNetDataModule
    from .muufl import MUUFLDataModule
    from .sar_aircraft import SARAircraftDataModule
    from .ssdd import SSDDDataModule
    from .trento import TrentoDataModule
    from .vedai import VEDAIDataModule

# Public name -> module that defines it. A new public name adds one line here and
# one import above (tests/test_architecture.py checks that they agree).
_EXPORTS: dict[str, str] = {
    'DroneVehicleDataModule': 'torchgeo_ext.datamodules.dronevehicle',
    'FMBDataModule': 'torchgeo_ext.datamodules.fmb',
    'FYHDataModule': 'torchgeo_ext.datamodules.fyh',
    'GeoDetectionDataModule': 'torchgeo_ext.datamodules.geo',
    'GeoSegmentationDataModule': 'torchgeo_ext.datamodules.geo',
    'HAD100DataModule': 'torchgeo_ext.datamodules.had100',
    'HOTCDataModule': 'torchgeo_ext.datamodules.hotc',
    'HRSIDDataModule': 'torchgeo_ext.datamodules.hrsid',
    'HSILiDARDataModule': 'torchgeo_ext.datamodules.hsi_lidar',
    'Houston2013DataModule': 'torchgeo_ext.datamodules.houston2013',
    'LLVIPDataModule': 'torchgeo_ext.datamodules.llvip',
    'MFNetDataModule': 'torchgeo_ext.datamodules.mfnet',
    'MUUFLDataModule': 'torchgeo_ext.datamodules.muufl',
    'Normalisation': 'torchgeo_ext.datamodules.geo',
    'SARAircraftDataModule': 'torchgeo_ext.datamodules.sar_aircraft',
    'SSDDDataModule': 'torchgeo_ext.datamodules.ssdd',
    'TrentoDataModule': 'torchgeo_ext.datamodules.trento',
    'VEDAIDataModule': 'torchgeo_ext.datamodules.vedai',
}

__all__ = tuple(sorted(_EXPORTS))

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
