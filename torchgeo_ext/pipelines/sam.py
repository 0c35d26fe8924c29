"""SAM outlines for detected boxes: box prompts on raster windows, polygons in the raster's CRS."""

from __future__ import annotations

import math
import os
import warnings
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import geopandas as gpd
import numpy as np
import rasterio.features
import torch
import torch.nn.functional as F
from numpy.typing import NDArray
from rasterio.transform import Affine
from rasterio.windows import Window
from segment_anything.modeling import Sam
from shapely.geometry import shape
from tqdm import tqdm

from ..errors import InvalidInputError
from ..export.geometry import boxes_to_polygons
from ..export.raster import RasterStack, crs_to_string, open_inputs
from ..export.vector import write_vector
from ..models.sam import load_sam
from .tiling import eval_mode

__all__ = ['SAM_STATUS', 'check_sam_bands', 'parse_bands', 'refine_with_sam']

InputPaths = str | os.PathLike[str] | Sequence[str | os.PathLike[str]]

#: Values of the ``sam_status`` column.
SAM_STATUS = {
    'ok': 'the geometry is the SAM outline',
    'empty_mask': 'SAM returned no mask overlapping the box; the box is kept',
    'outside_raster': 'the box lies outside the raster; the box is kept',
    'too_large': 'the object needs a window above max_window pixels; the box is kept',
}


def parse_bands(text: str) -> list[int]:
    """Parse a ``--sam-bands`` value such as ``1,2,3`` (1-based band numbers).

    Args:
        text: Three comma-separated band numbers.

    Returns:
        The band numbers.

    Raises:
        InvalidInputError: If it is not three positive integers.
    """
    try:
        bands = [int(part) for part in text.split(',')]
    except ValueError:
        bands = []
    if len(bands) != 3 or min(bands) < 1:
        raise InvalidInputError(
            None, f'--sam-bands needs three band numbers like 1,2,3, got {text!r}'
        )
    return bands


@dataclass
class _Object:
    index: int
    box: tuple[float, float, float, float]  # pixel x0, y0, x1, y1 (clipped)


def _pixel_box(
    geometry: Any, inverse: Affine, width: int, height: int
) -> tuple[float, float, float, float] | None:
    """Pixel bounds of a geometry (its hull for oriented boxes), clipped to the raster."""
    if geometry is None or geometry.is_empty:
        return None
    hull = geometry.convex_hull
    coords = np.asarray(
        hull.exterior.coords if hull.geom_type == 'Polygon' else hull.coords
    )
    a, b, c, d, e, f = tuple(inverse)[:6]
    cols = a * coords[:, 0] + b * coords[:, 1] + c
    rows = d * coords[:, 0] + e * coords[:, 1] + f
    x0, x1 = max(float(cols.min()), 0.0), min(float(cols.max()), float(width))
    y0, y1 = max(float(rows.min()), 0.0), min(float(rows.max()), float(height))
    if x1 - x0 < 1e-6 or y1 - y0 < 1e-6:
        return None
    return x0, y0, x1, y1


def _window_for(
    box: tuple[float, float, float, float],
    size: int,
    context: float,
    width: int,
    height: int,
) -> tuple[int, int, int, int]:
    """Window (col, row, w, h) holding *box* whole: *size* px, or the box plus context."""
    x0, y0, x1, y1 = box
    bw, bh = x1 - x0, y1 - y0
    side_w = max(size, math.ceil(bw * (1 + 2 * context)))
    side_h = max(size, math.ceil(bh * (1 + 2 * context)))
    side = max(side_w, side_h)
    w, h = min(side, width), min(side, height)
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    col = round(cx - w / 2)
    row = round(cy - h / 2)
    col = min(max(col, 0), width - w)
    row = min(max(row, 0), height - h)
    return col, row, w, h


def _group_windows(
    objects: list[_Object],
    size: int,
    context: float,
    width: int,
    height: int,
    max_window: int,
) -> list[tuple[tuple[int, int, int, int] | None, list[_Object]]]:
    """Windows to prompt on, each with the objects it holds whole.

    An object is prompted once. Objects are visited in order; each one not yet
    prompted opens a window of *size* pixels (SAM's input size, 1024 for the
    released models) centred on it and clipped to the raster, and every other
    unprompted object lying wholly inside that window is prompted on the same
    image embedding (one encoder pass for a cluster of objects, at native
    resolution). An object larger than the window gets a window of its own,
    its box plus a *context* margin on each side, which SAM resizes to its
    input size. Objects whose window would exceed *max_window* pixels a side
    get the window None.
    """
    groups: list[tuple[tuple[int, int, int, int] | None, list[_Object]]] = []
    if not objects:
        return groups
    boxes = np.asarray([o.box for o in objects], dtype=np.float64)
    pending = np.ones(len(objects), dtype=np.bool_)
    for first in range(len(objects)):
        if not pending[first]:
            continue
        window = _window_for(objects[first].box, size, context, width, height)
        col, row, w, h = window
        if max(w, h) > max_window:
            pending[first] = False
            groups.append((None, [objects[first]]))
            continue
        inside = (
            pending
            & (boxes[:, 0] >= col)
            & (boxes[:, 1] >= row)
            & (boxes[:, 2] <= col + w)
            & (boxes[:, 3] <= row + h)
        )
        inside[first] = True
        pending &= ~inside
        groups.append((window, [objects[k] for k in np.flatnonzero(inside)]))
    return groups


def _to_sam_range(
    data: NDArray[np.float32], valid: NDArray[np.bool_], scale: float | None
) -> NDArray[np.float32]:
    """Map band values to SAM's 0-255 input range."""
    if scale is not None:
        return np.clip(data / scale * 255.0, 0, 255).astype(np.float32)
    out = np.empty_like(data)
    for k, band in enumerate(data):
        values = band[valid] if valid.any() else band.reshape(-1)
        lo, hi = np.percentile(values, (2, 98)) if values.size else (0.0, 1.0)
        out[k] = np.clip((band - lo) / max(float(hi - lo), 1e-12) * 255.0, 0, 255)
    return out


def _largest_part(
    mask: NDArray[np.bool_], transform: Affine, box_geometry: Any
) -> Any | None:
    """The largest connected part of *mask* overlapping the box, as a CRS polygon."""
    best, best_area = None, 0.0
    for geom, _ in rasterio.features.shapes(
        mask.astype(np.uint8), mask=mask, transform=transform
    ):
        polygon = shape(geom)
        if not polygon.intersects(box_geometry):
            continue
        overlap = polygon.intersection(box_geometry).area
        if overlap > best_area:
            best, best_area = polygon, overlap
    return best


@torch.no_grad()
def _segment_window(
    sam: Sam,
    image: NDArray[np.float32],
    boxes: NDArray[np.float64],
    device: torch.device,
) -> tuple[NDArray[np.bool_], NDArray[np.float32]]:
    """Prompt SAM with boxes (window pixels) on one (3, h, w) 0-255 image."""
    h, w = image.shape[1:]
    size = int(sam.image_encoder.img_size)
    factor = size / max(h, w)
    new_h, new_w = round(h * factor), round(w * factor)
    x = torch.from_numpy(image)[None].to(device)
    if (new_h, new_w) != (h, w):
        x = F.interpolate(x, (new_h, new_w), mode='bilinear', antialias=True)
    embedding = sam.image_encoder(sam.preprocess(x))
    prompts = torch.from_numpy(boxes).float().to(device)
    prompts[:, 0::2] *= new_w / w
    prompts[:, 1::2] *= new_h / h
    sparse, dense = sam.prompt_encoder(points=None, boxes=prompts, masks=None)
    low, iou = sam.mask_decoder(
        image_embeddings=embedding,
        image_pe=sam.prompt_encoder.get_dense_pe(),
        sparse_prompt_embeddings=sparse,
        dense_prompt_embeddings=dense,
        multimask_output=False,
    )
    masks = sam.postprocess_masks(low, (new_h, new_w), (h, w))[:, 0]
    return ((masks > sam.mask_threshold).cpu().numpy(), iou[:, 0].float().cpu().numpy())


def check_sam_bands(
    count: int, bands: Sequence[int] | None, path: Any = None
) -> list[int]:
    """Check the bands SAM reads against the number of raster bands.

    Args:
        count: Bands of the (stacked) rasters.
        bands: Three 1-based band numbers, or None (then *count* must be 3).
        path: The raster named in errors.

    Returns:
        The three 0-based band indices.

    Raises:
        InvalidInputError: If no bands are given for a raster of other than
            three bands, or the bands do not fit.
    """
    if bands is None:
        if count != 3:
            raise InvalidInputError(
                path,
                f'the rasters have {count} band(s) but SAM reads 3; choose '
                'them with --sam-bands (e.g. 1,2,3, or 4,4,4 for one band)',
            )
        return [0, 1, 2]
    chosen = [int(b) for b in bands]
    if len(chosen) != 3 or min(chosen) < 1 or max(chosen) > count:
        raise InvalidInputError(
            path,
            f'SAM bands {chosen} do not fit the rasters (three numbers in 1..{count})',
        )
    return [b - 1 for b in chosen]


def refine_with_sam(
    gdf: gpd.GeoDataFrame,
    rasters: InputPaths,
    checkpoint: str | os.PathLike[str] | Sam,
    *,
    variant: str | None = None,
    bands: Sequence[int] | None = None,
    scale: float | None = None,
    window_size: int | None = None,
    context: float = 0.25,
    max_window: int = 8192,
    device: str | torch.device = 'cpu',
    output: str | os.PathLike[str] | None = None,
    progress: bool = False,
) -> gpd.GeoDataFrame:
    """Replace detected boxes by SAM outlines, in the raster's CRS.

    Args:
        gdf: Boxes as polygons (axis-aligned or oriented: the pixel-space
            bounds of each geometry's hull are the box prompt), in any CRS.
        rasters: The raster(s) the boxes were detected on (co-registered,
            stacked band-wise as for detection).
        checkpoint: A SAM state dict file, or a SAM model.
        variant: Expected SAM variant of the checkpoint (``vit_b``, ``vit_l``,
            ``vit_h``); None: whatever it holds.
        bands: Three 1-based band numbers of the stack given to SAM as RGB
            (required unless the stack has exactly three bands).
        scale: Values are divided by this and multiplied by 255 for SAM
            (e.g. 255 for 8-bit, 10000 for reflectance); None: 8-bit rasters
            as they are, other types stretched per window between the 2nd
            and 98th percentiles.
        window_size: Window side in pixels (default: SAM's input size).
        context: Margin on each side of boxes larger than a window, as a
            fraction of the box size.
        max_window: Largest window side read for one object (bounds memory:
            three float32 bands of 8192 x 8192 are 0.8 GB); larger objects keep
            their box (status ``too_large``).
        device: Torch device for SAM.
        output: Optional vector file (.gpkg, .geojson, .parquet), written atomically.
        progress: Show a progress bar over windows.

    Returns:
        The input rows (reprojected to the raster CRS) with the SAM outline as
        geometry and the columns ``box_wkt`` (the original box, WKT in the
        raster CRS), ``sam_score`` (SAM's predicted IoU) and ``sam_status``
        (see :data:`SAM_STATUS`; rows whose mask is empty keep their box and
        are counted in a warning).

    Raises:
        InvalidInputError: For a bad checkpoint or band choice.
        ValueError: If *gdf* has no CRS.
    """
    sam, paths = _checked_inputs(gdf, rasters, checkpoint, variant, context)
    size = int(window_size or sam.image_encoder.img_size)
    with eval_mode(sam.to(torch.device(device))), open_inputs(paths) as stack:
        band_index = check_sam_bands(stack.count, bands, paths[-1])
        if scale is None and all(ds.dtypes[0] == 'uint8' for ds in stack.datasets):
            scale = 255.0
        outlines = _Outlines(gdf, stack)
        groups = _group_windows(
            outlines.objects(stack),
            size,
            context,
            stack.width,
            stack.height,
            max_window,
        )
        for window, members in tqdm(groups, disable=not progress, desc='sam'):
            if window is None:
                outlines.status[members[0].index] = 'too_large'
                continue
            data, valid = stack.read(Window(*window))
            image = _to_sam_range(data[band_index], valid, scale)
            outlines.segment(sam, image, window, members, stack.transform)
    result = outlines.result()
    _warn_problems(result['sam_status'])
    if output is not None:
        write_vector(output, result)
    return result


def _checked_inputs(
    gdf: gpd.GeoDataFrame,
    rasters: InputPaths,
    checkpoint: str | os.PathLike[str] | Sam,
    variant: str | None,
    context: float,
) -> tuple[Sam, list[str | os.PathLike[str]]]:
    """Check :func:`refine_with_sam`'s inputs; load SAM; list the rasters."""
    if gdf.crs is None:
        raise ValueError('the GeoDataFrame has no CRS')
    if context < 0:
        raise ValueError(f'context must be >= 0, got {context}')
    sam = checkpoint if isinstance(checkpoint, Sam) else load_sam(checkpoint, variant)
    paths = [rasters] if isinstance(rasters, str | os.PathLike) else list(rasters)
    return sam, paths


class _Outlines:
    """The rows being outlined: geometries, SAM scores and statuses (see :data:`SAM_STATUS`)."""

    def __init__(self, gdf: gpd.GeoDataFrame, stack: RasterStack) -> None:
        """Take the rows of *gdf*, reprojected to the raster CRS; all outside the raster."""
        self.crs = crs_to_string(stack.crs)
        rows = gdf.to_crs(self.crs) if gdf.crs != stack.crs else gdf.copy()
        self.rows = rows.reset_index(drop=True)
        self.status = ['outside_raster'] * len(self.rows)
        self.scores = np.full(len(self.rows), np.nan, dtype=np.float32)
        self.boxes_wkt = [g.wkt if g is not None else '' for g in self.rows.geometry]
        self.geometries = list(self.rows.geometry)

    def objects(self, stack: RasterStack) -> list[_Object]:
        """The rows whose box lies (partly) on the raster, with their pixel boxes."""
        inverse = ~stack.transform
        objects = []
        for i, geometry in enumerate(self.rows.geometry):
            pixel = _pixel_box(geometry, inverse, stack.width, stack.height)
            if pixel is not None:
                objects.append(_Object(i, pixel))
        return objects

    def segment(
        self,
        sam: Sam,
        image: NDArray[np.float32],
        window: tuple[int, int, int, int],
        members: list[_Object],
        transform: Affine,
    ) -> None:
        """Prompt SAM with the boxes of *members* on the image of *window*."""
        col, row = window[:2]
        local = np.asarray(
            [
                (o.box[0] - col, o.box[1] - row, o.box[2] - col, o.box[3] - row)
                for o in members
            ]
        )
        device = next(sam.parameters()).device
        masks, ious = _segment_window(sam, image, local, device)
        window_transform = transform @ Affine.translation(col, row)
        for o, mask, iou in zip(members, masks, ious):
            (prompt,) = boxes_to_polygons(np.asarray([o.box]), transform)
            outline = _largest_part(mask, window_transform, prompt)
            self.scores[o.index] = float(iou)
            self.status[o.index] = 'empty_mask' if outline is None else 'ok'
            if outline is not None:
                self.geometries[o.index] = outline

    def result(self) -> gpd.GeoDataFrame:
        """The rows with the outlines as geometry and the SAM columns."""
        result = self.rows.set_geometry(gpd.GeoSeries(self.geometries, crs=self.crs))
        result['box_wkt'] = self.boxes_wkt
        result['sam_score'] = self.scores
        result['sam_status'] = self.status
        # An empty result keeps the text columns as text (the vector writer reads this).
        strings = (*self.rows.attrs.get('string_columns', ()), 'box_wkt', 'sam_status')
        result.attrs['string_columns'] = tuple(dict.fromkeys(strings))
        return result


def _warn_problems(status: Sequence[str]) -> None:
    """Warn about the rows that kept their box, by reason."""
    problems = Counter(s for s in status if s != 'ok')
    if problems:
        warnings.warn(
            'SAM kept the box for '
            + ', '.join(f'{n} object(s) with {kind}' for kind, n in problems.items())
            + ' (see the sam_status column)',
            stacklevel=3,
        )
