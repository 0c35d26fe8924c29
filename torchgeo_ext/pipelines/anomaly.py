"""Hyperspectral anomaly detection on scenes and rasters: one entry point for every method.

:func:`detect_anomalies` scores an in-memory cube; :func:`anomaly_raster`
scores a file (GeoTIFF, ENVI or ``.mat``) and writes a georeferenced score
GeoTIFF, optionally with the polygons of the most anomalous regions. It is
what ``torchgeo-ext anomaly`` runs.

Methods (see ``docs/models/anomaly.md``):

==========  =================================================================
``rx``      global RX (:mod:`torchgeo_ext.models.rx`); on GeoTIFF/ENVI input
            both passes are streamed in windows (rasters larger than memory,
            :func:`rx_raster`)
``lrx``     local RX in a ring of guard/outer windows
            (:mod:`torchgeo_ext.models.local_anomaly`)
``crd``     collaborative representation detector
            (:mod:`torchgeo_ext.models.local_anomaly`)
``bsdm``    background-suppression diffusion model, fitted on the scene
            itself (:mod:`torchgeo_ext.models.bsdm`)
``stad``    small-target-aware detector; needs a trained checkpoint
            (:mod:`torchgeo_ext.models.stad`)
==========  =================================================================

Every method except streamed RX holds the scene in memory. This pipeline is
method-specific: it imports the detectors of :mod:`torchgeo_ext.models`, each
only when its method runs.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from numpy.typing import NDArray
from torch import Tensor

from ..errors import InvalidInputError, MissingInputError

if TYPE_CHECKING:
    from ..models.rx import RXStatistics

__all__ = (
    'METHODS',
    'AnomalyResult',
    'anomaly_raster',
    'detect_anomalies',
    'raster_statistics',
    'rx_raster',
    'score_threshold',
)

#: Detection methods known to :func:`detect_anomalies` and ``torchgeo-ext anomaly``.
METHODS = ('rx', 'lrx', 'crd', 'bsdm', 'stad')


def detect_anomalies(
    cube: Tensor | NDArray[Any],
    method: str = 'rx',
    *,
    valid_mask: Tensor | NDArray[Any] | None = None,
    checkpoint: str | os.PathLike[str] | None = None,
    **options: Any,
) -> Tensor:
    """Anomaly scores of an in-memory hyperspectral cube.

    Args:
        cube: ``C x H x W`` scene.
        method: One of :data:`METHODS`.
        valid_mask: Optional ``H x W`` boolean mask; invalid pixels neither
            contribute to background statistics nor get a score (NaN).
        checkpoint: Trained model (needed by ``stad``; optional for ``bsdm``,
            which otherwise fits itself on the scene).
        **options: Method options (e.g. ``inner``/``outer`` windows for
            ``lrx``/``crd``, ``iterations`` for ``bsdm``).

    Returns:
        ``H x W`` float32 scores, higher is more anomalous.

    Raises:
        ValueError: For an unknown method.
    """
    x = torch.as_tensor(np.asarray(cube) if not isinstance(cube, Tensor) else cube)
    x = x.to(torch.float32)
    mask = None if valid_mask is None else torch.as_tensor(valid_mask, dtype=torch.bool)
    if method == 'rx':
        from ..models.rx import rx_scores

        return rx_scores(x, mask, **options)
    if method in ('lrx', 'crd'):
        from ..models.local_anomaly import crd_scores, lrx_scores

        fn = lrx_scores if method == 'lrx' else crd_scores
        scores = fn(x, valid_mask=mask, **options)
    elif method == 'bsdm':
        from ..models.bsdm import bsdm_scores
        from ..trainers.anomaly import load_bsdm

        model = None if checkpoint is None else load_bsdm(checkpoint)
        scores = bsdm_scores(x, valid_mask=mask, model=model, **options)
    elif method == 'stad':
        from ..models.stad import stad_scores
        from ..trainers.anomaly import load_stad

        if checkpoint is None:
            raise ValueError(
                'stad needs a trained checkpoint (train with configs/stad_had100.yaml)'
            )
        scores = stad_scores(x, model=load_stad(checkpoint), valid_mask=mask, **options)
    else:
        raise ValueError(
            f'unknown anomaly method {method!r}; choose from {", ".join(METHODS)}'
        )
    if mask is not None:
        scores = scores.masked_fill(~mask, float('nan'))
    return scores


def score_threshold(scores: Tensor | NDArray[Any], quantile: float) -> float:
    """The score at a quantile of the valid (finite) scores.

    Args:
        scores: Score map.
        quantile: In (0, 1), e.g. 0.999 flags the top 0.1 % of pixels.

    Returns:
        The threshold.

    Raises:
        ValueError: If the quantile is outside (0, 1) or no score is finite.
    """
    if not 0 < quantile < 1:
        raise ValueError(f'the threshold quantile must be in (0, 1), got {quantile}')
    values = np.asarray(scores, dtype=np.float64).reshape(-1)
    values = values[np.isfinite(values)]
    if values.size == 0:
        raise ValueError('no valid scores to threshold')
    return float(np.quantile(values, quantile))


@dataclass
class AnomalyResult:
    """What :func:`anomaly_raster` wrote.

    Attributes:
        scores: The score GeoTIFF.
        vector: The polygon file, if requested.
        threshold: The score threshold used for the polygons, if any.
        regions: Number of polygons written.
        crs: The output CRS (None for ``.mat`` input, which has none).
    """

    scores: Path
    vector: Path | None = None
    threshold: float | None = None
    regions: int = 0
    crs: str | None = None


def _is_streamable(path: str | os.PathLike[str]) -> bool:
    """Whether GDAL can read *path* window by window (GeoTIFF, ENVI, ...)."""
    return os.path.splitext(os.fspath(path))[1].lower() != '.mat'


def _write_scores(
    path: Path, scores: Tensor, crs: str | None, transform: tuple[float, ...] | None
) -> Path:
    """Write a score map, georeferenced when a CRS is known."""
    from ..export.atomic import atomic_output
    from ..export.raster import write_raster

    array = scores.detach().cpu().numpy().astype(np.float32)
    if crs is not None and transform is not None:
        return write_raster(
            path, array, crs=crs, transform=transform, nodata=float('nan')
        )
    import rasterio

    # No georeferencing (.mat input): a plain GeoTIFF in pixel coordinates.
    with atomic_output(path) as tmp, warnings.catch_warnings():
        warnings.simplefilter('ignore', rasterio.errors.NotGeoreferencedWarning)
        with rasterio.open(
            tmp,
            'w',
            driver='GTiff',
            width=array.shape[1],
            height=array.shape[0],
            count=1,
            dtype='float32',
            nodata=float('nan'),
            compress='deflate',
        ) as dst:
            dst.write(array, 1)
    return path


def _polygons(
    score_path: Path, vector: Path, quantile: float, min_area: float
) -> tuple[float, int]:
    """Threshold a score GeoTIFF at a quantile and write the regions above it as polygons."""
    import rasterio

    from ..export.geometry import mask_to_polygons
    from ..export.vector import write_vector

    with rasterio.open(score_path) as src:
        scores = src.read(1, masked=True).filled(np.nan)
        crs, transform = src.crs, src.transform
    if crs is None:
        raise InvalidInputError(
            vector,
            'cannot write polygons: the input has no CRS (.mat scenes are not georeferenced)',
        )
    try:
        threshold = score_threshold(scores, quantile)
    except ValueError as error:
        raise InvalidInputError(score_path, str(error)) from error
    above = np.isfinite(scores) & (scores > threshold)
    gdf = mask_to_polygons(
        above.astype(np.uint8),
        transform,
        crs,
        class_names=['background', 'anomaly'],
        min_area=min_area,
        ignore_index=0,
    )
    # Each region's score is its peak score (the most anomalous pixel inside).
    if len(gdf):
        from rasterio.features import rasterize

        labels = rasterize(
            ((geom, i + 1) for i, geom in enumerate(gdf.geometry)),
            out_shape=scores.shape,
            transform=transform,
            fill=0,
            dtype='int32',
        )
        peaks = np.full(len(gdf) + 1, -np.inf)
        inside = labels > 0
        np.maximum.at(peaks, labels[inside], np.nan_to_num(scores[inside], nan=-np.inf))
        gdf['score'] = peaks[1:]
    else:
        gdf['score'] = np.zeros(0)
    write_vector(vector, gdf)
    return threshold, len(gdf)


def anomaly_raster(
    input: str | os.PathLike[str],
    output: str | os.PathLike[str],
    *,
    method: str = 'rx',
    checkpoint: str | os.PathLike[str] | None = None,
    vector: str | os.PathLike[str] | None = None,
    threshold: float = 0.999,
    min_area: float = 0,
    tile_size: int = 512,
    progress: bool = False,
    **options: Any,
) -> AnomalyResult:
    """Detect anomalies in a hyperspectral scene file and write georeferenced results.

    Args:
        input: GeoTIFF (or any raster GDAL reads), ENVI cube (header or data
            file) or ``.mat`` scene.
        output: Score GeoTIFF: same CRS, transform and size as the input,
            NaN where the input is nodata. For ``.mat`` input (no
            georeferencing) it is written in pixel coordinates without a CRS.
        method: One of :data:`METHODS`.
        checkpoint: Trained model for ``stad`` (and optionally ``bsdm``).
        vector: Optional polygon output (GeoPackage, GeoJSON or GeoParquet by
            extension) of the connected regions scoring above the threshold,
            in the input's CRS, with columns ``class_id``, ``class_name``,
            ``area`` and ``score`` (peak score of the region).
        threshold: Quantile of the valid scores above which a pixel is
            anomalous (0.999 = the top 0.1 %).
        min_area: Drop regions smaller than this many pixels.
        tile_size: Window side of the streamed RX passes.
        progress: Show a progress bar (streamed RX).
        **options: Method options, see :func:`detect_anomalies`.

    Returns:
        What was written.

    Raises:
        MissingInputError: If the input or checkpoint does not exist.
        InvalidInputError: If the input is not a readable scene, has no CRS
            (GeoTIFF/ENVI), or an output cannot be written.
    """
    import rasterio

    # ENVI headers are sidecar files: GDAL must be allowed to list the folder
    # (TorchGeo's CLI sets GDAL_DISABLE_READDIR_ON_OPEN=EMPTY_DIR process-wide).
    with rasterio.Env(GDAL_DISABLE_READDIR_ON_OPEN='FALSE'):
        return _anomaly_raster(
            os.fspath(input),  # not Path: URLs and /vsi paths keep their '//'
            Path(output),
            method=method,
            checkpoint=checkpoint,
            vector=vector,
            threshold=threshold,
            min_area=min_area,
            tile_size=tile_size,
            progress=progress,
            **options,
        )


def _anomaly_raster(
    source: str,
    out: Path,
    *,
    method: str,
    checkpoint: str | os.PathLike[str] | None,
    vector: str | os.PathLike[str] | None,
    threshold: float,
    min_area: float,
    tile_size: int,
    progress: bool,
    **options: Any,
) -> AnomalyResult:
    """:func:`anomaly_raster` inside its GDAL environment."""
    from ..export.outputs import check_outputs, raster_output, vector_output

    if method not in METHODS:
        raise InvalidInputError(
            None, f'unknown method {method!r}; choose from {", ".join(METHODS)}'
        )
    from ..export.sources import check_source

    # A GDAL open for URLs and /vsi paths; .mat and ENVI headers are not GDAL's.
    check_source(source, open_local=False)
    if checkpoint is not None and not Path(checkpoint).exists():
        raise MissingInputError(checkpoint, 'checkpoint not found')
    if method == 'stad' and checkpoint is None:
        raise InvalidInputError(
            None,
            'method stad needs --checkpoint (train one with configs/stad_had100.yaml)',
        )
    if vector is not None and not 0 < threshold < 1:
        raise InvalidInputError(
            None, f'--threshold must be a quantile in (0, 1), got {threshold}'
        )
    if vector is not None and not _is_streamable(source):
        raise InvalidInputError(
            source, 'cannot write polygons: .mat scenes have no CRS (drop --vector)'
        )
    windows = ''
    if method in ('lrx', 'crd'):
        import inspect

        from ..models import local_anomaly

        scorer = (
            local_anomaly.lrx_scores if method == 'lrx' else local_anomaly.crd_scores
        )
        params = inspect.signature(scorer).parameters
        inner = options.get('inner', params['inner'].default)
        outer = options.get('outer', params['outer'].default)
        try:
            local_anomaly.ring_offsets(inner, outer)
        except ValueError as error:
            raise InvalidInputError(None, f'--inner/--outer: {error}') from error
        windows = f' (inner {inner}, outer {outer})'
    # Every output checked before the first byte: same file as an input, the
    # two outputs on one path, extensions, writability.
    check_outputs(
        [
            raster_output(out, 'the score output'),
            None if vector is None else vector_output(vector),
        ],
        [source, checkpoint],
    )

    crs: str | None
    if method == 'rx' and _is_streamable(source):
        from ..export.raster import crs_to_string, open_inputs

        with open_inputs(source) as stack:  # checks readability and CRS up front
            crs = crs_to_string(stack.crs)
        rx_raster(source, out, tile_size=tile_size, progress=progress, **options)
    else:
        from tqdm import tqdm

        from ..datasets.hyperspectral import HyperspectralScene

        # In-memory methods: one step each for reading, scoring and writing.
        with tqdm(total=3, desc=method, unit='step', disable=not progress) as bar:
            bar.set_postfix_str('reading')
            scene = HyperspectralScene(source)
            crs = scene.crs
            if crs is None and _is_streamable(source):
                raise InvalidInputError(
                    source,
                    'the raster has no CRS; assign one (e.g. gdal_edit.py -a_srs EPSG:XXXX FILE)',
                )
            bar.update()
            bar.set_postfix_str('scoring')
            scores = detect_anomalies(
                scene.image,
                method,
                valid_mask=scene.valid_mask,
                checkpoint=checkpoint,
                **options,
            )
            if not bool(torch.isfinite(scores).any()):
                height, width = scores.shape[-2:]
                raise InvalidInputError(
                    source,
                    f'{method} gave no finite score on this {height} x {width} scene'
                    f'{windows}: the raster is too small for the method or has no '
                    'valid pixels'
                    + ('; use smaller --inner/--outer' if windows else ''),
                )
            bar.update()
            bar.set_postfix_str('writing')
            _write_scores(out, scores, crs, scene.transform)
            bar.update()
    result = AnomalyResult(scores=out, crs=crs)
    if vector is not None:
        result.vector = Path(vector)
        result.threshold, result.regions = _polygons(
            out, Path(vector), threshold, min_area
        )
    return result


def raster_statistics(
    path: str | os.PathLike[str], window_size: int = 512
) -> RXStatistics:
    """Mean and covariance of a raster's valid pixels in one streamed pass.

    A pixel is valid when every band is finite and differs from the band's
    nodata value. Memory is one window of
    ``window_size x window_size`` pixels.

    Args:
        path: Raster file.
        window_size: Side of the square read windows.

    Returns:
        The accumulated statistics.

    Raises:
        MissingInputError: If the file does not exist.
        InvalidInputError: If it is not a raster, has no CRS or no valid pixels.
    """
    from rasterio.windows import Window, subdivide

    from ..export.raster import open_inputs
    from ..models.rx import RXStatistics, _valid_pixels

    with open_inputs(path) as stack:
        stats = RXStatistics(stack.count)
        whole = Window(0, 0, stack.width, stack.height)  # type: ignore[call-arg]
        for window in subdivide(whole, window_size, window_size):
            data, valid = stack.read(window)
            stats.update(_valid_pixels(torch.from_numpy(data), torch.from_numpy(valid)))
    if stats.count < 2:
        raise InvalidInputError(path, 'fewer than two valid (non-nodata) pixels')
    return stats


def rx_raster(
    input: str | os.PathLike[str],
    output: str | os.PathLike[str],
    *,
    tile_size: int = 512,
    regularization: float = 1e-6,
    rcond: float = 1e-10,
    progress: bool = False,
) -> Path:
    """Global RX over a raster of any size, written as a score GeoTIFF.

    First pass: :func:`raster_statistics`. Second pass:
    :func:`~torchgeo_ext.pipelines.tiling.predict_raster` with the
    :class:`~torchgeo_ext.models.rx.RX`
    module (RX is per pixel, so tiles need no overlap). The output has the
    input's CRS, transform and size; input nodata pixels are nodata in the
    output.

    Args:
        input: Hyperspectral or multispectral raster.
        output: Score GeoTIFF to write (atomically).
        tile_size: Window side for both passes.
        regularization: Relative ridge (see :func:`~torchgeo_ext.models.rx.whitening_matrix`).
        rcond: Pseudo-inverse cut-off (see :func:`~torchgeo_ext.models.rx.whitening_matrix`).
        progress: Show a progress bar while scoring.

    Returns:
        The output path.
    """
    from ..models.rx import RX
    from .tiling import predict_raster

    stats = raster_statistics(input, tile_size)
    detector = RX.from_statistics(stats.mean, stats.covariance, regularization, rcond)
    detector.eval()
    with torch.inference_mode():
        result = predict_raster(
            detector,
            input,
            output,
            tile_size=tile_size,
            overlap=0,
            blend='crop',
            output_kind='scores',
            band_names=['rx_score'],
            progress=progress,
        )
    return Path(result) if result is not None else Path(output)
