"""Tiled semantic segmentation of georeferenced rasters with a checkpoint of this library."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ('DEFAULT_TILE_SIZE', 'NODATA', 'SegmentResult', 'segment_raster')

# Heavy libraries are imported inside the functions: the command's parser imports the
# defaults below without torch.
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
    precision: str = '32',
    min_area: float = 0,
    progress: bool = False,
) -> SegmentResult:
    """Segment one raster (or a stack of co-registered rasters) with a checkpoint.

    What ``torchgeo-ext segment`` runs. Any segmentation checkpoint works (the
    task is rebuilt with :func:`torchgeo_ext.trainers.base.load_task`). The
    input must hold the model's bands as the training data held them: the
    per-band offset and scale the checkpoint recorded from its data module are
    applied here (FYH: the builder's scene GeoTIFFs, stored normalised, record
    the identity; checkpoints without a record get the values unchanged). The
    class GeoTIFF has the input's CRS, transform and size, the class names in
    its ``class_names`` tag and 255 where the input is nodata; ``vector`` adds
    one polygon per connected region of a class (columns ``class_id``,
    ``class_name``, ``area`` and ``score``, the mean probability of the class
    over the region), built from this run's own blended probabilities.

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
        precision: '32', '16-mixed' or 'bf16-mixed' (as Lightning names them).
        min_area: Minimum polygon size in pixels.
        progress: Show a progress bar.

    Returns:
        What was written.

    Raises:
        InvalidInputError: If the inputs' band count differs from the model's
            input channels, or the checkpoint is not a segmentation model.
        MissingInputError: If a file does not exist.
    """
    from ..export.outputs import check_outputs, raster_output, vector_output
    from .tiling import check_precision, check_tiling, predict_raster

    paths = [inputs] if isinstance(inputs, str | os.PathLike) else list(inputs)
    # Fail on unsafe or unwritable outputs or a bad extension before the long run.
    check_outputs(
        [
            raster_output(output, 'the class output'),
            None if vector is None else vector_output(vector),
        ],
        [*paths, checkpoint],
    )
    check_precision(precision)
    model = _load_segmenter(checkpoint, paths, tile_size, device)
    tile = int(tile_size or model.tile_size or DEFAULT_TILE_SIZE)
    over = tile // 4 if overlap is None else overlap
    check_tiling(tile, over, batch_size, blend)
    classes = _ClassRaster(model, keep=vector is not None)
    out = predict_raster(
        model.logits, paths, output, tile_size=tile, overlap=over,
        batch_size=batch_size, blend=blend,  # type: ignore[arg-type]
        output_kind='classes', nodata=NODATA, class_names=model.class_names,
        device=device, precision=precision, progress=progress, on_rows=classes,
    )  # fmt: skip
    vector_path, polygons = None, 0
    if vector is not None:
        vector_path, polygons = _write_polygons(vector, model, classes, min_area)
    counts = {k: int(n) for k, n in enumerate(classes.pixels) if n}
    return SegmentResult(out, vector_path, model.class_names, counts, polygons)


@dataclass
class _Segmenter:
    """A segmentation checkpoint ready to run on a scene."""

    #: Raw raster values (B, C, h, w) -> logits (B, K, h, w), normalised as in training.
    logits: Any
    #: Class names, indexed by class id.
    class_names: list[str]
    #: The tile size recorded in the checkpoint, if any.
    tile_size: int | None
    #: The scene's height, width, CRS and transform.
    scene: tuple[int, int, Any, Any]


def _load_segmenter(
    checkpoint: str | os.PathLike[str],
    paths: list[Any],
    tile_size: int | None,
    device: str,
) -> _Segmenter:
    """Load the task, check the scene's bands against it, and probe its outputs."""
    from ..errors import InvalidInputError
    from ..export.raster import open_inputs
    from .checkpoints import load_task_for

    task = load_task_for(checkpoint, 'segmentation', device)
    in_channels = _hparam(task, 'in_channels')
    with open_inputs(paths) as stack:
        bands, height, width = stack.count, stack.height, stack.width
        scene = (height, width, stack.crs, stack.transform)
    if in_channels is not None and bands != int(in_channels):
        listed = ', '.join(os.fspath(p) for p in paths)
        raise InvalidInputError(
            paths[0],
            f'the input has {bands} band(s) ({listed}) but the model of {checkpoint} '
            f'expects {in_channels}; give a raster (or co-registered rasters) with '
            f'{in_channels} bands in the training band order',
        )
    logits_of = getattr(task, 'predict_logits', task)
    normalise = getattr(task, 'normalise', None)

    def logits(x: Any) -> Any:
        # raw raster values -> the normalisation recorded at fit time
        return logits_of(normalise(x) if normalise is not None else x)

    recorded = _hparam(task, 'tile_size')
    tile = int(tile_size or recorded or DEFAULT_TILE_SIZE)
    num_classes = _probe_classes(
        logits, checkpoint, (bands, min(tile, height), min(tile, width)), device
    )
    names = getattr(task, 'class_names', None) or _hparam(task, 'class_names')
    class_names = (
        [str(n) for n in names]
        if names is not None and len(names) == num_classes
        else [f'class_{k}' for k in range(num_classes)]
    )
    return _Segmenter(logits, class_names, recorded, scene)


def _probe_classes(
    logits: Any, checkpoint: Any, shape: tuple[int, int, int], device: str
) -> int:
    """Classes the model predicts; fails before anything is written if it is no dense classifier."""
    import torch

    from ..errors import InvalidInputError

    probe = torch.zeros(1, *shape, device=device)
    try:
        with torch.inference_mode():
            out = logits(probe)
    except RuntimeError as error:
        raise InvalidInputError(
            checkpoint, f'the model rejected a {shape[0]}-band input ({error})'
        ) from error
    if not isinstance(out, torch.Tensor) or out.ndim != 4:
        shape_out = getattr(out, 'shape', type(out).__name__)
        raise InvalidInputError(
            checkpoint,
            f'not a segmentation model: it returns {shape_out}, not (B, K, H, W)',
        )
    return int(out.shape[1])


class _ClassRaster:
    """Class counts, and with *keep* the classes and their probability, from blended rows."""

    def __init__(self, model: _Segmenter, keep: bool) -> None:
        import numpy as np

        height, width = model.scene[:2]
        self.pixels = np.zeros(len(model.class_names), dtype=np.int64)
        self.classes = np.full((height, width) if keep else (0, 0), NODATA, np.uint8)
        self.confidence = np.full(self.classes.shape, np.nan, dtype=np.float32)

    def __call__(self, window: Any, probabilities: Any, valid: Any) -> None:
        """Take one window of blended probabilities (K, h, w) and validity (h, w)."""
        import torch

        from .stitching import channel_argmax

        confidence, ids = channel_argmax(probabilities)  # the classes written
        counts = torch.bincount(ids[valid].long(), minlength=len(self.pixels))
        self.pixels += counts.cpu().numpy()
        if self.classes.size:
            rows, cols = window.toslices()
            self.classes[rows, cols] = ids.masked_fill(~valid, NODATA).cpu().numpy()
            nan = torch.tensor(float('nan'), device=confidence.device)
            self.confidence[rows, cols] = (
                torch.where(valid, confidence, nan).cpu().numpy()
            )


def _write_polygons(
    vector: str | os.PathLike[str],
    model: _Segmenter,
    classes: _ClassRaster,
    min_area: float,
) -> tuple[Path, int]:
    """Write one polygon per connected class region, scored by its mean probability."""
    from ..export.geometry import mask_to_polygons
    from ..export.vector import write_vector

    _, _, crs, transform = model.scene
    gdf = mask_to_polygons(
        classes.classes, transform, crs, model.class_names,
        min_area=min_area, ignore_index=NODATA,
    )  # fmt: skip
    gdf['score'] = _zonal_mean(gdf, classes.confidence, transform)
    return write_vector(vector, gdf), len(gdf)


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
