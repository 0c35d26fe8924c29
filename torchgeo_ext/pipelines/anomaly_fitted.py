"""Streamed BSDM, STAD and SAP: scene statistics and a bounded fit sample, then strips.

What is exact and what is sampled, per method: ``docs/models/anomaly.md``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from numpy.typing import NDArray
from torch import Tensor

from ..errors import InvalidInputError

if TYPE_CHECKING:
    from .anomaly import Run, Scene, ScoreSink

__all__ = (
    'FIT_PIXELS',
    'PixelSample',
    'Spool',
    'pixel_keys',
    'sap_tiles',
    'stream_bsdm',
    'stream_sap',
    'stream_stad',
)

#: Most pixels BSDM fits on (``fit_pixels``): a scene with at most this many
#: valid pixels is fitted on whole, exactly as in memory.
FIT_PIXELS = 65536


def pixel_keys(index: NDArray[np.int64], seed: int) -> NDArray[np.uint64]:
    """Seeded pseudo-random keys of pixel indices (splitmix64 of index and seed).

    A pixel's key depends only on its index and the seed, so a sample of the
    smallest keys is the same however the scene is cut into strips.

    Args:
        index: Flat pixel indices (``row * width + col``).
        seed: Random seed.

    Returns:
        One 64-bit key per index.
    """
    mix = (seed * 0x9E3779B97F4A7C15 + 0x632BE59BD9B4E019) % 2**64
    z = index.astype(np.uint64) ^ np.uint64(mix)
    z = z + np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


class PixelSample:
    """A seeded uniform sample of at most ``size`` valid pixels, kept while streaming.

    The pixels of the ``size`` smallest :func:`pixel_keys` (a bottom-k
    sample: uniform without replacement, independent of the strips). A
    scene with at most ``size`` valid pixels is kept whole, in raster order.
    """

    def __init__(self, size: int, seed: int) -> None:
        """Initialise an empty sample.

        Args:
            size: Most pixels kept (0 keeps none).
            seed: Random seed of the keys.
        """
        self.size, self.seed = size, seed
        self.index = np.zeros(0, dtype=np.int64)
        self.keys = np.zeros(0, dtype=np.uint64)
        self.values: NDArray[Any] | None = None

    def update(self, index: NDArray[np.int64], values: NDArray[Any]) -> None:
        """Offer pixels.

        Args:
            index: ``N`` flat pixel indices.
            values: ``N x C`` their spectra.
        """
        if self.size == 0 or len(index) == 0:
            return
        keys = pixel_keys(index, self.seed)
        if self.values is not None:
            index = np.concatenate([self.index, index])
            keys = np.concatenate([self.keys, keys])
            values = np.concatenate([self.values, values])
        if len(index) > self.size:
            keep = np.lexsort((index, keys))[: self.size]
            index, keys, values = index[keep], keys[keep], values[keep]
        self.index, self.keys, self.values = index, keys, values

    def pixels(self) -> NDArray[Any]:
        """The sampled spectra (``n x C``) in raster order."""
        if self.values is None:
            return np.zeros((0, 0), dtype=np.float32)
        return self.values[np.argsort(self.index, kind='stable')]


class Spool:
    """Per-pixel values of a scene written strip by strip to a raw file, read back in rows.

    Rows are written in order (pixel-major, ``width x channels`` values each),
    so any range of rows is one contiguous read.
    """

    def __init__(self, path: Path, width: int, channels: int, dtype: Any) -> None:
        """Create the file.

        Args:
            path: Where (a run's temporary folder).
            width: Pixels per row.
            channels: Values per pixel.
            dtype: NumPy dtype of the values.
        """
        self.path, self.width, self.channels = path, width, channels
        self.dtype = np.dtype(dtype)
        self.rows = 0
        self._file = open(path, 'wb')  # noqa: SIM115 (closed by close())

    def write(self, values: Tensor) -> None:
        """Append rows: ``h x width x channels`` (or ``h*width x channels``) values."""
        array = values.detach().to('cpu').numpy().astype(self.dtype, copy=False)
        self._file.write(np.ascontiguousarray(array).tobytes())
        self.rows += array.size // (self.width * self.channels)

    def close(self) -> None:
        """Finish writing."""
        self._file.close()

    def read(self, row0: int, row1: int) -> Tensor:
        """Rows ``[row0, row1)`` (within the written rows) as ``h x width x channels``."""
        per_row = self.width * self.channels
        values = np.fromfile(
            self.path,
            dtype=self.dtype,
            count=(row1 - row0) * per_row,
            offset=row0 * per_row * self.dtype.itemsize,
        )
        return torch.from_numpy(values.reshape(row1 - row0, self.width, self.channels))

    def unlink(self) -> None:
        """Remove the file."""
        self.path.unlink(missing_ok=True)


def _flat_index(scene: Scene, row0: int, row1: int) -> NDArray[np.int64]:
    """Flat pixel indices of rows ``[row0, row1)``."""
    return np.arange(row0 * scene.width, row1 * scene.width, dtype=np.int64)


def range_and_sample(
    scene: Scene, run: Run, size: int, seed: int, desc: str
) -> tuple[Tensor, Tensor, Tensor]:
    """One pass: the smallest and largest valid value, and a :class:`PixelSample`.

    Args:
        scene: The scene.
        run: The run (strip rows, progress, device).
        size: Most pixels sampled (0: none).
        seed: Seed of the sample.
        desc: Progress bar label.

    Returns:
        ``low`` and ``high`` (0-dim float32) and the ``n x C`` sample
        (float32, on ``run.device``).

    Raises:
        InvalidInputError: If the scene has fewer than two valid pixels.
    """
    low, high = torch.tensor(np.inf), torch.tensor(-np.inf)
    sample, count = PixelSample(size, seed), 0
    rows = scene.strip_rows(run.rows)
    for row0, row1, pixels, valid in scene.strips(rows, 0, desc, run.progress):
        flat = pixels.reshape(scene.count, -1).T
        keep = valid.reshape(-1)
        good = flat[keep]
        count += len(good)
        if len(good):
            low, high = torch.minimum(low, good.min()), torch.maximum(high, good.max())
        index = _flat_index(scene, row0, row1)[keep.numpy()]
        sample.update(index, good.numpy())
    if count < 2:
        raise InvalidInputError(scene.path, 'fewer than two valid (non-nodata) pixels')
    values = torch.from_numpy(sample.pixels()).to(run.device)
    return low.to(run.device), high.to(run.device), values


def _rx_from_spool(
    scene: Scene, sink: ScoreSink, run: Run, spool: Spool, stats: Any, desc: str
) -> None:
    """RX of spooled per-pixel features with their streamed statistics, into the sink."""
    from ..models.rx import RX

    detector = RX.from_statistics(stats.mean, stats.covariance).to(run.device).eval()
    rows = scene.strip_rows(run.rows, spool.channels)
    from tqdm import tqdm

    with (
        torch.inference_mode(),
        tqdm(
            total=scene.height, desc=desc, unit='row', disable=not run.progress
        ) as bar,
    ):
        for row0 in range(0, scene.height, rows):
            row1 = min(row0 + rows, scene.height)
            values = spool.read(row0, row1).to(run.device)
            finite = torch.isfinite(values).all(dim=2)
            cube = values.permute(2, 0, 1).nan_to_num(0.0, 0.0, 0.0)
            scores = detector(cube[None])[0, 0].masked_fill(~finite, float('nan'))
            sink.write(row0, scores)
            bar.update(row1 - row0)


def stream_bsdm(scene: Scene, sink: ScoreSink, run: Run) -> None:
    """BSDM: range and fit sample, fit, suppression into a spool with RX statistics, RX.

    The suppressed cube (as large as the scene, float32) is spooled to the
    run's temporary folder rather than suppressed twice.
    """
    from ..models.bsdm import band_groups, fit_on_scene, normalise_pixels
    from ..models.rx import RXStatistics

    options = dict(run.options)
    fit_pixels = int(options.pop('fit_pixels', FIT_PIXELS))
    seed, t = int(options.get('seed', 0)), int(options.get('t', 500))
    model = _checkpoint_model(scene, run, 'bsdm')
    fits = model is None or int(options.get('iterations') or 0) > 0
    low, high, sample = range_and_sample(
        scene, run, fit_pixels if fits else 0, seed, 'bsdm sample'
    )
    device = torch.device(run.device)
    groups = band_groups(scene.count, model, seed, device)
    model = fit_on_scene(
        normalise_pixels(sample, low, high),
        groups,
        model,
        iterations=options.get('iterations'),
        batch_size=options.get('batch_size', 'auto'),
        t=t,
        seed=seed,
        progress=run.progress,
    )
    repeats = int(options.get('repeats', 10))
    channels = len(groups) * model.in_channels
    spool = Spool(sink.path.with_suffix('.bsdm'), scene.width, channels, np.float32)
    stats = RXStatistics(channels)
    try:
        for _, _, pixels, valid in scene.strips(
            scene.strip_rows(run.rows), 0, 'bsdm suppression', run.progress, run.device
        ):
            flat = normalise_pixels(pixels.reshape(scene.count, -1).T, low, high)
            out = _suppress(model, flat, groups, t, repeats)
            good = valid.reshape(-1) & torch.isfinite(out).all(dim=1)
            stats.update(out[good])
            spool.write(out.masked_fill(~valid.reshape(-1, 1), float('nan')))
        spool.close()
        if stats.count < 2:
            raise InvalidInputError(scene.path, 'fewer than two valid pixels')
        _rx_from_spool(scene, sink, run, spool, stats, 'bsdm rx')
    finally:
        spool.close()
        spool.unlink()


def _suppress(
    model: Any, pixels: Tensor, groups: list[Tensor], t: int, repeats: int
) -> Tensor:
    """Suppressed pixels of one strip (float32)."""
    from ..models.bsdm import suppress_groups

    return suppress_groups(model, pixels, groups, t=t, repeats=repeats, batch_size=4096)


def _checkpoint_model(scene: Scene, run: Run, method: str) -> Any:
    """The checkpoint's model on the run's device (its band count checked), or None."""
    if run.checkpoint is None:
        return None
    from .anomaly import _check_bands

    if method != 'sap':  # SAP's prior takes any band count
        _check_bands(scene, run, method)
    if method == 'bsdm':
        from ..trainers.anomaly import load_bsdm

        return load_bsdm(run.checkpoint).to(run.device)
    if method == 'stad':
        from ..trainers.anomaly import load_stad

        return load_stad(run.checkpoint).to(run.device)
    from ..trainers.sap import load_sap_prior

    return load_sap_prior(run.checkpoint).to(run.device)


# --- STAD -------------------------------------------------------------------------------


def stream_stad(scene: Scene, sink: ScoreSink, run: Run) -> None:
    """STAD in four passes, all exact: range and RX statistics, RX map, filter, saliency.

    The RX map and its bilateral filter (one float32 value per pixel) are
    spooled; the filter's median is an exact streamed order statistic.
    """
    model = _checkpoint_model(scene, run, 'stad')
    assert model is not None  # required: checked before the scene is read
    model.eval()
    bands = int(model.in_channels)
    low, high, stats = _stad_statistics(scene, run, bands)
    folder = sink.path.parent
    rx_map = Spool(folder / 'stad_rx.raw', scene.width, 1, np.float32)
    smooth = Spool(folder / 'stad_filter.raw', scene.width, 1, np.float32)
    try:
        span = _stad_rx_map(scene, run, bands, (low, high), stats, rx_map)
        median = _stad_filter(scene, rx_map, span, smooth)
        weights = (smooth, median)
        _stad_saliency(scene, sink, run, model, (bands, low, high), weights)
    finally:
        for spool in (rx_map, smooth):
            spool.close()
            spool.unlink()


def _aligned(pixels: Tensor, bands: int, low: Tensor, high: Tensor) -> Tensor:
    """A strip's first ``bands`` bands, min-max scaled with the scene's range (1 x C x h x W)."""
    from ..models.stad import select_bands

    return (select_bands(pixels[None], bands) - low) / (high - low).clamp_min(1e-12)


def _stad_statistics(scene: Scene, run: Run, bands: int) -> tuple[Tensor, Tensor, Any]:
    """Range of the aligned bands (invalid pixels are 0, as in memory) and RX statistics."""
    from ..models.rx import RXStatistics
    from ..models.stad import select_bands

    low, high = torch.tensor(np.inf), torch.tensor(-np.inf)
    stats = RXStatistics(bands)
    rows = scene.strip_rows(run.rows)
    for _, _, pixels, valid in scene.strips(rows, 0, 'stad statistics', run.progress):
        aligned = select_bands(pixels[None], bands)[0]
        low = torch.minimum(low, aligned.min())
        high = torch.maximum(high, aligned.max())
        stats.update(aligned.reshape(bands, -1).T[valid.reshape(-1)])
    if stats.count < 2:
        raise InvalidInputError(scene.path, 'fewer than two valid (non-nodata) pixels')
    return low.to(run.device), high.to(run.device), stats


def _stad_rx_map(
    scene: Scene,
    run: Run,
    bands: int,
    scale: tuple[Tensor, Tensor],
    stats: Any,
    spool: Spool,
) -> tuple[float, float]:
    """RX of the scaled aligned bands (0 where invalid) into a spool; the map's range."""
    from ..models.rx import RX

    low, high = scale
    span = float((high - low).clamp_min(1e-12))
    mean = (stats.mean - float(low)) / span  # statistics of the scaled pixels
    detector = RX.from_statistics(mean, stats.covariance / span**2).to(run.device)
    bottom, top = np.inf, -np.inf
    rows = scene.strip_rows(run.rows)
    with torch.inference_mode():
        for _, _, pixels, valid in scene.strips(
            rows, 0, 'stad rx', run.progress, run.device
        ):
            values = detector(_aligned(pixels, bands, low, high))[0, 0]
            values = values.masked_fill(~valid, float('nan')).nan_to_num(0.0)
            bottom = min(bottom, float(values.min()))
            top = max(top, float(values.max()))
            spool.write(values[..., None])
    spool.close()
    return bottom, top


def _stad_filter(
    scene: Scene, rx_map: Spool, span: tuple[float, float], smooth: Spool
) -> float:
    """The bilateral filter of the RX map scaled to [0, 255], spooled; its (lower) median.

    Strips carry one row of the map on each side, reflected (without the
    edge row) at the scene's border as the whole-map filter pads.
    """
    from ..models.stad import bilateral_filter, border_mode
    from .anomaly import order_statistics, value_range

    mode = border_mode(scene.height, scene.width)
    low = torch.tensor(span[0], dtype=torch.float32)
    width = torch.tensor(span[1], dtype=torch.float32) - low
    rows = scene.strip_rows(512, 1)
    for row0 in range(0, scene.height, rows):
        row1 = min(row0 + rows, scene.height)
        index = np.arange(row0 - 1, row1 + 1)
        if mode == 'reflect':
            index = np.abs(index)
            index = np.where(index >= scene.height, 2 * scene.height - 2 - index, index)
        index = np.clip(index, 0, scene.height - 1)
        part = rx_map.read(int(index.min()), int(index.max()) + 1)[:, :, 0]
        part = part[torch.from_numpy(index - index.min())]
        scaled = 255 * (part - low) / width.clamp_min(1e-12)
        smooth.write(
            bilateral_filter(scaled[None, None], mode=mode)[0, 0, 1:-1, :, None]
        )
    smooth.close()

    def values(bottom: float, top: float) -> Iterator[NDArray[Any]]:
        for row0 in range(0, scene.height, rows):
            row1 = min(row0 + rows, scene.height)
            chunk = smooth.read(row0, row1).numpy().reshape(-1).astype(np.float64)
            yield chunk[(chunk >= bottom) & (chunk <= top)]

    whole = value_range(values(-np.inf, np.inf))
    rank = (whole[2] - 1) // 2  # torch.median: the lower of the two middle values
    return order_statistics(values, (rank, rank), whole)[0]


def _stad_saliency(
    scene: Scene,
    sink: ScoreSink,
    run: Run,
    model: Any,
    scale: tuple[int, Tensor, Tensor],
    weights: tuple[Spool, float],
) -> None:
    """Saliency strip by strip: teacher tiles in whole strips, student strips with a halo."""
    from ..models.stad import STADTeacher, saliency_reach, saliency_scores

    bands, low, high = scale
    smooth, median = weights
    reach, window = saliency_reach(model), int(run.options.get('window', 64))
    rows = scene.strip_rows(run.rows)
    if reach is None:  # the teacher: whole window x window tiles, as in memory
        rows, reach = max(window, rows // window * window), 0
    elements = bands * scene.height * scene.width
    for row0, row1, pixels, valid in scene.strips(
        rows, reach, 'stad saliency', run.progress, run.device
    ):
        first, last = max(0, row0 - reach), min(scene.height, row1 + reach)
        x = _aligned(pixels, bands, low, high)
        x = x[:, :, first - row0 + reach : last - row0 + reach]
        stf = (smooth.read(first, last)[:, :, 0] - median).clamp_min(0)
        stf = stf.to(run.device)[None, None]
        if isinstance(model, STADTeacher):
            scores = torch.cat(
                [
                    saliency_scores(
                        model, x[..., c0 : c0 + window], stf[..., c0 : c0 + window]
                    )[0]
                    for c0 in range(0, scene.width, window)
                ],
                dim=1,
            )
        else:
            scores = saliency_scores(model, x, stf, elements)[0]
        scores = scores[row0 - first : row1 - first]
        centre = valid[reach : reach + row1 - row0]
        sink.write(row0, scores.masked_fill(~centre, float('nan')))


# --- SAP --------------------------------------------------------------------------------

#: Side of the square tiles SAP's fit sample is made of (on scenes larger than ``fit_pixels``).
SAP_TILE = 64

#: Most pixels of one SAP window (a strip and its halo): one LRR problem, whose
#: float64 coefficients take ``atoms x clusters x pixels x 8`` bytes (26 MB here).
SAP_WINDOW_PIXELS = 16384

#: Most pixels SAP fits on by default: a scene up to this size is one LRR
#: problem in the fit, as large as a window.
SAP_FIT_PIXELS = SAP_WINDOW_PIXELS


def stream_sap(scene: Scene, sink: ScoreSink, run: Run) -> None:
    """SAP: range and a sample of whole tiles, fit on the tiles, then LRR window by window.

    A scene with at most ``fit_pixels`` pixels is fitted whole; one strip
    covering it then gives the in-memory scores.
    """
    from ..models.sap import fit_background, scale_scene

    options = dict(run.options)
    fit_pixels = int(options.pop('fit_pixels', SAP_FIT_PIXELS))
    seed, iterations = int(options.get('seed', 0)), int(options.get('iterations', 50))
    prior = _checkpoint_model(scene, run, 'sap')
    low, high, tiles = _sap_sample(scene, run, fit_pixels, seed)
    background = fit_background(
        [(scale_scene(t, v, low, high), v) for t, v in tiles if int(v.sum()) >= 2],
        prior=prior,
        fit_steps=options.get('fit_steps'),
        clusters=int(options.get('clusters', 10)),
        atoms=int(options.get('atoms', 20)),
        purge=float(options.get('purge', 0.05)),
        iterations=iterations,
        seed=seed,
    )
    del tiles
    _sap_windows(scene, sink, run, background, (low, high), iterations)


def sap_tiles(
    height: int, width: int, fit_pixels: int, seed: int
) -> list[tuple[int, int, int, int]]:
    """The tiles ``(row0, row1, col0, col1)`` SAP fits on: the scene, or a seeded sample.

    Args:
        height: Scene height.
        width: Scene width.
        fit_pixels: Most pixels of all tiles together.
        seed: Seed of the choice.

    Returns:
        The whole scene if it has at most ``fit_pixels`` pixels, else the
        ``fit_pixels // SAP_TILE**2`` (at least one) tiles of the
        :data:`SAP_TILE` grid with the smallest :func:`pixel_keys`.
    """
    if height * width <= fit_pixels:
        return [(0, height, 0, width)]
    grid = [
        (r, min(r + SAP_TILE, height), c, min(c + SAP_TILE, width))
        for r in range(0, height, SAP_TILE)
        for c in range(0, width, SAP_TILE)
    ]
    count = max(1, fit_pixels // SAP_TILE**2)
    order = np.argsort(pixel_keys(np.arange(len(grid), dtype=np.int64), seed))
    return sorted(grid[i] for i in order[:count])


def _sap_sample(
    scene: Scene, run: Run, fit_pixels: int, seed: int
) -> tuple[Tensor, Tensor, list[tuple[Tensor, Tensor]]]:
    """One pass: the valid range and the pixels of :func:`sap_tiles` (on the run's device)."""
    boxes = sap_tiles(scene.height, scene.width, fit_pixels, seed)
    tiles = [
        (torch.zeros(scene.count, r1 - r0, c1 - c0), torch.zeros(r1 - r0, c1 - c0))
        for r0, r1, c0, c1 in boxes
    ]
    low, high, count = torch.tensor(np.inf), torch.tensor(-np.inf), 0
    rows = scene.strip_rows(run.rows)
    for row0, row1, pixels, valid in scene.strips(rows, 0, 'sap sample', run.progress):
        good = pixels.reshape(scene.count, -1)[:, valid.reshape(-1)]
        count += good.shape[1]
        if good.numel():
            low, high = torch.minimum(low, good.min()), torch.maximum(high, good.max())
        for (r0, r1, c0, c1), (cube, mask) in zip(boxes, tiles, strict=True):
            top, bottom = max(r0, row0), min(r1, row1)
            if top < bottom:
                cube[:, top - r0 : bottom - r0] = pixels[
                    :, top - row0 : bottom - row0, c0:c1
                ]
                mask[top - r0 : bottom - r0] = valid[top - row0 : bottom - row0, c0:c1]
    if count < 2:
        raise InvalidInputError(scene.path, 'fewer than two valid (non-nodata) pixels')
    device = run.device
    moved = [(cube.to(device), mask.to(device, torch.bool)) for cube, mask in tiles]
    return low.to(device), high.to(device), moved


def _sap_windows(
    scene: Scene,
    sink: ScoreSink,
    run: Run,
    background: Any,
    scale: tuple[Tensor, Tensor],
    iterations: int,
) -> None:
    """LRR of each strip and its halo (the prior's reach) with the fitted background."""
    from ..models.sap import anomaly_norms, prior_reach, scale_scene

    halo = prior_reach(background.prior)
    # At least twice the halo in rows, so the context costs at most half the work.
    budget = max(2 * halo, SAP_WINDOW_PIXELS // scene.width - 2 * halo)
    rows = min(scene.strip_rows(run.rows), budget)
    for row0, row1, pixels, valid in scene.strips(
        rows, halo, 'sap', run.progress, run.device
    ):
        first, last = max(0, row0 - halo), min(scene.height, row1 + halo)
        inside = slice(first - row0 + halo, last - row0 + halo)
        cube, mask = pixels[:, inside], valid[inside]
        scores = torch.full(mask.shape, float('nan'), device=mask.device)
        norms = anomaly_norms(
            scale_scene(cube, mask, *scale), mask, background, iterations
        )
        scores[mask] = norms.to(torch.float32)
        sink.write(row0, scores[row0 - first : row1 - first])
