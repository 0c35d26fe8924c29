"""Deprecated: renamed :mod:`torchgeo_ext.pipelines.checkpoint_detection`."""

from __future__ import annotations

import warnings

from .checkpoint_detection import (
    DEFAULT_OVERLAP,
    default_overlap,
    detect_with_checkpoint,
)

__all__ = ('DEFAULT_OVERLAP', 'default_overlap', 'detect_with_checkpoint')

warnings.warn(
    'torchgeo_ext.pipelines.task_detection is deprecated: import from '
    'torchgeo_ext.pipelines.checkpoint_detection (or torchgeo_ext.pipelines)',
    DeprecationWarning,
    stacklevel=2,
)
