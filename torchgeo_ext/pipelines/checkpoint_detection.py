"""Object detection over rasters with a detection checkpoint of this library (``detect``).

Heavy libraries are imported inside the functions: the command's parser imports the defaults.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import geopandas as gpd
    from torch import Tensor

__all__ = ('DEFAULT_OVERLAP', 'default_overlap', 'detect_with_checkpoint')

#: Largest default tile overlap (a quarter of the tile below 512).
DEFAULT_OVERLAP = 128


def default_overlap(tile_size: int) -> int:
    """The tile overlap used when none is given.

    Args:
        tile_size: Tile side.

    Returns:
        A quarter of the tile, at most :data:`DEFAULT_OVERLAP`.
    """
    return min(DEFAULT_OVERLAP, tile_size // 4)


def detect_with_checkpoint(
    inputs: Sequence[str | os.PathLike[str]],
    output: str | os.PathLike[str],
    checkpoint: str | os.PathLike[str],
    *,
    tile_size: int = 512,
    overlap: int | None = None,
    batch_size: int = 4,
    iou_threshold: float = 0.5,
    score_threshold: float = 0.25,
    scale: float | None = None,
    device: str = 'cpu',
    progress: bool = False,
    sam_checkpoint: str | os.PathLike[str] | None = None,
    sam_model: str | None = None,
    sam_bands: list[int] | None = None,
    engine: str = 'torch',
    precision: str = '32',
    max_invalid: float | None = 0.5,
    bands: Sequence[int] | None = None,
    value_range: tuple[float, float] | None = None,
) -> gpd.GeoDataFrame:
    """Detect objects in co-registered rasters with a checkpoint and write them.

    Args:
        inputs: Rasters, one per modality, stacked band-wise in the order given.
        output: Vector file (GeoPackage, GeoJSON or GeoParquet by extension).
        checkpoint: A detection task checkpoint of this library.
        tile_size: Tile side.
        overlap: Minimum tile overlap (default: :func:`default_overlap`).
        batch_size: Tiles per model call.
        iou_threshold: Cross-tile NMS IoU threshold.
        score_threshold: Minimum detection score (also lowers the task's own).
        scale: Divisor of raster values, only for checkpoints that record no
            normalisation (default 255).
        device: Torch device.
        progress: Show a progress bar.
        sam_checkpoint: SAM state dict: outline every object with SAM.
        sam_model: SAM variant of *sam_checkpoint* (default: the one it holds).
        sam_bands: 1-based bands SAM sees (see
            :func:`~torchgeo_ext.pipelines.sam.refine_with_sam`).
        engine: How a SuperYOLO checkpoint's model runs: ``'torch'`` or
            ``'onnxruntime'`` (CPU only; see
            :meth:`~torchgeo_ext.trainers.detection.SuperYOLOTask.set_engine`).
            Other detectors run as they are and take only ``'torch'``.
        precision: ``'32'``, ``'16-mixed'`` or ``'bf16-mixed'``.
        max_invalid: Drop objects whose box has more than this share of
            invalid (nodata) pixels; None keeps them. Both as in
            :func:`~torchgeo_ext.pipelines.detection.detect_raster`.
        bands: 1-based bands of the stacked rasters the model reads (``[1]``:
            VV of a Sentinel-1 VV/VH stack); default: all.
        value_range: Raster values ``(low, high)`` mapped to the model's 0..1
            (clipped) instead of the recorded normalisation (GRD DN, dB).

    Returns:
        The objects written, in the rasters' CRS; ``attrs['dropped_invalid']``
        counts the objects dropped over invalid pixels.

    Raises:
        InvalidInputError: If the checkpoint is no detector, records a
            normalisation while *scale* is given, the rasters (or *bands*) do
            not hold exactly the bands the model reads, *value_range* is
            empty, or *engine* is not available for this checkpoint, device or
            installation.
        MissingInputError: If a file does not exist.
    """
    from .detection import detect_raster

    # SAM is loaded before any detection work, so a bad SAM file fails fast.
    sam = _load_sam(sam_checkpoint, sam_model, device)
    task = _load_detector(checkpoint, device, scale, score_threshold)
    count = _check_bands(task, inputs, checkpoint, bands)
    if sam is not None:
        from .sam import check_sam_bands

        check_sam_bands(count, sam_bands, inputs[-1])
    _set_engine(task, engine, checkpoint, device)
    names = getattr(task, 'class_names', None) or task.hparams.get('class_names')
    scaling = _input_scaling(task, 255.0 if scale is None else scale, value_range)
    gdf = detect_raster(
        _tile_model(task, scaling, bands),
        inputs,
        None if sam is not None else output,
        tile_size=tile_size,
        overlap=default_overlap(tile_size) if overlap is None else overlap,
        batch_size=batch_size,
        iou_threshold=iou_threshold,
        class_names=list(names) if names is not None else None,
        oriented=bool(getattr(task, 'oriented', False)),
        score_threshold=score_threshold,
        max_invalid=max_invalid,
        precision=precision,
        device=device,
        progress=progress,
    )
    if sam is None:
        return gdf
    return _outline(gdf, sam, inputs, output, sam_bands, device, progress)


def _outline(
    gdf: gpd.GeoDataFrame,
    sam: Any,
    inputs: Sequence[str | os.PathLike[str]],
    output: str | os.PathLike[str],
    bands: list[int] | None,
    device: str,
    progress: bool,
) -> gpd.GeoDataFrame:
    """Outline the merged objects with SAM and write them (keeps the dropped count)."""
    from .sam import refine_with_sam

    outlined = refine_with_sam(
        gdf, inputs, sam, bands=bands, device=device, output=output, progress=progress
    )
    outlined.attrs['dropped_invalid'] = gdf.attrs['dropped_invalid']
    return outlined


def _load_sam(
    checkpoint: str | os.PathLike[str] | None, variant: str | None, device: str
) -> Any:
    """The SAM model of *checkpoint* on *device*, or None without one."""
    if checkpoint is None:
        return None
    from ..models.sam import load_sam

    return load_sam(checkpoint, variant).to(device)


def _load_detector(
    checkpoint: str | os.PathLike[str],
    device: str,
    scale: float | None,
    score_threshold: float,
) -> Any:
    """Load a detection task on *device*, its score threshold at most *score_threshold*.

    Raises:
        InvalidInputError: If the checkpoint is no detector, or records a
            normalisation while *scale* is given.
    """
    from ..errors import InvalidInputError
    from .checkpoints import load_task_for

    # The kind of checkpoint is named before anything looks at bands.
    task: Any = load_task_for(checkpoint, 'detection', device)
    task.to(device)
    record = getattr(task, 'normalisation', None)
    if record is not None and scale is not None:
        raise InvalidInputError(
            checkpoint,
            f'records its normalisation ({record}); --scale is only for checkpoints '
            'without one',
        )
    hparams = task.hparams
    if 'score_threshold' in hparams:
        hparams['score_threshold'] = min(score_threshold, hparams['score_threshold'])
    return task


def _check_bands(
    task: Any,
    inputs: Sequence[str | os.PathLike[str]],
    checkpoint: str | os.PathLike[str],
    selected: Sequence[int] | None = None,
) -> int:
    """Check that the rasters (or the *selected* 1-based bands) are the bands the model reads.

    Returns:
        The number of bands of the stacked rasters.

    Raises:
        InvalidInputError: If the band count differs from the model's, or a
            selected band does not exist.
    """
    from ..errors import InvalidInputError
    from ..export.raster import open_inputs

    expected = _expected_bands(task)
    with open_inputs(inputs) as stack:
        bands = int(stack.count)
    if selected is not None:
        missing = [b for b in selected if not 1 <= b <= bands]
        if missing or not selected:
            raise InvalidInputError(
                inputs[-1],
                f'--bands {",".join(map(str, selected))}: the rasters have bands '
                f'1 to {bands}',
            )
        if expected is not None and len(selected) != expected:
            raise InvalidInputError(
                inputs[-1],
                f'--bands selects {len(selected)} bands but the model reads '
                f'{expected} ({checkpoint})',
            )
        return bands
    if expected is not None and bands != expected:
        # Too many bands is as wrong as too few: an extra raster would be read
        # as the wrong modality.
        listed = ', '.join(str(p) for p in inputs)
        raise InvalidInputError(
            inputs[-1],
            f'the rasters ({listed}) have {bands} bands in all but the model reads '
            f'{expected} ({checkpoint}); give exactly the modalities the '
            'model was trained on, in the training order',
        )
    return bands


def _input_scaling(
    task: Any, divisor: float, value_range: tuple[float, float] | None
) -> Callable[[Tensor], Tensor]:
    """How raster values become model inputs.

    With *value_range* ``(low, high)``: ``clip((x - low) / (high - low), 0, 1)``;
    else the task's recorded normalisation, else a division by *divisor*.

    Raises:
        InvalidInputError: If *value_range* is empty or not finite.
    """
    import math

    from ..errors import InvalidInputError

    if value_range is not None:
        low, high = (float(v) for v in value_range)
        if not (math.isfinite(low) and math.isfinite(high) and high > low):
            raise InvalidInputError(
                None, f'--value-range needs LOW < HIGH, got {low:g} {high:g}'
            )
        return lambda x: ((x.float() - low) / (high - low)).clamp(0.0, 1.0)
    if getattr(task, 'normalisation', None) is not None:
        return lambda x: task.normalise(x)  # type: ignore[no-any-return]
    return lambda x: x.float() / divisor


def _tile_model(
    task: Any, scaling: Callable[[Tensor], Tensor], bands: Sequence[int] | None
) -> Callable[[Tensor], list[dict[str, Tensor]]]:
    """The task as :func:`~torchgeo_ext.pipelines.detection.detect_raster`'s model.

    Tiles keep the selected 1-based *bands* (all by default) and are scaled by
    *scaling* (:func:`_input_scaling`).
    """
    index = None if bands is None else [b - 1 for b in bands]

    def model(x: Tensor) -> list[dict[str, Tensor]]:
        x = scaling(x if index is None else x[:, index])
        if hasattr(task, 'detect_images'):
            results: list[dict[str, Tensor]] = task.detect_images(x, normalised=True)
            return results
        out = task.predict_step({'image': x}, 0)
        if isinstance(out, dict):
            keys = [k for k in out if k.startswith('prediction_')]
            return [dict(zip(keys, values)) for values in zip(*(out[k] for k in keys))]
        return list(out)

    return model


def _set_engine(
    task: Any, engine: str, checkpoint: str | os.PathLike[str], device: str
) -> None:
    """Run a SuperYOLO-family task through its inference engine.

    Args:
        task: The loaded task, on *device*.
        engine: ``'torch'`` or ``'onnxruntime'``.
        checkpoint: Its checkpoint (named in errors).
        device: Torch device.

    Raises:
        InvalidInputError: If the task has no such engine, or ONNX Runtime is
            asked for on another device than the CPU or is not installed.
    """
    from ..errors import InvalidInputError

    engines = getattr(task, 'engines', ())
    if engine not in engines:
        if engine == 'torch':
            return  # other detectors run as they are
        raise InvalidInputError(
            checkpoint,
            f'a {type(task).__name__} checkpoint; --engine {engine} runs '
            'SuperYOLOTask checkpoints only (use --engine torch)',
        )
    if engine == 'onnxruntime' and str(device) != 'cpu':
        raise InvalidInputError(
            None, f'--engine onnxruntime runs on the CPU; got --device {device}'
        )
    task.set_engine(engine)


def _expected_bands(task: Any) -> int | None:
    """Number of input bands a task reads, when it can tell.

    Args:
        task: A loaded task.

    Returns:
        The band count, or None if unknown.
    """
    detector = getattr(task, 'detector', None)
    bands = getattr(detector, 'bands', None)
    if bands:
        return int(max(bands)) + 1
    in_channels = task.hparams.get('in_channels')
    return int(in_channels) if isinstance(in_channels, int) else None
