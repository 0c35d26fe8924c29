"""Tiled semantic segmentation of georeferenced rasters with a checkpoint of this library.

:func:`segment_raster` is what ``torchgeo-ext segment`` runs. Any segmentation
checkpoint works (the task is rebuilt with
:func:`torchgeo_ext.trainers.base.load_task`). The input (one raster, or
several co-registered rasters stacked as bands in the order given) must hold
the model's bands as the training data held them: the per-band offset and
scale the checkpoint recorded from its data module are applied here (FYH:
the builder's scene GeoTIFFs, stored normalised, record the identity;
checkpoints without a record get the values unchanged). The output is a uint8 class
GeoTIFF with the input's CRS, transform and size, the class names in its
``class_names`` tag and 255 where the input is nodata; with ``vector`` it adds
one polygon per connected region of a class (columns ``class_id``,
``class_name``, ``area`` and ``score``, the mean probability of the class over
the region).

Heavy libraries are imported inside the functions, so that the command's
parser can import the defaults below without torch.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ('DEFAULT_TILE_SIZE', 'NODATA', 'SegmentResult', 'segment_raster')

#: Class-raster value written where the input is nodata.
NODATA = 255
#: Tile size used when the checkpoint records none.
DEFAULT_TILE_SIZE = 256


@dataclass
class SegmentResult:
    """What :func:`segment_raster` wrote."""

    #: The class GeoTIFF.
    output: Path
    #: The polygon file, if requested.
    vector: Path | None
    #: Class names, indexed by class id.
    class_names: list[str]
    #: Pixels per class id (nodata excluded).
    counts: dict[int, int]
    #: Number of polygons written (0 without a vector file).
    polygons: int


def _hparam(task: Any, name: str) -> Any:
    hparams = getattr(task, 'hparams', {})
    return hparams.get(name) if hasattr(hparams, 'get') else None


def segment_raster(
    inputs: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    output: str | os.PathLike[str],
    checkpoint: str | os.PathLike[str],
    *,
    vector: str | os.PathLike[str] | None = None,
    tile_size: int | None = None,
    overlap: int | None = None,
    batch_size: int = 4,
    blend: str = 'cosine',
    device: str = 'cpu',
    min_area: float = 0,
    progress: bool = False,
) -> SegmentResult:
    """Segment one raster (or a stack of co-registered rasters) with a checkpoint.

    Args:
        inputs: Input raster path(s).
        output: Class GeoTIFF to write (uint8, nodata 255).
        checkpoint: A segmentation task checkpoint of this library.
        vector: Optional polygon output (.gpkg, .geojson, .parquet).
        tile_size: Tile side (default: the checkpoint's ``tile_size`` hparam or 256).
        overlap: Tile overlap (default: ``tile_size // 4``).
        batch_size: Tiles per model call.
        blend: 'cosine', 'linear' or 'crop' (see :mod:`torchgeo_ext.pipelines.tiling`).
        device: Torch device.
        min_area: Minimum polygon size in pixels.
        progress: Show a progress bar.

    Returns:
        What was written.

    Raises:
        InvalidInputError: If the inputs' band count differs from the model's
            input channels, or the checkpoint is not a segmentation model.
        MissingInputError: If a file does not exist.
    """
    import numpy as np
    import rasterio
    import torch

    from ..errors import InvalidInputError
    from ..export.atomic import temporary_directory
    from ..export.geometry import mask_to_polygons
    from ..export.outputs import check_outputs, raster_output, vector_output
    from ..export.raster import open_inputs
    from ..export.vector import write_vector
    from .checkpoints import load_task_for
    from .tiling import check_tiling, predict_raster

    paths = [inputs] if isinstance(inputs, str | os.PathLike) else list(inputs)
    # Fail on unsafe or unwritable outputs or a bad extension before the long run.
    check_outputs(
        [
            raster_output(output, 'the class output'),
            None if vector is None else vector_output(vector),
        ],
        [*paths, checkpoint],
    )
    task = load_task_for(checkpoint, 'segmentation', device)
    in_channels = _hparam(task, 'in_channels')
    with open_inputs(paths) as stack:
        bands, height, width = stack.count, stack.height, stack.width
    if in_channels is not None and bands != int(in_channels):
        listed = ', '.join(os.fspath(p) for p in paths)
        raise InvalidInputError(
            paths[0],
            f'the input has {bands} band(s) ({listed}) but the model of {checkpoint} '
            f'expects {in_channels}; give a raster (or co-registered rasters) with '
            f'{in_channels} bands in the training band order',
        )
    tile = int(tile_size or _hparam(task, 'tile_size') or DEFAULT_TILE_SIZE)
    over = tile // 4 if overlap is None else overlap
    check_tiling(tile, over, batch_size, blend)
    logits_of = getattr(task, 'predict_logits', task)
    normalise = getattr(task, 'normalise', None)

    def predict_logits(x: Any) -> Any:
        # raw raster values -> the normalisation recorded at fit time
        return logits_of(normalise(x) if normalise is not None else x)

    # Fail early, before writing anything, if this is no dense classifier.
    probe = torch.zeros(1, bands, min(tile, height), min(tile, width), device=device)
    try:
        with torch.inference_mode():
            logits = predict_logits(probe)
    except RuntimeError as error:
        raise InvalidInputError(
            checkpoint, f'the model rejected a {bands}-band input ({error})'
        ) from error
    if not isinstance(logits, torch.Tensor) or logits.ndim != 4:
        shape = getattr(logits, 'shape', type(logits).__name__)
        raise InvalidInputError(
            checkpoint,
            f'not a segmentation model: it returns {shape}, not (B, K, H, W)',
        )
    num_classes = int(logits.shape[1])
    names = getattr(task, 'class_names', None) or _hparam(task, 'class_names')
    class_names = (
        [str(n) for n in names]
        if names is not None and len(names) == num_classes
        else [f'class_{k}' for k in range(num_classes)]
    )

    options: dict[str, Any] = {
        'tile_size': tile,
        'overlap': over,
        'batch_size': batch_size,
        'blend': blend,
        'class_names': class_names,
        'device': device,
        'progress': progress,
    }
    if vector is None:
        out = predict_raster(
            predict_logits,
            paths,
            output,
            output_kind='classes',
            nodata=NODATA,
            **options,
        )
        with rasterio.open(out) as src:
            classes = src.read(1)
        confidence = None
    else:
        # The polygons' scores need the class probabilities: predict them, then
        # derive the class raster from them (the argmax predict_raster would take).
        target = Path(output)
        with temporary_directory(dir=target.parent) as tmp:
            probabilities = predict_raster(
                predict_logits,
                paths,
                Path(tmp) / 'probabilities.tif',
                output_kind='probabilities',
                cog=False,
                **options,
            )
            out, classes, confidence = _classes_from_probabilities(
                probabilities, target, class_names
            )
    ids, pixels = np.unique(classes[classes != NODATA], return_counts=True)
    counts = {int(k): int(n) for k, n in zip(ids, pixels, strict=True)}
    vector_path = None
    polygons = 0
    if vector is not None:
        assert confidence is not None
        with rasterio.open(out) as src:
            transform, crs = src.transform, src.crs
        gdf = mask_to_polygons(
            classes, transform, crs, class_names, min_area=min_area, ignore_index=NODATA
        )
        gdf['score'] = _zonal_mean(gdf, confidence, transform)
        vector_path = write_vector(vector, gdf)
        polygons = len(gdf)
    return SegmentResult(out, vector_path, class_names, counts, polygons)


def _classes_from_probabilities(
    probabilities: Path, output: Path, class_names: list[str]
) -> tuple[Path, Any, Any]:
    """Write the class GeoTIFF (argmax) of a probability GeoTIFF, streaming by rows.

    Returns:
        The output path, the class ids (H, W) uint8 and the probability of
        the chosen class (H, W) float32 (NaN at nodata).
    """
    import numpy as np
    import rasterio
    from rasterio.windows import Window, subdivide

    from ..export.raster import BLOCKSIZE, RasterWriter

    with rasterio.open(probabilities) as src:
        height, width = src.height, src.width
        classes = np.full((height, width), NODATA, dtype=np.uint8)
        confidence = np.full((height, width), np.nan, dtype=np.float32)
        writer = RasterWriter(
            output,
            width=width,
            height=height,
            count=1,
            dtype='uint8',
            crs=src.crs,
            transform=src.transform,
            nodata=NODATA,
            band_names=['class'],
            tags={'output_kind': 'classes', 'class_names': json.dumps(class_names)},
        )
        with writer:
            for window in subdivide(Window(0, 0, width, height), BLOCKSIZE, width):
                block = src.read(window=window)
                valid = ~np.isnan(block).any(axis=0)
                row = int(window.row_off)
                rows = slice(row, row + block.shape[1])
                filled = np.where(np.isnan(block), -1, block)
                ids = filled.argmax(axis=0).astype(np.uint8)
                ids[~valid] = NODATA
                classes[rows] = ids
                confidence[rows] = np.where(valid, filled.max(axis=0), np.nan)
                writer.write(window, ids)
    return writer.path, classes, confidence


def _zonal_mean(gdf: Any, values: Any, transform: Any) -> Any:
    """Mean of *values* over the pixels of each polygon (pixel-exact polygons)."""
    import numpy as np
    from rasterio.features import rasterize

    if len(gdf) == 0:
        return np.zeros(0, dtype=np.float64)
    zones = rasterize(
        ((geom, i + 1) for i, geom in enumerate(gdf.geometry)),
        out_shape=values.shape,
        transform=transform,
        fill=0,
        dtype='int32',
    )
    inside = (zones > 0) & ~np.isnan(values)
    sums = np.bincount(zones[inside], weights=values[inside], minlength=len(gdf) + 1)
    counts = np.bincount(zones[inside], minlength=len(gdf) + 1)
    return sums[1:] / np.maximum(counts[1:], 1)
