"""Datasets of the benchmarks used by the papers this library implements."""

from .dronevehicle import DroneVehicle
from .fmb import FMB
from .fyh import FYH, FYHScenes
from .had100 import HAD100
from .hotc import HOTC
from .houston2013 import Houston2013
from .hsi_lidar import HSILiDARDataset
from .hyperspectral import HyperspectralScene
from .intersection import StackedIntersectionDataset, intersect
from .mfnet import MFNet
from .muufl import MUUFL
from .trento import Trento
from .vector import VectorObjects
from .vedai import VEDAI

__all__ = (
    'FMB',
    'FYH',
    'HAD100',
    'HOTC',
    'MUUFL',
    'VEDAI',
    'DroneVehicle',
    'MFNet',
    'FYHScenes',
    'HSILiDARDataset',
    'Houston2013',
    'HyperspectralScene',
    'StackedIntersectionDataset',
    'Trento',
    'VectorObjects',
    'intersect',
)
