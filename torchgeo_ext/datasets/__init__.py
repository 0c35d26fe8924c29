"""Datasets of the benchmarks used by the papers this library implements."""
from .vedai import VEDAI
from .dronevehicle import DroneVehicle
from .had100 import HAD100
from .hotc import HOTC
from .hyperspectral import HyperspectralScene
from .fyh import FYH, FYHScenes
