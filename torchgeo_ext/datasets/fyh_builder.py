"""Deprecated alias of :mod:`torchgeo_ext.converters.fyh` (the FYH converter)."""

import warnings

from torchgeo_ext.converters.fyh import *

warnings.warn(
    'torchgeo_ext.datasets.fyh_builder moved to torchgeo_ext.converters.fyh; import it from there',
    DeprecationWarning,
    stacklevel=2,
)
