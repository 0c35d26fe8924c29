"""Lightning data modules, one per dataset."""
from .vedai import VEDAIDataModule
from .dronevehicle import DroneVehicleDataModule
from .had100 import HAD100DataModule
from .hotc import HOTCDataModule
from .fyh import FYHDataModule
