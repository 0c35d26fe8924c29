"""Datasets of the benchmarks used by the papers this library implements."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..lazy import lazy_exports

if TYPE_CHECKING:  # real imports for type checkers; at run time names load on first use
    from .dronevehicle import DroneVehicle
    from .fmb import FMB
    from .fyh import FYH, FYHScenes
    from .had100 import HAD100
    from .hotc import HOTC
    from .houston2013 import Houston2013
    from .hrsid import HRSID
    from .hsi_lidar import HSILiDARDataset
    from .hyperspectral import HyperspectralScene
    from .intersection import StackedIntersectionDataset, intersect
    from .llvip import LLVIP
    from .mfnet import MFNet
    from .muufl import MUUFL
    from .sar_aircraft import SARAircraft
    from .ssdd import SSDD
    from .trento import Trento
    from .vector import VectorObjects
    from .vedai import VEDAI

# Public name -> module that defines it. A new public name adds one line here and
# one import above (tests/test_architecture.py checks that they agree).
_EXPORTS: dict[str, str] = {
    'DroneVehicle': 'torchgeo_ext.datasets.dronevehicle',
    'FMB': 'torchgeo_ext.datasets.fmb',
    'FYH': 'torchgeo_ext.datasets.fyh',
    'FYHScenes': 'torchgeo_ext.datasets.fyh',
    'HAD100': 'torchgeo_ext.datasets.had100',
    'HOTC': 'torchgeo_ext.datasets.hotc',
    'HRSID': 'torchgeo_ext.datasets.hrsid',
    'HSILiDARDataset': 'torchgeo_ext.datasets.hsi_lidar',
    'Houston2013': 'torchgeo_ext.datasets.houston2013',
    'LLVIP': 'torchgeo_ext.datasets.llvip',
    'MFNet': 'torchgeo_ext.datasets.mfnet',
    'MUUFL': 'torchgeo_ext.datasets.muufl',
    'SARAircraft': 'torchgeo_ext.datasets.sar_aircraft',
    'SSDD': 'torchgeo_ext.datasets.ssdd',
    'Trento': 'torchgeo_ext.datasets.trento',
    'HyperspectralScene': 'torchgeo_ext.datasets.hyperspectral',
    'StackedIntersectionDataset': 'torchgeo_ext.datasets.intersection',
    'VEDAI': 'torchgeo_ext.datasets.vedai',
    'VectorObjects': 'torchgeo_ext.datasets.vector',
    'intersect': 'torchgeo_ext.datasets.intersection',
}

__all__ = tuple(sorted(_EXPORTS))

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
