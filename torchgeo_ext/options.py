"""Deprecated alias of :mod:`torchgeo_ext.commands._options` (command-line option types)."""

import warnings

from torchgeo_ext.commands._options import *
from torchgeo_ext.commands._options import __all__  # noqa: F401

warnings.warn(
    'torchgeo_ext.options is deprecated: the option types moved to torchgeo_ext.commands._options',
    DeprecationWarning,
    stacklevel=2,
)
