"""Tiled object detection over rasters of any size, each object kept once across tiles.

Tiles are read strip by strip (as :func:`~torchgeo_ext.pipelines.tiling.predict_raster`).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Generator, Sequence

import geopandas as gpd
import torch
from rasterio.crs import CRS
from rasterio.transform import Affine
from rasterio.windows import Window
from torch import Tensor
from tqdm import tqdm

from ..export.geometry import detections_to_geodataframe
from ..export.raster import gdal_cache_limit, open_inputs
from ..export.vector import write_vector
from ..ops.obb import poly_to_xyxy
from . import tiling
from .tiling import (
    InputPaths,
    Precision,
    TileBatch,
    autocast,
    check_precision,
    check_tiling,
    column_strips,
    eval_mode,
    tile_batches,
    tile_grid,
)

__all__ = ['detect_raster', 'merge_tile_detections']


def _border_flags(
    xyxy: Tensor,
    row: Tensor,
    col: Tensor,
    tile_size: int,
    height: int,
    width: int,
    margin: float,
) -> Tensor:
    """Whether boxes (raster pixels) touch an edge of their tile inside the raster.

    *row* and *col* hold each box's tile origin.
    """
    left = (col > 0) & (xyxy[:, 0] <= col + margin)
    right = (col + tile_size < width) & (xyxy[:, 2] >= col + tile_size - margin)
    top = (row > 0) & (xyxy[:, 1] <= row + margin)
    bottom = (row + tile_size < height) & (xyxy[:, 3] >= row + tile_size - margin)
    return left | right | top | bottom


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
    from ..ops.obb import poly_area, poly_intersection_area

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


def _tile_windows(
    height: int, width: int, tile_size: int, overlap: int
) -> list[Window]:
    """Tile windows, strip by strip (as predict_raster), each strip top to bottom.

    So the input blocks read (and cached by GDAL) do not grow with the raster width.
    """
    cols = tile_grid(width, tile_size, overlap)
    strips = column_strips(cols, min(tile_size, width), width, tiling.STRIP_WIDTH)
    return [
        Window(cols[j], r, tile_size, tile_size)
        for strip in strips
        for r in tile_grid(height, tile_size, overlap)
        for j in strip.tiles
    ]


def _run_model(
    model: Callable[[Tensor], Sequence[dict[str, Tensor]]],
    batch: TileBatch,
    key: str,
    precision: Precision,
) -> Sequence[dict[str, Tensor]]:
    """Run the model on a batch and check its output.

    Raises:
        ValueError: If the output is not one dict per tile holding *key*.
    """
    with torch.inference_mode(), autocast(batch.image.device, precision):
        results = model(batch.image)
    if len(results) != len(batch.windows):
        raise ValueError(
            f'the model returned {len(results)} results for {len(batch.windows)} tiles'
        )
    for res in results:
        if key not in res:
            raise ValueError(f'the model output has no {key!r} (got {sorted(res)})')
    return results


def _invalid_fraction(xyxy: Tensor, tile: Tensor, valid: Tensor) -> Tensor:
    """Share of invalid pixels under each box (tile pixel coordinates).

    Args:
        xyxy: (N, 4) boxes (or oriented boxes' hulls) in their tile's pixels.
        tile: (N,) index of each box's tile in *valid*.
        valid: (B, T, T) validity masks of the tiles.

    Returns:
        (N,) share of the pixels the box touches that are invalid (0 for a
        box on no whole pixel).
    """
    size_y, size_x = valid.shape[1:]
    # summed-area table: the valid pixels of any rectangle in four look-ups
    table = valid.new_zeros((len(valid), size_y + 1, size_x + 1), dtype=torch.int32)
    table[:, 1:, 1:] = (
        valid.int().cumsum(1, dtype=torch.int32).cumsum(2, dtype=torch.int32)
    )
    x0 = xyxy[:, 0].floor().clamp(0, size_x).long()
    x1 = xyxy[:, 2].ceil().clamp(0, size_x).long()
    y0 = xyxy[:, 1].floor().clamp(0, size_y).long()
    y1 = xyxy[:, 3].ceil().clamp(0, size_y).long()
    count = (
        table[tile, y1, x1]
        - table[tile, y0, x1]
        - table[tile, y1, x0]
        + table[tile, y0, x0]
    )
    area = (x1 - x0) * (y1 - y0)
    share = 1 - count.double() / area.clamp_min(1).double()
    return torch.where(area > 0, share, torch.zeros_like(share))


def _stack_results(
    results: Sequence[dict[str, Tensor]], key: str, side: int, device: torch.device
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """A batch's detections as one set of tensors on *device*.

    Returns:
        Boxes (N, *side*) and scores (N,) in float64, labels (N,) and the
        index of each detection's tile (N,).
    """

    def stacked(name: str, dtype: torch.dtype, *shape: int) -> Tensor:
        parts = [r[name].detach().reshape(*shape).to(device, dtype) for r in results]
        return torch.cat(parts)

    boxes = stacked(key, torch.float64, -1, side)
    scores = stacked('prediction_score', torch.float64, -1)
    labels = stacked('prediction_label', torch.long, -1)
    counts = [r['prediction_score'].numel() for r in results]
    tile = torch.repeat_interleave(
        torch.arange(len(results), device=device), torch.tensor(counts, device=device)
    )
    return boxes, scores, labels, tile


class _TileDetections:
    """Each tile's detections in raster pixels, with their merge flags.

    Per batch the work runs on the model's device and one copy brings the
    batch's detections to the CPU.
    """

    def __init__(
        self,
        stack_shape: tuple[int, int],
        tile_size: int,
        oriented: bool,
        score_threshold: float,
        max_invalid: float | None,
    ) -> None:
        """Initialise an empty collection (see :func:`detect_raster`)."""
        self.height, self.width = stack_shape
        self.tile_size = tile_size
        self.oriented = oriented
        self.key = 'prediction_bbox' if oriented else 'prediction_bbox_xyxy'
        self.score_threshold = score_threshold
        self.max_invalid = max_invalid
        self.parts: list[Tensor] = []

    def add(self, batch: TileBatch, results: Sequence[dict[str, Tensor]]) -> None:
        """Add a batch's detections (tile pixels) in raster pixels."""
        dev = batch.image.device
        boxes, scores, labels, tile = _stack_results(
            results, self.key, 8 if self.oriented else 4, dev
        )
        origins = [(w.row_off, w.col_off) for w in batch.windows]
        origin = torch.tensor(origins, dtype=torch.float64, device=dev)
        row, col = origin[tile, 0], origin[tile, 1]
        boxes[:, 0::2] += col[:, None]
        boxes[:, 1::2] += row[:, None]
        keep = (scores >= self.score_threshold) & _clip_to_raster(
            boxes, self.height, self.width, self.oriented
        )
        xyxy = poly_to_xyxy(boxes) if self.oriented else boxes
        border = _border_flags(
            xyxy, row, col, self.tile_size, self.height, self.width, margin=1.0
        )
        # (the check for invalid pixels spares the table where there are none)
        if self.max_invalid is None or bool(batch.valid.all()):
            invalid = torch.zeros_like(border)
        else:
            local = xyxy - torch.stack((col, row, col, row), 1)
            invalid = _invalid_fraction(local, tile, batch.valid) > self.max_invalid
        flags = torch.stack(
            (scores, labels.double(), border.double(), invalid.double()), 1
        )
        # one copy to the CPU per batch: boxes, score, label, border, invalid
        self.parts.append(torch.cat((boxes, flags), 1)[keep].cpu())

    def geodataframe(
        self,
        iou_threshold: float,
        transform: Affine,
        crs: CRS,
        class_names: Sequence[str] | None,
    ) -> gpd.GeoDataFrame:
        """Merge across tiles (see :func:`merge_tile_detections`) into a GeoDataFrame.

        Returns:
            The kept objects by decreasing score; ``attrs['dropped_invalid']``:
            the number of merged objects dropped over invalid pixels.
        """
        side = 8 if self.oriented else 4
        packed = (
            torch.cat(self.parts)
            if self.parts
            else torch.zeros((0, side + 4), dtype=torch.float64)
        )
        boxes, scores = packed[:, :side], packed[:, side]
        labels = packed[:, side + 1].long()
        border, invalid = packed[:, side + 2].bool(), packed[:, side + 3].bool()
        keep = merge_tile_detections(
            boxes, scores, labels, border, iou_threshold, self.oriented
        )
        # After the merge: a cut piece of a valid object may lie mostly on
        # nodata, but it is merged into its whole box, whose share decides.
        dropped = invalid[keep]
        keep = keep[~dropped]
        gdf = detections_to_geodataframe(
            boxes[keep].numpy(),
            labels[keep].numpy(),
            scores[keep].numpy(),
            transform,
            crs,
            class_names,
        )
        gdf.attrs['dropped_invalid'] = int(dropped.sum())
        return gdf


def _detect_tiles(
    model: Callable[[Tensor], Sequence[dict[str, Tensor]]],
    batches: Generator[TileBatch],
    found: _TileDetections,
    precision: Precision,
    total: int,
    progress: bool,
) -> None:
    """Run the model over every batch of tiles and collect its detections in *found*."""
    bar = tqdm(total=total, disable=not progress, desc='detect', unit='tile')
    # closing: an error joins the reader threads before the rasters close
    with eval_mode(model), contextlib.closing(batches), bar:
        for batch in batches:
            found.add(batch, _run_model(model, batch, found.key, precision))
            bar.update(len(batch.windows))


def _check_output(output: str | os.PathLike[str] | None, inputs: InputPaths) -> None:
    """Refuse a bad output format, or an input as output, before the model runs."""
    if output is None:
        return
    from ..export.outputs import check_outputs, vector_output

    paths = [inputs] if isinstance(inputs, str | os.PathLike) else list(inputs)
    check_outputs([vector_output(output, 'the output')], paths)


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
    max_invalid: float | None = 0.5,
    precision: Precision | str = '32',
    device: str | torch.device = 'cpu',
    readers: int = 1,
    progress: bool = True,
    gdal_cache_mb: int | None = 128,
) -> gpd.GeoDataFrame:
    """Run a detector over a raster of any size and merge objects across tiles.

    Objects smaller than *overlap* are seen whole in some tile; the tiles'
    boxes are shifted to raster pixels and merged by :func:`merge_tile_detections`.

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
        max_invalid: Drop merged objects whose box (bounding rectangle) has more
            than this share of invalid pixels (nodata in any band, NaN); None: keep.
        precision: ``'32'`` or a Lightning mixed precision run by autocast
            (``'16-mixed'``, ``'bf16-mixed'``).
        device: Torch device of the model.
        readers: Threads reading tiles ahead (see
            :func:`~torchgeo_ext.pipelines.tiling.tile_batches`).
        progress: Show a tqdm progress bar.
        gdal_cache_mb: Cap on GDAL's block cache while reading (see
            :func:`~torchgeo_ext.export.raster.gdal_cache_limit`); None keeps it.

    Returns:
        GeoDataFrame with ``class_id``, ``class_name``, ``score`` and polygon
        geometry in the raster's CRS, by decreasing score;
        ``attrs['dropped_invalid']`` counts the objects dropped by *max_invalid*.

    Raises:
        InvalidInputError: For inconsistent tiling options or an unknown precision.
        ValueError: For malformed model outputs.
    """
    check_tiling(tile_size, overlap, batch_size)
    mode = check_precision(precision)
    _check_output(output, inputs)
    with gdal_cache_limit(gdal_cache_mb), open_inputs(inputs) as stack:
        size = (stack.height, stack.width)
        found = _TileDetections(size, tile_size, oriented, score_threshold, max_invalid)
        windows = _tile_windows(*size, tile_size, overlap)
        batches = tile_batches(
            stack, windows, batch_size, device=device, readers=readers
        )
        _detect_tiles(model, batches, found, mode, len(windows), progress)
        crs, transform = stack.crs, stack.transform
    gdf = found.geodataframe(iou_threshold, transform, crs, class_names)
    if output is not None:
        write_vector(output, gdf)
    return gdf
