"""Pixel-space boxes and masks to georeferenced polygons."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import rasterio.features
import shapely
from numpy.typing import NDArray
from shapely.geometry import Polygon, shape

from .raster import CRSLike, TransformLike, as_numpy, crs_to_string, to_affine

__all__ = [
    'boxes_to_polygons',
    'detections_to_geodataframe',
    'mask_to_polygons',
    'oriented_boxes_to_polygons',
    'pixel_to_world',
]


def pixel_to_world(points: Any, transform: TransformLike) -> NDArray[np.float64]:
    """Map pixel coordinates (x = column, y = row, pixel corners) to CRS coordinates.

    Args:
        points: (..., 2) array of pixel (x, y).
        transform: Affine transform of the raster.

    Returns:
        (..., 2) array of CRS (x, y).
    """
    pts = as_numpy(points, np.float64)
    x, y = to_affine(transform) @ (pts[..., 0], pts[..., 1])
    return np.stack([x, y], axis=-1)


def _rings_to_polygons(
    rings: NDArray[np.float64], transform: TransformLike
) -> list[Polygon]:
    if len(rings) == 0:
        return []
    world = pixel_to_world(rings, transform)
    closed = np.concatenate([world, world[:, :1]], axis=1)
    polys: list[Polygon] = list(np.asarray(shapely.polygons(closed), dtype=object))
    return polys


def boxes_to_polygons(bbox_xyxy: Any, transform: TransformLike) -> list[Polygon]:
    """Convert axis-aligned pixel boxes to polygons in the raster's CRS.

    Args:
        bbox_xyxy: (N, 4) boxes ``x1, y1, x2, y2`` in pixel coordinates
            (pixel corners: a box ``0, 0, W, H`` covers the whole raster).
        transform: Affine transform of the raster (rotation/shear allowed).

    Returns:
        N polygons (4 corners each).

    Raises:
        ValueError: If the boxes are not (N, 4).
    """
    boxes = as_numpy(bbox_xyxy, np.float64)
    if boxes.size == 0:
        return []
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise ValueError(f'expected (N, 4) boxes, got shape {boxes.shape}')
    x1, y1, x2, y2 = boxes.T
    rings = np.stack([np.stack([x1, y1], -1), np.stack([x2, y1], -1),
                      np.stack([x2, y2], -1), np.stack([x1, y2], -1)], axis=1)  # fmt: skip
    return _rings_to_polygons(rings, transform)


def oriented_boxes_to_polygons(bbox: Any, transform: TransformLike) -> list[Polygon]:
    """Convert oriented pixel boxes (x1 y1 ... x4 y4) to polygons in the raster's CRS.

    Args:
        bbox: (N, 8) corner coordinates in pixel space (DOTA order).
        transform: Affine transform of the raster.

    Returns:
        N polygons.

    Raises:
        ValueError: If the boxes are not (N, 8).
    """
    arr = as_numpy(bbox, np.float64)
    if arr.size == 0:
        return []
    if arr.ndim != 2 or arr.shape[1] != 8:
        raise ValueError(f'expected (N, 8) oriented boxes, got shape {arr.shape}')
    return _rings_to_polygons(arr.reshape(-1, 4, 2), transform)


def _class_name(class_id: int, class_names: Sequence[str] | None) -> str:
    if class_names is not None and 0 <= class_id < len(class_names):
        return str(class_names[class_id])
    return str(class_id)


def mask_to_polygons(
    mask: Any,
    transform: TransformLike,
    crs: CRSLike,
    class_names: Sequence[str] | None = None,
    min_area: float = 0,
    ignore_index: int | None = None,
) -> gpd.GeoDataFrame:
    """Polygonise a class mask (one polygon per connected region of one class).

    Args:
        mask: (H, W) integer class ids (numpy or torch).
        transform: Affine transform of the mask.
        crs: CRS of the mask.
        class_names: Names of the class ids (else the id as a string).
        min_area: Drop polygons smaller than this many pixels
            (area in CRS units divided by the pixel area).
        ignore_index: Class id that is not polygonised (e.g. background or nodata).

    Returns:
        GeoDataFrame with columns ``class_id``, ``class_name``, ``area`` (CRS
        units) and ``geometry`` in *crs*.

    Raises:
        ValueError: If the mask is not 2-dimensional integers.
    """
    arr = as_numpy(mask)
    if arr.ndim != 2:
        raise ValueError(f'expected an (H, W) mask, got shape {arr.shape}')
    if arr.dtype == np.bool_:
        arr = arr.astype(np.uint8)
    if not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f'expected integer class ids, got {arr.dtype}')
    if arr.size and (
        arr.min() < np.iinfo(np.int32).min or arr.max() > np.iinfo(np.int32).max
    ):
        raise ValueError('class ids do not fit int32')
    arr = arr.astype(np.int32, copy=False)
    affine = to_affine(transform)
    valid = None if ignore_index is None else arr != ignore_index
    geoms, ids = [], []
    for geom, value in rasterio.features.shapes(arr, mask=valid, transform=affine):
        geoms.append(shape(geom))
        ids.append(int(value))
    areas = np.asarray([g.area for g in geoms], dtype=np.float64)
    pixel_area = abs(affine.determinant)
    keep = areas / pixel_area >= min_area if len(geoms) else np.zeros(0, dtype=bool)
    kept_ids = [i for i, k in zip(ids, keep) if k]
    gdf = gpd.GeoDataFrame(
        {
            'class_id': np.asarray(kept_ids, dtype=np.int64),
            # typed: pandas would make an empty list float
            'class_name': pd.array(
                [_class_name(i, class_names) for i in kept_ids], dtype='str'
            ),
            'area': areas[keep],
        },
        geometry=[g for g, k in zip(geoms, keep) if k],
        crs=crs_to_string(crs),
    )
    gdf.attrs['string_columns'] = ('class_name',)
    return gdf


def detections_to_geodataframe(
    boxes: Any,
    label: Any,
    score: Any | None,
    transform: TransformLike,
    crs: CRSLike,
    class_names: Sequence[str] | None = None,
) -> gpd.GeoDataFrame:
    """Build a GeoDataFrame of detections from pixel boxes.

    Args:
        boxes: (N, 4) axis-aligned ``bbox_xyxy`` or (N, 8) oriented ``bbox``
            in pixel coordinates.
        label: (N,) class ids.
        score: (N,) confidences (None: all 1).
        transform: Affine transform of the image the boxes are in.
        crs: Its CRS.
        class_names: Names of the class ids.

    Returns:
        GeoDataFrame with ``class_id``, ``class_name``, ``score`` and polygon
        ``geometry`` in *crs*.

    Raises:
        ValueError: If the shapes disagree.
    """
    arr = as_numpy(boxes, np.float64)
    n = arr.shape[0] if arr.ndim == 2 else 0
    width = arr.shape[1] if arr.ndim == 2 else 4
    if width == 8:
        polys = oriented_boxes_to_polygons(arr.reshape(n, 8), transform)
    else:
        polys = boxes_to_polygons(arr.reshape(n, 4), transform)
    labels = as_numpy(label, np.int64).reshape(-1)
    scores = (
        np.ones(n, dtype=np.float32)
        if score is None
        else as_numpy(score, np.float32).reshape(-1)
    )
    if len(labels) != n or len(scores) != n:
        raise ValueError(f'{n} boxes but {len(labels)} labels and {len(scores)} scores')
    gdf = gpd.GeoDataFrame(
        {
            'class_id': labels,
            # typed: pandas would make an empty list float
            'class_name': pd.array(
                [_class_name(int(i), class_names) for i in labels], dtype='str'
            ),
            'score': scores,
        },
        geometry=polys,
        crs=crs_to_string(crs),
    )
    gdf.attrs['string_columns'] = ('class_name',)
    return gdf
