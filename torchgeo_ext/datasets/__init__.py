"""Datasets of the benchmarks used by the papers this library implements."""

from .dronevehicle import DroneVehicle
from .fyh import FYH, FYHScenes
from .had100 import HAD100
from .hotc import HOTC
from .hyperspectral import HyperspectralScene
from .vedai import VEDAI

__all__ = (
    'FYH',
    'HAD100',
    'HOTC',
    'VEDAI',
    'DroneVehicle',
    'FYHScenes',
    'HyperspectralScene',
)
