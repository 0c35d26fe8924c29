"""Tiled object detection over rasters of any size, each object kept once across tiles.

Tiles are read strip by strip (as :func:`~torchgeo_ext.pipelines.tiling.predict_raster`).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import geopandas as gpd
import torch
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
    TileBatch,
    check_tiling,
    column_strips,
    tile_batches,
    tile_grid,
)

__all__ = ['PRECISIONS', 'autocast', 'detect_raster', 'merge_tile_detections']


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


#: ``precision`` values (Lightning's names) and the autocast dtype of each.
PRECISIONS: dict[str, torch.dtype | None] = {
    '32': None,
    '32-true': None,
    '16-mixed': torch.float16,
    'bf16-mixed': torch.bfloat16,
}


def autocast(
    precision: str, device: torch.device
) -> contextlib.AbstractContextManager[Any]:
    """The autocast context of a Lightning-style *precision* on *device*.

    Args:
        precision: One of :data:`PRECISIONS`.
        device: Where the model runs.

    Returns:
        ``torch.autocast`` for the mixed precisions, else a null context.

    Raises:
        ValueError: For an unknown precision.
    """
    if precision not in PRECISIONS:
        raise ValueError(
            f'precision must be one of {", ".join(PRECISIONS)}, got {precision!r}'
        )
    dtype = PRECISIONS[precision]
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)


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
    precision: str,
) -> Sequence[dict[str, Tensor]]:
    """Run the model on a batch and check its output.

    Raises:
        ValueError: If the output is not one dict per tile holding *key*.
    """
    with torch.inference_mode(), autocast(precision, batch.image.device):
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
    table = torch.nn.functional.pad(valid.int().cumsum(1).cumsum(2), (1, 0, 1, 0))
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
        local = xyxy - torch.stack((col, row, col, row), 1)
        limit = 1.0 if self.max_invalid is None else self.max_invalid
        invalid = _invalid_fraction(local, tile, batch.valid) > limit
        flags = torch.stack(
            (scores, labels.double(), border.double(), invalid.double()), 1
        )
        # one copy to the CPU per batch: boxes, score, label, border, invalid
        self.parts.append(torch.cat((boxes, flags), 1)[keep].cpu())

    def merged(self, iou_threshold: float) -> tuple[Tensor, Tensor, Tensor, int]:
        """Merge across tiles (see :func:`merge_tile_detections`).

        Returns:
            The kept boxes, scores and labels by decreasing score, and the number
            of merged objects dropped over invalid pixels.
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
        return boxes[keep], scores[keep], labels[keep], int(dropped.sum())


@contextlib.contextmanager
def _eval_mode(model: Callable[..., Any]) -> Iterator[None]:
    """Run a torch module in eval mode, restoring its mode after; other callables as they are."""
    if not isinstance(model, torch.nn.Module):
        yield
        return
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


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
    precision: str = '32',
    device: str | torch.device = 'cpu',
    readers: int = 1,
    progress: bool = True,
    gdal_cache_mb: int | None = 128,
) -> gpd.GeoDataFrame:
    """Run a detector over a raster of any size and merge objects across tiles.

    Tiles overlap by at least *overlap* pixels (objects smaller than that are
    seen whole in some tile); the last tile of a row or column is flush with
    the raster edge. Tiles come from
    :func:`~torchgeo_ext.pipelines.tiling.tile_batches`; tile boxes are
    shifted to raster pixels and merged by :func:`merge_tile_detections`.

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
        max_invalid: Drop objects whose box (an oriented box's bounding
            rectangle) has more than this share of invalid pixels (nodata in
            any band, or NaN), judged after merging across tiles. None keeps
            them all.
        precision: ``'32'`` or a Lightning mixed precision run by autocast
            (``'16-mixed'``, ``'bf16-mixed'``); see :data:`PRECISIONS`.
        device: Torch device of the model (tiles are read into pinned
            memory for a GPU).
        readers: Threads reading tiles ahead of the model (more help where
            reading is slow; see :func:`~torchgeo_ext.pipelines.tiling.tile_batches`).
        progress: Show a tqdm progress bar.
        gdal_cache_mb: Cap on GDAL's block cache while reading (see
            :func:`~torchgeo_ext.export.raster.gdal_cache_limit`); None keeps it.

    Returns:
        GeoDataFrame with ``class_id``, ``class_name``, ``score`` and polygon
        geometry in the raster's CRS, by decreasing score. Its
        ``attrs['dropped_invalid']`` counts the objects dropped over invalid
        pixels (after merging across tiles).

    Raises:
        InvalidInputError: For inconsistent tiling options.
        ValueError: For an unknown precision or malformed model outputs.
    """
    check_tiling(tile_size, overlap, batch_size)
    autocast(precision, torch.device(device))  # validates it before any work
    _check_output(output, inputs)
    with gdal_cache_limit(gdal_cache_mb), open_inputs(inputs) as stack:
        found = _TileDetections(
            (stack.height, stack.width),
            tile_size,
            oriented,
            score_threshold,
            max_invalid,
        )
        windows = _tile_windows(stack.height, stack.width, tile_size, overlap)
        batches = tile_batches(
            stack, windows, batch_size, device=device, readers=readers
        )
        bar = tqdm(total=len(windows), disable=not progress, desc='detect', unit='tile')
        # closing: an error joins the reader threads before the rasters close
        with _eval_mode(model), contextlib.closing(batches), bar:
            for batch in batches:
                found.add(batch, _run_model(model, batch, found.key, precision))
                bar.update(len(batch.windows))
        crs, transform = stack.crs, stack.transform
    boxes, scores, labels, dropped = found.merged(iou_threshold)
    gdf = detections_to_geodataframe(
        boxes.numpy(), labels.numpy(), scores.numpy(), transform, crs, class_names
    )
    gdf.attrs['dropped_invalid'] = dropped
    if output is not None:
        write_vector(output, gdf)
    return gdf
