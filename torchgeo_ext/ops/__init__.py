"""Tensor operations shared by models, trainers and export: box geometry and NMS."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..lazy import lazy_exports

if TYPE_CHECKING:  # real imports for type checkers; at run time names load on first use
    from .obb import (
        batched_rotated_nms,
        obb_to_poly,
        poly_iou,
        poly_to_obb,
        probiou,
        rotated_nms,
    )

# Public name -> module that defines it. A new public name adds one line here and
# one import above (tests/test_architecture.py checks that they agree).
_EXPORTS: dict[str, str] = {
    'batched_rotated_nms': 'torchgeo_ext.ops.obb',
    'obb_to_poly': 'torchgeo_ext.ops.obb',
    'poly_iou': 'torchgeo_ext.ops.obb',
    'poly_to_obb': 'torchgeo_ext.ops.obb',
    'probiou': 'torchgeo_ext.ops.obb',
    'rotated_nms': 'torchgeo_ext.ops.obb',
}

__all__ = tuple(sorted(_EXPORTS))

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
