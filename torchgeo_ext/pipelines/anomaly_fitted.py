"""Streamed BSDM, STAD and SAP: scene statistics and a bounded fit sample, then strips.

What is exact and what is sampled, per method: ``docs/models/anomaly.md``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from numpy.typing import NDArray
from torch import Tensor

from ..errors import InvalidInputError

if TYPE_CHECKING:
    from .anomaly import Run, Scene, ScoreSink

__all__ = ('FIT_PIXELS', 'PixelSample', 'Spool', 'pixel_keys', 'stream_bsdm')

#: Most pixels BSDM and SAP fit on (``fit_pixels``): a scene with at most
#: this many valid pixels is fitted on whole, exactly as in memory.
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

    return suppress_groups(
        model, pixels, groups, t=t, repeats=repeats, batch_size=16384
    )


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
