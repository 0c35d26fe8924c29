"""Tensor operations shared by models, trainers and export: box geometry and NMS."""

from .obb import (
    batched_rotated_nms,
    obb_to_poly,
    poly_iou,
    poly_to_obb,
    probiou,
    rotated_nms,
)

__all__ = (
    'batched_rotated_nms',
    'obb_to_poly',
    'poly_iou',
    'poly_to_obb',
    'probiou',
    'rotated_nms',
)
