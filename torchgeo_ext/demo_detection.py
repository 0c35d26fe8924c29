"""Deprecated alias of :mod:`torchgeo_ext.demos.detection` (the detection demo's scenes)."""

import warnings

from torchgeo_ext.demos.detection import *
from torchgeo_ext.demos.detection import __all__  # noqa: F401

warnings.warn(
    'torchgeo_ext.demo_detection moved to torchgeo_ext.demos.detection; import it from there',
    DeprecationWarning,
    stacklevel=2,
)
