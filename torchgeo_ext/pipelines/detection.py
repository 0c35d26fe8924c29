"""Tiled object detection over georeferenced rasters of any size, merged across tiles.

Tiles follow the scheme of :mod:`torchgeo_ext.pipelines.tiling` (the last tile
of a row or column is flush with the raster edge), read strip by strip as
there, so that what is read does not grow with the raster width (the
detections themselves stay in memory). Each tile's boxes are
shifted to raster pixels; :func:`merge_tile_detections` then keeps each object
once: complete boxes win over boxes cut by an interior tile edge.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

import geopandas as gpd
import numpy as np
import torch
from numpy.typing import NDArray
from rasterio.windows import Window
from torch import Tensor
from tqdm import tqdm

from ..errors import raise_if_interrupted
from ..export.geometry import detections_to_geodataframe
from ..export.raster import gdal_cache_limit, open_inputs
from ..export.vector import write_vector
from . import tiling
from .tiling import (
    InputPaths,
    _as_module_eval,
    _check_tiling,
    _prefetch,
    column_strips,
    tile_grid,
    worker_thread,
)

__all__ = ['detect_raster', 'merge_tile_detections']


def _border_flags(
    xyxy: Tensor,
    row: int,
    col: int,
    tile_size: int,
    height: int,
    width: int,
    margin: float,
) -> Tensor:
    """Whether boxes touch a tile edge that lies inside the raster."""
    flags = torch.zeros(xyxy.shape[0], dtype=torch.bool)
    if col > 0:
        flags |= xyxy[:, 0] <= col + margin
    if col + tile_size < width:
        flags |= xyxy[:, 2] >= col + tile_size - margin
    if row > 0:
        flags |= xyxy[:, 1] <= row + margin
    if row + tile_size < height:
        flags |= xyxy[:, 3] >= row + tile_size - margin
    return flags


def _clip_to_raster(boxes: Tensor, height: int, width: int, oriented: bool) -> Tensor:
    """Clip boxes (in place) to the raster; say which keep an area.

    Tiles of rasters smaller than a tile (and edge tiles) are zero-padded past
    the raster; boxes there must not reach outside it.

    Returns:
        Boolean mask of the boxes left with a positive area.
    """
    boxes[:, 0::2] = boxes[:, 0::2].clamp(0, width)
    boxes[:, 1::2] = boxes[:, 1::2].clamp(0, height)
    if oriented:
        x, y = boxes[:, 0::2], boxes[:, 1::2]
        area = 0.5 * (x * y.roll(-1, dims=1) - x.roll(-1, dims=1) * y).sum(dim=1).abs()
    else:
        area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return area > 0


def _contained_cut_boxes(
    boxes: Tensor, labels: Tensor, cut: Tensor, threshold: float
) -> Tensor:
    """Which cut boxes lie mostly (``>= threshold`` of their area) inside another box.

    Boxes are in rank order (by decreasing score); a cut box only yields to a box of
    its class that is complete or ranked before it. Only pairs whose hulls overlap
    are compared (sort and sweep), so memory stays linear in the number of boxes.

    Args:
        boxes: (N, 4) xyxy or (N, 8) polygons, in rank order.
        labels: (N,) class ids.
        cut: (N,) whether each box is cut by an interior tile edge.
        threshold: Fraction of a cut box's area that must be inside the other box.

    Returns:
        (N,) bool: the cut boxes to drop.
    """
    from ..ops.nms import overlapping_pairs, pair_intersection
    from ..ops.obb import poly_area, poly_intersection_area, poly_to_xyxy

    oriented = boxes.shape[1] == 8
    # poly_to_xyxy takes x, y pairs: for xyxy boxes it gives the boxes (ordered)
    hulls = poly_to_xyxy(boxes)
    i, j = overlapping_pairs(hulls)
    # each overlapping pair, seen from its cut side(s): (c cut, o the other box)
    c = torch.cat((i[cut[i]], j[cut[j]]))
    o = torch.cat((j[cut[i]], i[cut[j]]))
    valid = (labels[c] == labels[o]) & (~cut[o] | (o < c))
    c, o = c[valid], o[valid]
    if oriented:
        # relative to each cut box's first corner: float32-sized errors stay small
        origin = boxes[c, :2].repeat(1, 4)
        inter = poly_intersection_area(boxes[c] - origin, boxes[o] - origin)
        area = poly_area(boxes - boxes[:, :2].repeat(1, 4))[c]
    else:
        inter = pair_intersection(boxes, c, o)
        area = (boxes[c, 2:] - boxes[c, :2]).prod(1)
    contained = inter >= threshold * area.clamp_min(1e-12)
    drop = torch.zeros(len(boxes), dtype=torch.bool)
    drop[c[contained]] = True
    return drop


def merge_tile_detections(
    boxes: Tensor,
    scores: Tensor,
    labels: Tensor,
    at_border: Tensor,
    iou_threshold: float,
    oriented: bool = False,
) -> Tensor:
    """Merge detections from overlapping tiles so that each object is kept once.

    Class-wise NMS ranks boxes that touch no interior tile edge first (they
    are complete), then by score; a box cut by a tile edge that survives NMS
    is still dropped when at least ``iou_threshold`` of its area lies inside a
    kept box of the same class (the same object, seen whole in another tile).

    Args:
        boxes: (N, 4) xyxy or (N, 8) polygons in raster pixel coordinates.
        scores: (N,) confidences.
        labels: (N,) class ids.
        at_border: (N,) whether each box touches an interior tile edge.
        iou_threshold: IoU threshold of NMS, and the containment threshold.
        oriented: Boxes are (N, 8) polygons.

    Returns:
        Indices of the kept boxes (int64), by decreasing score.
    """
    if boxes.shape[0] == 0:
        return torch.zeros(0, dtype=torch.long)
    boxes, scores = boxes.double(), scores.double()
    rank = scores - 2 * at_border.double() * (scores.abs().max() + 1)
    if oriented:
        from ..ops.obb import batched_rotated_nms

        keep = batched_rotated_nms(boxes, rank, labels, iou_threshold)
    else:
        # not torchvision's NMS: it is quadratic in the kept boxes (minutes at 100k)
        from ..ops.nms import batched_box_nms

        keep = batched_box_nms(boxes, rank, labels, iou_threshold)
    keep = keep[torch.argsort(scores[keep], descending=True, stable=True)]
    cut = at_border[keep]
    if cut.any():
        keep = keep[
            ~_contained_cut_boxes(boxes[keep], labels[keep], cut, iou_threshold)
        ]
    return keep


def detect_raster(
    model: Callable[[Tensor], Sequence[dict[str, Tensor]]],
    inputs: InputPaths,
    output: str | os.PathLike[str] | None = None,
    *,
    tile_size: int = 512,
    overlap: int = 128,
    batch_size: int = 4,
    iou_threshold: float = 0.5,
    class_names: Sequence[str] | None = None,
    oriented: bool = False,
    score_threshold: float = 0.0,
    device: str | torch.device = 'cpu',
    progress: bool = True,
    gdal_cache_mb: int | None = 128,
) -> gpd.GeoDataFrame:
    """Run a detector over a raster of any size and merge objects across tiles.

    Tiles overlap by at least *overlap* pixels (objects smaller than that are
    seen whole in some tile); the last tile of a row or column is flush with
    the raster edge. Tile boxes are shifted to raster pixels and merged by
    :func:`merge_tile_detections`.

    Args:
        model: Callable mapping a float32 batch (B, C, T, T) to B dicts with
            ``prediction_bbox_xyxy`` (N, 4) (or ``prediction_bbox`` (N, 8)
            when *oriented*), ``prediction_label`` (N,) and
            ``prediction_score`` (N,), in tile pixel coordinates.
        inputs: One raster or several co-registered rasters (modalities).
        output: Optional vector file (.gpkg, .geojson, .parquet) to write.
        tile_size: Tile size.
        overlap: Minimum overlap between tiles.
        batch_size: Tiles per model call.
        iou_threshold: Class-wise NMS IoU threshold.
        class_names: Names of the class ids.
        oriented: Use oriented boxes.
        score_threshold: Drop detections scoring below this.
        device: Torch device of the model.
        progress: Show a tqdm progress bar.
        gdal_cache_mb: Cap on GDAL's block cache while reading (see
            :func:`~torchgeo_ext.export.raster.gdal_cache_limit`); None keeps it.

    Returns:
        GeoDataFrame with ``class_id``, ``class_name``, ``score`` and polygon
        geometry in the raster's CRS, by decreasing score.

    Raises:
        ValueError: For inconsistent options or malformed model outputs.
    """
    _check_tiling(tile_size, overlap, batch_size)
    if output is not None:
        from ..export.outputs import check_outputs, vector_output

        # Before the model runs: a bad format or an input as output fails now.
        paths = [inputs] if isinstance(inputs, str | os.PathLike) else list(inputs)
        check_outputs([vector_output(output, 'the output')], paths)
    key = 'prediction_bbox' if oriented else 'prediction_bbox_xyxy'
    dev = torch.device(device)
    all_boxes: list[Tensor] = []
    all_scores: list[Tensor] = []
    all_labels: list[Tensor] = []
    all_border: list[Tensor] = []
    with gdal_cache_limit(gdal_cache_mb), open_inputs(inputs) as stack:
        height, width = stack.height, stack.width
        # Strip by strip (as predict_raster), so that the input blocks read
        # (and cached by GDAL) do not grow with the raster width.
        cols = tile_grid(width, tile_size, overlap)
        tiles = [
            (r, cols[j])
            for strip in column_strips(
                cols, min(tile_size, width), width, tiling.STRIP_WIDTH
            )
            for r in tile_grid(height, tile_size, overlap)
            for j in strip.tiles
        ]
        batches = [tiles[i : i + batch_size] for i in range(0, len(tiles), batch_size)]

        def read(batch: list[tuple[int, int]]) -> NDArray[Any]:
            return np.stack(
                [stack.read(Window(c, r, tile_size, tile_size))[0] for r, c in batch]
            )

        restore = _as_module_eval(model)
        bar = tqdm(total=len(tiles), disable=not progress, desc='detect', unit='tile')
        try:
            with worker_thread('read') as pool:
                for batch, x_np in _prefetch(read, batches, pool):
                    with torch.inference_mode():
                        results = model(torch.from_numpy(x_np).to(dev))
                    if len(results) != len(batch):
                        raise ValueError(
                            f'the model returned {len(results)} results for {len(batch)} tiles'
                        )
                    for (r, c), res in zip(batch, results):
                        if key not in res:
                            raise ValueError(
                                f'the model output has no {key!r} (got {sorted(res)})'
                            )
                        boxes = (
                            res[key]
                            .detach()
                            .double()
                            .cpu()
                            .reshape(-1, 8 if oriented else 4)
                        )
                        scores = (
                            res['prediction_score'].detach().double().cpu().reshape(-1)
                        )
                        labels = (
                            res['prediction_label'].detach().long().cpu().reshape(-1)
                        )
                        sel = scores >= score_threshold
                        boxes, scores, labels = boxes[sel], scores[sel], labels[sel]
                        boxes[:, 0::2] += c
                        boxes[:, 1::2] += r
                        on_raster = _clip_to_raster(boxes, height, width, oriented)
                        boxes = boxes[on_raster]
                        scores, labels = scores[on_raster], labels[on_raster]
                        if oriented:
                            from ..ops.obb import poly_to_xyxy

                            xyxy = poly_to_xyxy(boxes)
                        else:
                            xyxy = boxes
                        all_border.append(
                            _border_flags(
                                xyxy, r, c, tile_size, height, width, margin=1.0
                            )
                        )
                        all_boxes.append(boxes)
                        all_scores.append(scores)
                        all_labels.append(labels)
                    bar.update(len(batch))
                    raise_if_interrupted()
        finally:
            bar.close()
            restore()
        crs, transform = stack.crs, stack.transform

    width_b = 8 if oriented else 4
    boxes = (
        torch.cat(all_boxes)
        if all_boxes
        else torch.zeros((0, width_b), dtype=torch.float64)
    )
    scores = (
        torch.cat(all_scores) if all_scores else torch.zeros(0, dtype=torch.float64)
    )
    labels = torch.cat(all_labels) if all_labels else torch.zeros(0, dtype=torch.long)
    border = torch.cat(all_border) if all_border else torch.zeros(0, dtype=torch.bool)
    keep = merge_tile_detections(boxes, scores, labels, border, iou_threshold, oriented)
    gdf = detections_to_geodataframe(
        boxes[keep].numpy(),
        labels[keep].numpy(),
        scores[keep].numpy(),
        transform,
        crs,
        class_names,
    )
    if output is not None:
        write_vector(output, gdf)
    return gdf
