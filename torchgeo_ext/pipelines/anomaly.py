"""Hyperspectral anomaly detection on scenes and rasters: one entry point for every method."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch
from numpy.typing import NDArray
from torch import Tensor

from ..errors import InvalidInputError, MissingInputError, raise_if_interrupted

if TYPE_CHECKING:
    from ..models.rx import RXStatistics

__all__ = (
    'DETECTORS',
    'METHODS',
    'AnomalyResult',
    'Detector',
    'anomaly_raster',
    'detect_anomalies',
    'order_statistics',
    'raster_statistics',
    'rx_raster',
    'score_threshold',
    'streamed_quantile',
    'value_range',
)

#: Most score values :func:`streamed_quantile` holds at once.
QUANTILE_VALUES = 1 << 20

#: Bytes of float32 input per strip of rows (a strip is read, scored and
#: written before the next; the working copies of LRX/CRD are a few times this).
STRIP_BYTES = 8 * 2**20


# --- Scenes read strip by strip ---------------------------------------------------------


class Scene:
    """A hyperspectral scene read in strips of full-width rows.

    GDAL rasters (GeoTIFF, ENVI by header or data file, VRT, ...) are read
    from disk strip by strip; ``.mat`` scenes (no georeferencing) are read
    whole. A pixel is invalid when any band is nodata (that band's own nodata
    value, a GDAL mask or NaN); invalid pixels are zero in the strips.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        """Open a scene (checks readability and, for GDAL rasters, the CRS).

        Args:
            path: A local file, URL, GDAL virtual path or STAC asset.

        Raises:
            MissingInputError: If it does not exist.
            InvalidInputError: If it is not a readable scene or has no CRS.
        """
        from ..datasets.hyperspectral import HyperspectralScene, envi_data_file
        from ..export.sources import check_source

        self.path = path
        self._stack: Any = None
        self._cube: Tensor | None = None
        self._valid: Tensor | None = None
        self.crs: str | None = None
        self.transform: tuple[float, ...] | None = None
        # Local files only checked to exist: .mat and ENVI headers are not GDAL's.
        check_source(path, open_local=False)
        suffix = os.path.splitext(os.fspath(path))[1].lower()
        if suffix == '.mat':
            scene = HyperspectralScene(path)
            self._cube = torch.from_numpy(scene.image)
            self._valid = torch.from_numpy(scene.valid_mask)
            self.count, self.height, self.width = scene.image.shape
            return
        from ..export.raster import crs_to_string, open_inputs

        # An ENVI header names the cube; GDAL opens its data file.
        data = envi_data_file(path) if suffix == '.hdr' else path
        self._stack = open_inputs(data)
        self.crs = crs_to_string(self._stack.crs)
        self.transform = tuple(self._stack.transform)[:6]
        self.count, self.height, self.width = self._stack.shape

    def strip_rows(self, limit: int, bands: int | None = None) -> int:
        """Rows per strip: at most *limit*, and about :data:`STRIP_BYTES` of input."""
        per_row = self.width * (bands or self.count) * 4
        return max(1, min(limit, STRIP_BYTES // max(per_row, 1)))

    def _rows(self, row0: int, row1: int) -> tuple[Tensor, Tensor]:
        """Rows ``[row0, row1)`` of an in-memory scene; rows outside it are invalid."""
        assert self._cube is not None
        assert self._valid is not None
        top, bottom = max(row0, 0), min(row1, self.height)
        pad = (0, 0, top - row0, row1 - bottom)
        valid = torch.nn.functional.pad(self._valid[top:bottom], pad)
        cube = torch.nn.functional.pad(self._cube[:, top:bottom], pad)
        return cube.masked_fill(~valid[None], 0.0), valid

    def strips(
        self,
        rows: int,
        halo: int = 0,
        desc: str = '',
        progress: bool = False,
        device: str = 'cpu',
    ) -> Iterator[tuple[int, int, Tensor, Tensor]]:
        """Strips ``(row0, row1, pixels, valid)`` of rows ``[row0 - halo, row1 + halo)``.

        Rows outside the scene are zero and invalid. GDAL rasters are read by
        :func:`~torchgeo_ext.pipelines.tiling.tile_batches`, a strip ahead of
        the scoring.

        Args:
            rows: Rows per strip.
            halo: Extra rows above and below.
            desc: Progress bar label.
            progress: Show a progress bar.
            device: Where the strips' tensors go.
        """
        from rasterio.windows import Window
        from tqdm import tqdm

        from .tiling import tile_batches

        starts = list(range(0, self.height, rows))
        stops = [min(r + rows, self.height) for r in starts]
        with tqdm(
            total=self.height, desc=desc, unit='row', disable=not progress
        ) as bar:
            if self._stack is None:
                for row0, row1 in zip(starts, stops):
                    raise_if_interrupted()
                    pixels, valid = self._rows(row0 - halo, row1 + halo)
                    yield row0, row1, pixels.to(device), valid.to(device)
                    bar.update(row1 - row0)
                return
            windows = [
                Window(0, r0 - halo, self.width, r1 - r0 + 2 * halo)  # type: ignore[call-arg]
                for r0, r1 in zip(starts, stops)
            ]
            batches = tile_batches(self._stack, windows, 1, device=device)
            with contextlib.closing(batches):
                for batch in batches:
                    row0, row1 = starts[batch.indices[0]], stops[batch.indices[0]]
                    yield row0, row1, batch.image[0], batch.valid[0]
                    bar.update(row1 - row0)

    def close(self) -> None:
        """Close the files."""
        if self._stack is not None:
            self._stack.close()


# --- Scores written strip by strip ------------------------------------------------------


class ScoreSink:
    """Score strips written to a run-private GeoTIFF, with their value range.

    The polygons and the final output are both made from this file, so two
    runs writing the same output path never read each other's scores.
    """

    def __init__(self, path: Path, scene: Scene, method: str) -> None:
        """Open the private file.

        Args:
            path: Where to write it (inside a temporary folder).
            scene: The scene scored (size and georeferencing).
            method: The method's name (band description).
        """
        import rasterio

        self.path = path
        self.finite = 0
        self.low, self.high = np.inf, -np.inf
        self.crs, self.transform = scene.crs, scene.transform
        self.method = method
        profile: dict[str, Any] = {
            'driver': 'GTiff',
            'width': scene.width,
            'height': scene.height,
            'count': 1,
            'dtype': 'float32',
            'nodata': float('nan'),
            'tiled': True,
            'blockxsize': 256,
            'blockysize': 256,
        }
        if scene.crs is not None and scene.transform is not None:
            from ..export.raster import to_affine

            profile.update(crs=scene.crs, transform=to_affine(scene.transform))
        with _quiet_georeferencing():
            self._dst = rasterio.open(path, 'w', **profile)

    def write(self, row0: int, scores: Tensor) -> None:
        """Write the scores of rows ``row0 ...``.

        Args:
            row0: First row.
            scores: ``h x W`` scores (NaN where invalid).
        """
        from rasterio.windows import Window

        values = scores.detach().to('cpu', torch.float32).numpy()
        finite = values[np.isfinite(values)]
        if finite.size:
            self.finite += finite.size
            self.low = min(self.low, float(finite.min()))
            self.high = max(self.high, float(finite.max()))
        h, w = values.shape
        self._dst.write(values[None], window=Window(0, row0, w, h))  # type: ignore[call-arg]

    def close(self) -> None:
        """Flush and close the file."""
        self._dst.close()


@contextlib.contextmanager
def _quiet_georeferencing() -> Iterator[None]:
    """Silence rasterio's warning for the (documented) ungeoreferenced ``.mat`` scores."""
    import warnings

    import rasterio

    with warnings.catch_warnings():
        warnings.simplefilter('ignore', rasterio.errors.NotGeoreferencedWarning)
        yield


# --- The methods ------------------------------------------------------------------------


@dataclass(frozen=True)
class Run:
    """What one streamed run needs besides the scene and the sink.

    Attributes:
        rows: Rows per strip (before the byte budget).
        device: Where the detector computes.
        progress: Show progress bars.
        checkpoint: The trained model, if any.
        align_bands: Align a scene's band count to the checkpoint's.
        options: Method options.
        notes: Messages for the user (filled while running).
    """

    rows: int = 512
    device: str = 'cpu'
    progress: bool = False
    checkpoint: Path | None = None
    align_bands: bool = False
    options: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


#: Scores a cube in memory: ``(cube, valid, checkpoint, device, **options)``.
type CubeScorer = Callable[..., Tensor]

#: Scores a scene into a sink strip by strip.
type StreamScorer = Callable[[Scene, ScoreSink, Run], None]


@dataclass(frozen=True)
class Detector:
    """One anomaly detection method as the pipeline runs it.

    Attributes:
        name: Method name (``--method``).
        score_cube: In-memory scoring (:func:`detect_anomalies`).
        stream: Scoring of a scene into a sink (:func:`anomaly_raster`).
        options: Method options it accepts.
        checkpoint: ``'required'``, ``'optional'`` or ``'refused'``.
    """

    name: str
    score_cube: CubeScorer
    stream: StreamScorer
    options: frozenset[str] = frozenset()
    checkpoint: Literal['required', 'optional', 'refused'] = 'refused'


def _rx_cube(cube: Tensor, valid: Tensor | None, **options: Any) -> Tensor:
    from ..models.rx import rx_scores

    device = options.pop('device', None)
    return rx_scores(cube.to(device or 'cpu'), valid, **options).cpu()


def _ring_cube(method: str) -> CubeScorer:
    def score(cube: Tensor, valid: Tensor | None, **options: Any) -> Tensor:
        from ..models.local_anomaly import crd_scores, lrx_scores

        fn = lrx_scores if method == 'lrx' else crd_scores
        return fn(cube, valid_mask=valid, **options)

    return score


def _bsdm_cube(
    cube: Tensor,
    valid: Tensor | None,
    checkpoint: str | os.PathLike[str] | None = None,
    **options: Any,
) -> Tensor:
    from ..models.bsdm import bsdm_scores
    from ..trainers.anomaly import load_bsdm

    _refuse_fit_pixels('bsdm', options)
    model = None if checkpoint is None else load_bsdm(checkpoint)
    return bsdm_scores(cube, valid_mask=valid, model=model, **options)


def _refuse_fit_pixels(method: str, options: dict[str, Any]) -> None:
    """``fit_pixels`` bounds a streamed fit; in memory the fit sees every valid pixel."""
    if 'fit_pixels' in options:
        raise ValueError(
            f'fit_pixels applies to streamed scoring (anomaly_raster); in memory '
            f'{method} fits on every valid pixel of the cube'
        )


def _stad_cube(
    cube: Tensor,
    valid: Tensor | None,
    checkpoint: str | os.PathLike[str] | None = None,
    **options: Any,
) -> Tensor:
    from ..models.stad import stad_scores
    from ..trainers.anomaly import load_stad

    if checkpoint is None:
        raise ValueError(
            'stad needs a trained checkpoint (train with configs/stad_had100.yaml)'
        )
    device = options.pop('device', None)
    model = load_stad(checkpoint).to(device or 'cpu')  # STAD runs where its model is
    return stad_scores(cube, model=model, valid_mask=valid, **options).cpu()


def _sap_cube(
    cube: Tensor,
    valid: Tensor | None,
    checkpoint: str | os.PathLike[str] | None = None,
    **options: Any,
) -> Tensor:
    from ..models.sap import sap_scores
    from ..trainers.sap import load_sap_prior

    _refuse_fit_pixels('sap', options)
    device = options.pop('device', None) or 'cpu'
    prior = None if checkpoint is None else load_sap_prior(checkpoint).to(device)
    return sap_scores(cube.to(device), valid_mask=valid, prior=prior, **options).cpu()


def _statistics(scene: Scene, run: Run, desc: str) -> RXStatistics:
    """Mean and covariance of the scene's valid pixels, one streamed pass (float64)."""
    from ..models.rx import RXStatistics, _valid_pixels

    stats = RXStatistics(scene.count)
    for _, _, pixels, valid in scene.strips(
        scene.strip_rows(run.rows), desc=desc, progress=run.progress
    ):
        stats.update(_valid_pixels(pixels, valid))
    if stats.count < 2:
        raise InvalidInputError(scene.path, 'fewer than two valid (non-nodata) pixels')
    return stats


def _stream_rx(scene: Scene, sink: ScoreSink, run: Run) -> None:
    """RX in two passes: statistics, then scores strip by strip."""
    from ..models.rx import RX

    stats = _statistics(scene, run, 'rx statistics')
    detector = RX.from_statistics(stats.mean, stats.covariance, **run.options)
    detector = detector.to(run.device).eval()
    rows = scene.strip_rows(run.rows)
    with torch.inference_mode():
        for row0, _, pixels, valid in scene.strips(
            rows, 0, 'rx', run.progress, run.device
        ):
            scores = detector(pixels[None])[0, 0].masked_fill(~valid, float('nan'))
            sink.write(row0, scores)


def _stream_ring(scene: Scene, sink: ScoreSink, run: Run, method: str) -> None:
    """LRX (after a statistics pass) or CRD: strips with a halo of the outer window."""
    from ..models.local_anomaly import RingDetector

    background: dict[str, Any] = {}
    if method == 'lrx':
        stats = _statistics(scene, run, 'lrx statistics')
        variance = float(torch.diagonal(stats.covariance).mean())
        background = {'mean': stats.mean, 'band_variance': variance or 1.0}
    detector = RingDetector(
        method,  # type: ignore[arg-type]
        device=torch.device(run.device),
        **run.options,
        **background,
    )
    halo, rows = detector.halo, scene.strip_rows(run.rows)
    for row0, row1, pixels, valid in scene.strips(rows, halo, method, run.progress):
        rows_scored = (halo, halo + row1 - row0)
        sink.write(row0, detector.score_rows(pixels, valid, rows_scored))


def _fitted(method: str) -> StreamScorer:
    """The streamed scoring of a method that fits on the scene (imported when it runs)."""
    from . import anomaly_fitted

    scorer: StreamScorer = getattr(anomaly_fitted, f'stream_{method}')
    return scorer


def _check_bands(scene: Scene, run: Run, method: str) -> None:
    """Refuse a scene whose band count differs from the checkpoint's, unless aligned."""
    from ..trainers.anomaly import load_bsdm, load_stad

    assert run.checkpoint is not None
    model = (load_bsdm if method == 'bsdm' else load_stad)(run.checkpoint)
    declared = getattr(model, 'in_channels', None)
    bands = scene.count if declared is None else int(declared)
    if bands == scene.count:
        return
    how = (
        f'the first {bands} bands are used'
        if method == 'stad' and scene.count > bands
        else 'bands are reflect-padded'
        if scene.count < bands
        else 'random band subsets or groups are drawn (channel_groups)'
    )
    if not run.align_bands:
        raise InvalidInputError(
            scene.path,
            f'has {scene.count} bands but the checkpoint {run.checkpoint} was trained '
            f'on {bands}; pass --align-bands to align them ({how})',
        )
    run.notes.append(
        f'aligned the {scene.count} bands of {scene.path} to the {bands} of the '
        f'checkpoint: {how}'
    )


#: Every method: how it runs in memory and streamed. A new method is one entry.
DETECTORS: dict[str, Detector] = {
    'rx': Detector(
        'rx', _rx_cube, _stream_rx, frozenset({'regularization', 'rcond', 'device'})
    ),
    'lrx': Detector(
        'lrx',
        _ring_cube('lrx'),
        lambda scene, sink, run: _stream_ring(scene, sink, run, 'lrx'),
        frozenset({'inner', 'outer', 'regularization', 'device'}),
    ),
    'crd': Detector(
        'crd',
        _ring_cube('crd'),
        lambda scene, sink, run: _stream_ring(scene, sink, run, 'crd'),
        frozenset({'inner', 'outer', 'regularization', 'device'}),
    ),
    'bsdm': Detector(
        'bsdm',
        _bsdm_cube,
        lambda scene, sink, run: _fitted('bsdm')(scene, sink, run),
        frozenset(
            {'iterations', 'seed', 'batch_size', 't', 'repeats', 'device', 'progress'}
            | {'fit_pixels'}
        ),
        checkpoint='optional',
    ),
    'stad': Detector(
        'stad',
        _stad_cube,
        lambda scene, sink, run: _fitted('stad')(scene, sink, run),
        frozenset({'window', 'device'}),
        checkpoint='required',
    ),
    'sap': Detector(
        'sap',
        _sap_cube,
        lambda scene, sink, run: _fitted('sap')(scene, sink, run),
        frozenset(
            {'fit_steps', 'clusters', 'atoms', 'purge', 'iterations', 'seed', 'device'}
            | {'fit_pixels'}
        ),
        checkpoint='optional',
    ),
}

#: Detection methods known to :func:`detect_anomalies` and ``torchgeo-ext anomaly``.
METHODS = tuple(DETECTORS)


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
            ``lrx``/``crd``, ``iterations`` for ``bsdm``, ``device``).

    Returns:
        ``H x W`` float32 scores, higher is more anomalous.

    Raises:
        ValueError: For an unknown method.
    """
    if method not in DETECTORS:
        raise ValueError(
            f'unknown anomaly method {method!r}; choose from {", ".join(METHODS)}'
        )
    x = torch.as_tensor(np.asarray(cube) if not isinstance(cube, Tensor) else cube)
    x = x.to(torch.float32)
    mask = None if valid_mask is None else torch.as_tensor(valid_mask, dtype=torch.bool)
    if checkpoint is not None:
        options['checkpoint'] = checkpoint
    scores = DETECTORS[method].score_cube(x, mask, **options)
    if mask is not None:
        scores = scores.masked_fill(~mask, float('nan'))
    return scores


# --- Thresholds and polygons ------------------------------------------------------------


def score_threshold(scores: Tensor | NDArray[Any], quantile: float) -> float:
    """The score at a quantile of the valid (finite) scores of an in-memory map.

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


def _georeferencing(path: Path) -> tuple[Any, Any, tuple[int, int]]:
    """CRS (None when absent), transform and ``(height, width)`` of a raster."""
    import rasterio

    with _quiet_georeferencing(), rasterio.open(path) as src:
        return src.crs, src.transform, (src.height, src.width)


def _score_strips(path: Path, rows: int = 1024) -> Iterator[tuple[int, NDArray[Any]]]:
    """``(row0, scores)`` strips of a one-band score GeoTIFF."""
    import rasterio
    from rasterio.windows import Window

    with _quiet_georeferencing(), rasterio.open(path) as src:
        for row0 in range(0, src.height, rows):
            h = min(rows, src.height - row0)
            window = Window(0, row0, src.width, h)  # type: ignore[call-arg]
            yield row0, src.read(1, window=window).astype(np.float64)


def streamed_quantile(
    path: str | os.PathLike[str], quantile: float, bins: int = 1 << 16
) -> float:
    """A quantile of a score raster's finite values without holding or sorting them.

    Equal to ``np.quantile`` of all finite values (linear interpolation).
    A first pass finds the range and count; each further pass counts the
    values of the current range in ``bins`` bins and narrows the range to
    the bins holding the two order statistics the quantile interpolates,
    until at most :data:`QUANTILE_VALUES` values remain (one pass for
    ordinary score maps, a few for maps with extreme outliers); the last
    pass keeps and sorts only those.

    Args:
        path: One-band score GeoTIFF.
        quantile: In (0, 1).
        bins: Histogram bins per pass.

    Returns:
        The quantile.

    Raises:
        ValueError: If the quantile is outside (0, 1) or no value is finite.
    """
    if not 0 < quantile < 1:
        raise ValueError(f'the threshold quantile must be in (0, 1), got {quantile}')

    def values(bottom: float, top: float) -> Iterator[NDArray[Any]]:
        return _finite_scores(path, bottom, top)

    bottom, top, count = value_range(values(-np.inf, np.inf))
    if count == 0:
        raise ValueError('no valid scores to threshold')
    position = quantile * (count - 1)
    lo, hi = int(np.floor(position)), int(np.ceil(position))
    a, b = order_statistics(values, (lo, hi), (bottom, top, count), bins)
    return a if a == b else float(a + (b - a) * (position - lo))


def value_range(chunks: Iterator[NDArray[Any]]) -> tuple[float, float, int]:
    """Smallest and largest value and the count of values of chunks of values."""
    bottom, top, count = np.inf, -np.inf, 0
    for values in chunks:
        if values.size:
            bottom, top = min(bottom, values.min()), max(top, values.max())
            count += values.size
    return float(bottom), float(top), count


def order_statistics(
    values: Callable[[float, float], Iterator[NDArray[Any]]],
    ranks: tuple[int, int],
    whole: tuple[float, float, int],
    bins: int = 1 << 16,
) -> tuple[float, float]:
    """Two order statistics of values read in chunks, without holding or sorting them.

    Each pass counts the values of the current range in ``bins`` bins and
    narrows the range to the bins holding the two ranks, until at most
    :data:`QUANTILE_VALUES` values remain; the last pass sorts only those.

    Args:
        values: ``values(bottom, top)`` yields the values within ``[bottom, top]``
            in chunks (each call reads them again).
        ranks: The two 0-based ranks (``lo <= hi``).
        whole: Smallest value, largest value and count of all values.
        bins: Histogram bins per pass.

    Returns:
        The values of rank ``lo`` and ``hi``.
    """
    (lo, hi), (bottom, top, count) = ranks, whole
    below, inside = 0, count  # values under the range; values in [bottom, top]
    for _ in range(8):
        if inside <= QUANTILE_VALUES or bottom == top:
            break
        edges = np.linspace(bottom, top, bins + 1)
        hist = np.zeros(bins, dtype=np.int64)
        for chunk in values(bottom, top):
            hist += np.histogram(chunk, bins=edges)[0]  # last bin closed: [.., top]
        cumulative = np.cumsum(hist)
        first, last = np.searchsorted(cumulative, [lo - below + 1, hi - below + 1])
        below += int(cumulative[first - 1]) if first > 0 else 0
        # The range stays closed: values equal to the new top sort after the
        # two order statistics, so keeping them changes nothing.
        bottom, top = edges[first], edges[last + 1]
        inside = int(cumulative[last]) - (int(cumulative[first - 1]) if first else 0)
    if bottom == top:
        return float(bottom), float(bottom)
    kept = np.sort(np.concatenate(list(values(bottom, top))))
    return float(kept[lo - below]), float(kept[hi - below])


def _finite_scores(
    path: str | os.PathLike[str], bottom: float = -np.inf, top: float = np.inf
) -> Iterator[NDArray[Any]]:
    """The finite scores of a score raster within ``[bottom, top]``, strip by strip."""
    for _, values in _score_strips(Path(path)):
        values = values[np.isfinite(values)]
        yield values[(values >= bottom) & (values <= top)]


def _polygons(
    scores: Path, vector: Path, quantile: float, min_area: float
) -> tuple[float, int]:
    """Regions scoring above a quantile, written as polygons with their peak score.

    The score raster is read in strips; only a label image of the regions
    (int32, a 50th of a 50-band float32 scene) is held whole.
    """
    from scipy import ndimage

    from ..export.geometry import mask_to_polygons
    from ..export.vector import write_vector

    crs, transform, shape = _georeferencing(scores)
    if crs is None:
        raise InvalidInputError(
            vector,
            'cannot write polygons: the input has no CRS (.mat scenes are not georeferenced)',
        )
    try:
        threshold = streamed_quantile(scores, quantile)
    except ValueError as error:
        raise InvalidInputError(scores, str(error)) from error
    above = np.zeros(shape, dtype=np.bool_)
    for row0, values in _score_strips(scores):
        above[row0 : row0 + len(values)] = np.isfinite(values) & (values > threshold)
    # 4-connected regions, as rasterio's polygonisation (connectivity 4).
    labels, count = ndimage.label(above)
    del above
    peaks = np.full(count + 1, -np.inf)
    for row0, values in _score_strips(scores):
        part = labels[row0 : row0 + len(values)]
        inside = part > 0
        np.maximum.at(peaks, part[inside], values[inside])
    gdf = mask_to_polygons(labels, transform, crs, min_area=min_area, ignore_index=0)
    gdf['score'] = peaks[gdf['class_id'].to_numpy()].astype(np.float64)
    gdf['class_id'] = np.ones(len(gdf), dtype=np.int64)
    gdf['class_name'] = ['anomaly'] * len(gdf)
    write_vector(vector, gdf)
    return threshold, len(gdf)


# --- The pipeline -----------------------------------------------------------------------


@dataclass
class AnomalyResult:
    """What :func:`anomaly_raster` wrote.

    Attributes:
        scores: The score GeoTIFF.
        vector: The polygon file, if requested.
        threshold: The score threshold used for the polygons, if any.
        regions: Number of polygons written.
        crs: The output CRS (None for ``.mat`` input, which has none).
        notes: What the run did that the user should know (e.g. band alignment).
    """

    scores: Path
    vector: Path | None = None
    threshold: float | None = None
    regions: int = 0
    crs: str | None = None
    notes: list[str] = field(default_factory=list)


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
    device: str = 'cpu',
    align_bands: bool = False,
    **options: Any,
) -> AnomalyResult:
    """Detect anomalies in a hyperspectral scene file and write georeferenced results.

    Args:
        input: GeoTIFF (or any raster GDAL reads), ENVI cube (header or data
            file) or ``.mat`` scene.
        output: Score GeoTIFF: same CRS, transform and size as the input,
            NaN where any band of the input is nodata or masked. For ``.mat``
            input (no georeferencing) it is written in pixel coordinates
            without a CRS.
        method: One of :data:`METHODS`.
        checkpoint: Trained model for ``stad`` (and optionally ``bsdm``).
        vector: Optional polygon output (GeoPackage, GeoJSON or GeoParquet by
            extension) of the connected regions scoring above the threshold,
            in the input's CRS, with columns ``class_id``, ``class_name``,
            ``area`` and ``score`` (peak score of the region).
        threshold: Quantile of the valid scores above which a pixel is
            anomalous (0.999 = the top 0.1 %).
        min_area: Drop regions smaller than this many pixels.
        tile_size: Most rows per strip (fewer when a strip would exceed
            :data:`STRIP_BYTES` of input).
        progress: Show progress bars (one per pass; BSDM: one per training step).
        device: Where the detector computes (``cpu``, ``cuda``, ...).
        align_bands: Let a checkpoint trained on another band count align
            the scene's bands (otherwise such a scene is refused).
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
    with rasterio.Env(GDAL_DISABLE_READDIR_ON_OPEN='FALSE', GDAL_CACHEMAX=64):
        return _anomaly_raster(
            input if isinstance(input, str) else os.fspath(input),
            Path(output),
            None if vector is None else Path(vector),
            (threshold, min_area),
            method=method,
            run=Run(
                rows=tile_size,
                device=device,
                progress=progress,
                checkpoint=None if checkpoint is None else Path(checkpoint),
                align_bands=align_bands,
                options=options,
            ),
        )


def _anomaly_raster(
    source: str,
    out: Path,
    vector: Path | None,
    polygons: tuple[float, float],
    *,
    method: str,
    run: Run,
) -> AnomalyResult:
    """:func:`anomaly_raster` inside its GDAL environment: check, score, polygons, commit."""
    from ..export.atomic import temporary_directory
    from ..export.outputs import check_outputs, raster_output, vector_output

    detector = _check_request(source, method, run, vector, polygons[0])
    check_outputs(
        [
            raster_output(out, 'the score output'),
            None if vector is None else vector_output(vector),
        ],
        [source, run.checkpoint],
    )
    scene = Scene(source)
    try:
        with temporary_directory(out.parent) as work:
            scores = _score(detector, scene, work / 'scores.tif', run)
            result = AnomalyResult(scores=out, crs=scene.crs, notes=run.notes)
            if vector is not None:
                result.vector = vector
                result.threshold, result.regions = _polygons(scores, vector, *polygons)
            _commit(scores, out, method)
    finally:
        scene.close()
    return result


def _check_request(
    source: str, method: str, run: Run, vector: Path | None, quantile: float
) -> Detector:
    """Check the method, its options and checkpoint before anything is read."""
    detector = DETECTORS.get(method)
    if detector is None:
        raise InvalidInputError(
            None, f'unknown method {method!r}; choose from {", ".join(METHODS)}'
        )
    unknown = sorted(set(run.options) - detector.options)
    if unknown:
        raise InvalidInputError(None, f'{method} takes no option {", ".join(unknown)}')
    if run.checkpoint is not None and detector.checkpoint == 'refused':
        raise InvalidInputError(
            None, f'--checkpoint does not apply to {method} (it uses no trained model)'
        )
    if run.checkpoint is not None and not run.checkpoint.exists():
        raise MissingInputError(run.checkpoint, 'checkpoint not found')
    if run.checkpoint is None and detector.checkpoint == 'required':
        raise InvalidInputError(
            None,
            f'method {method} needs --checkpoint (train one with configs/stad_had100.yaml)',
        )
    if vector is not None and not 0 < quantile < 1:
        raise InvalidInputError(
            None, f'--threshold must be a quantile in (0, 1), got {quantile}'
        )
    if vector is not None and os.path.splitext(source)[1].lower() == '.mat':
        raise InvalidInputError(
            source, 'cannot write polygons: .mat scenes have no CRS (drop --vector)'
        )
    if method in ('lrx', 'crd'):
        _check_windows(run.options)
    return detector


def _check_windows(options: dict[str, Any]) -> None:
    """LRX/CRD windows: odd, outer > inner."""
    from ..models.local_anomaly import ring_offsets

    inner, outer = options.get('inner', 5), options.get('outer', 9)
    try:
        ring_offsets(inner, outer)
    except ValueError as error:
        raise InvalidInputError(None, f'--inner/--outer: {error}') from error


def _score(detector: Detector, scene: Scene, path: Path, run: Run) -> Path:
    """Score the scene into a run-private GeoTIFF; refuse a map without a finite score."""
    sink = ScoreSink(path, scene, detector.name)
    try:
        detector.stream(scene, sink, run)
    finally:
        sink.close()
    if sink.finite == 0:
        windows = ''
        if detector.name in ('lrx', 'crd'):
            windows = (
                f' (inner {run.options.get("inner", 5)}, '
                f'outer {run.options.get("outer", 9)}); use smaller --inner/--outer'
            )
        raise InvalidInputError(
            scene.path,
            f'{detector.name} gave no finite score on this {scene.height} x '
            f'{scene.width} scene: the raster is too small for the method or has '
            f'no valid pixels{windows}',
        )
    return path


def _commit(scores: Path, out: Path, method: str) -> None:
    """Write the final score GeoTIFF (COG, atomic) from the run's private file."""
    from ..export.raster import RasterWriter

    crs, transform, (height, width) = _georeferencing(scores)
    tags = {'output_kind': 'scores', 'method': method}
    if crs is None:
        _commit_plain(scores, out, tags)
        return
    with RasterWriter(
        out,
        width=width,
        height=height,
        count=1,
        dtype='float32',
        crs=crs,
        transform=transform,
        nodata=float('nan'),
        band_names=[f'{method}_score'],
        tags=tags,
    ) as dst:
        for row0, values in _score_strips(scores):
            dst.write((0, row0, width, len(values)), values.astype(np.float32))


def _commit_plain(scores: Path, out: Path, tags: dict[str, str]) -> None:
    """Scores of a scene without georeferencing (``.mat``): a plain GeoTIFF, atomic."""
    import rasterio

    from ..export.atomic import atomic_output

    with (
        atomic_output(out) as tmp,
        _quiet_georeferencing(),
        rasterio.open(scores) as src,
    ):
        profile = src.profile | {'compress': 'deflate'}
        with rasterio.open(tmp, 'w', **profile) as dst:
            dst.write(src.read())
            dst.update_tags(**tags)


# --- Streamed RX (public API of earlier versions) ----------------------------------------


def raster_statistics(
    path: str | os.PathLike[str], window_size: int = 512
) -> RXStatistics:
    """Mean and covariance of a raster's valid pixels in one streamed pass.

    A pixel is valid when every band is finite, differs from the band's
    nodata value and is not masked. Memory is one strip of at most
    ``window_size`` rows.

    Args:
        path: Raster file.
        window_size: Most rows per strip.

    Returns:
        The accumulated statistics.

    Raises:
        MissingInputError: If the file does not exist.
        InvalidInputError: If it is not a raster, has no CRS or no valid pixels.
    """
    scene = Scene(path)
    try:
        return _statistics(scene, Run(rows=window_size), '')
    finally:
        scene.close()


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

    Two streamed passes (statistics, then scores); see :func:`anomaly_raster`.

    Args:
        input: Hyperspectral or multispectral raster.
        output: Score GeoTIFF to write (atomically).
        tile_size: Most rows per strip.
        regularization: Relative ridge (see :func:`~torchgeo_ext.models.rx.whitening_matrix`).
        rcond: Pseudo-inverse cut-off (see :func:`~torchgeo_ext.models.rx.whitening_matrix`).
        progress: Show progress bars.

    Returns:
        The output path.
    """
    return anomaly_raster(
        input,
        output,
        method='rx',
        tile_size=tile_size,
        progress=progress,
        regularization=regularization,
        rcond=rcond,
    ).scores
