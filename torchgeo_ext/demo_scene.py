"""Deprecated alias of :mod:`torchgeo_ext.demos.scene` (the synthetic demo scene)."""

import warnings

from torchgeo_ext.demos.scene import *
from torchgeo_ext.demos.scene import __all__  # noqa: F401

warnings.warn(
    'torchgeo_ext.demo_scene moved to torchgeo_ext.demos.scene; import it from there',
    DeprecationWarning,
    stacklevel=2,
)
