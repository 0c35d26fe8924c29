"""Lightning data modules, one per dataset."""

from .dronevehicle import DroneVehicleDataModule
from .fyh import FYHDataModule
from .had100 import HAD100DataModule
from .hotc import HOTCDataModule
from .vedai import VEDAIDataModule

__all__ = (
    'DroneVehicleDataModule',
    'FYHDataModule',
    'HAD100DataModule',
    'HOTCDataModule',
    'VEDAIDataModule',
)
