"""Tiled dense prediction over georeferenced rasters of any size.

Tiling scheme: along each axis of length ``L``, tiles of size
``T' = min(T, L)`` start at ``0, S, 2S, ...`` (stride ``S = T - O`` for the
overlap ``O``), and the last tile is flush with the raster edge, so every
tile lies inside the raster and the model's own padding acts at the raster
edges exactly as on the whole image.

* ``blend='crop'`` gives each pixel to one tile: the cut between two
  neighbouring tiles lies in the middle of their overlap, so every kept pixel
  is at least ``O // 2`` pixels from an edge of its tile that lies inside the
  raster. Tiled prediction therefore equals whole-image prediction when
  ``O // 2`` is at least the model's receptive-field radius.
* ``blend='linear'``/``'cosine'`` weight each tile by a separable window that
  ramps over the ``O`` pixels along each tile edge inside the raster (the
  ramps of two tiles overlapping by ``O`` sum to one) and normalise by the
  summed weights. This hides seams of models whose tile outputs disagree
  (large receptive fields, attention, normalisation over the tile).

Memory does not grow with the raster's width or height beyond one band of
pixels along a strip edge. Tile columns are grouped into vertical strips of
about :data:`STRIP_WIDTH` pixels, processed one after the other, each from
top to bottom. Within a strip, rows become final once no pending tile covers
them; they are streamed to the output GeoTIFF in whole 256-pixel blocks. The
columns that the next strip's tiles also cover (the overlap, widened to the
block grid) are carried over to that strip instead of being written, so the
only state proportional to a raster dimension is that carried band (its
height times at most ``overlap + 255`` columns).
"""

from __future__ import annotations

import collections
import concurrent.futures
import contextlib
import itertools
import json
import math
import os
import threading
from collections.abc import Callable, Generator, Hashable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from numpy.typing import NDArray
from rasterio.windows import Window
from torch import Tensor
from tqdm import tqdm

from ..errors import InvalidInputError, raise_if_interrupted
from ..export.raster import (
    BLOCKSIZE,
    RasterStack,
    RasterWriter,
    gdal_cache_limit,
    open_inputs,
)

__all__ = [
    'Blend',
    'InputPaths',
    'OutputKind',
    'Strip',
    'TileBatch',
    'axis_weights',
    'batch_indices',
    'blend_weights',
    'check_tiling',
    'column_strips',
    'predict_raster',
    'tile_batches',
    'tile_grid',
]

#: A tile: start row, start column, tile-row index, tile-column index.
type Tile = tuple[int, int, int, int]

#: Target width in pixels of the column strips that :func:`predict_raster`
#: processes one after the other (bounds the buffered rows' width).
STRIP_WIDTH = 2048

Blend = Literal['cosine', 'linear', 'crop']
OutputKind = Literal['scores', 'probabilities', 'classes']
InputPaths = str | os.PathLike[str] | Sequence[str | os.PathLike[str]]


def blend_weights(
    tile_size: int,
    overlap: int,
    blend: Blend,
    *,
    start_edge: bool = False,
    end_edge: bool = False,
) -> NDArray[np.float32]:
    """One-dimensional weights of a tile (the 2-D window is an outer product).

    Args:
        tile_size: Tile size ``T``.
        overlap: Overlap ``O`` between neighbouring tiles.
        blend: 'crop' (1 on ``[O // 2, T - (O - O // 2))``, else 0), 'linear' or
            'cosine' (ramps over the ``O`` edge pixels, 1 inside; the ramps of
            two tiles overlapping by ``O`` sum to 1).
        start_edge: The tile starts at the raster edge (no ramp or crop there).
        end_edge: The tile ends at the raster edge.

    Returns:
        float32 array of length ``tile_size``.

    Raises:
        ValueError: For an unknown mode or a tile too small for the overlap.
    """
    t, o = tile_size, overlap
    if blend == 'crop':
        w = np.zeros(t, dtype=np.float32)
        w[0 if start_edge else o // 2 : t if end_edge else t - (o - o // 2)] = 1
        return w
    if blend not in ('linear', 'cosine'):
        raise ValueError(f"blend must be 'cosine', 'linear' or 'crop', got {blend!r}")
    if 2 * o > t:
        raise ValueError(
            f'{blend} blending needs tile_size >= 2 * overlap ({t} < {2 * o})'
        )
    w = np.ones(t, dtype=np.float64)
    if o:
        x = (np.arange(o) + 0.5) / o
        ramp = x if blend == 'linear' else np.sin(np.pi / 2 * x) ** 2
        if not start_edge:
            w[:o] = ramp
        if not end_edge:
            w[t - o :] = ramp[::-1]
    return w.astype(np.float32)


def tile_grid(length: int, tile_size: int, overlap: int) -> list[int]:
    """Tile start offsets along one axis: ``0, S, 2S, ...`` and one flush with the edge.

    Args:
        length: Raster size along the axis.
        tile_size: Tile size ``T`` (a raster shorter than that gets one tile).
        overlap: Minimum overlap ``O`` between neighbouring tiles (``S = T - O``).

    Returns:
        Start offsets, all in ``[0, max(length - T, 0)]``.
    """
    if length <= tile_size:
        return [0]
    stride = tile_size - overlap
    starts = list(range(0, length - tile_size, stride))
    starts.append(length - tile_size)
    return starts


def axis_weights(
    length: int, tile_size: int, overlap: int, blend: Blend
) -> tuple[list[int], list[NDArray[np.float32]]]:
    """Tile starts along one axis and the 1-D weights of each tile.

    For 'crop', the cut between two tiles is the middle of their overlap.

    Args:
        length: Raster size along the axis.
        tile_size: Tile size.
        overlap: Minimum overlap between tiles.
        blend: Blending mode.

    Returns:
        The starts (see :func:`tile_grid`) and one weight vector per tile, of
        length ``min(tile_size, length)``.
    """
    size = min(tile_size, length)
    starts = tile_grid(length, tile_size, overlap)
    weights = []
    for k, start in enumerate(starts):
        first, last = k == 0, k == len(starts) - 1
        if blend == 'crop':
            lo = 0 if first else (start + starts[k - 1] + size) // 2 - start
            hi = size if last else (starts[k + 1] + start + size) // 2 - start
            w = np.zeros(size, dtype=np.float32)
            w[lo:hi] = 1
        else:
            w = blend_weights(
                size, min(overlap, size // 2), blend, start_edge=first, end_edge=last
            )
        weights.append(w)
    return starts, weights


@dataclass(frozen=True)
class Strip:
    """Consecutive tile columns processed together, and the columns they finish.

    Attributes:
        tiles: Indices of the tile columns (into the start offsets).
        start: First buffered column: the first tile's start, rounded down to
            the output block grid (this strip finishes columns from here).
        stop: Column after the last tile's end (buffered up to here).
        final: Column up to which this strip finishes the output; columns
            ``[final, stop)`` are also covered by the next strip's tiles and
            carried over to it (``final == stop`` for the last strip).
    """

    tiles: tuple[int, ...]
    start: int
    stop: int
    final: int


def column_strips(
    starts: Sequence[int], tile_width: int, width: int, strip_width: int = STRIP_WIDTH
) -> list[Strip]:
    """Group tile columns into strips of about *strip_width* pixels.

    Strip boundaries lie on the 256-pixel output block grid, so every strip
    writes whole blocks; each strip finishes at least one block column.

    Args:
        starts: Tile start offsets along the width (see :func:`tile_grid`).
        tile_width: Tile width.
        width: Raster width.
        strip_width: Target width of a strip (at least one tile).

    Returns:
        The strips, left to right; their ``[start, final)`` ranges partition
        ``[0, width)``.
    """
    strips: list[Strip] = []
    first, start = 0, 0
    for j in range(1, len(starts) + 1):
        if j < len(starts):
            final = starts[j] // BLOCKSIZE * BLOCKSIZE  # next strip's first block
            if starts[j] + tile_width - starts[first] <= strip_width or final <= start:
                continue
        else:
            final = width
        stop = starts[j - 1] + tile_width
        strips.append(Strip(tuple(range(first, j)), start, stop, final))
        first, start = j, final
    return strips


class _Carry:
    """Sums of the columns a strip shares with the next one, kept by row range.

    The writer thread appends the shared columns of each finished row range of
    one strip and takes them back, in the same row order, for the next strip.
    """

    def __init__(self) -> None:
        self.chunks: collections.deque[
            tuple[int, NDArray[np.float32], NDArray[np.float32], NDArray[np.bool_]]
        ] = collections.deque()

    def put(
        self,
        row: int,
        acc: NDArray[np.float32],
        wsum: NDArray[np.float32],
        valid: NDArray[np.bool_],
    ) -> None:
        self.chunks.append((row, acc.copy(), wsum.copy(), valid.copy()))

    def add_to(
        self,
        row: int,
        acc: NDArray[np.float32],
        wsum: NDArray[np.float32],
        valid: NDArray[np.bool_],
    ) -> None:
        """Add the carried rows ``[row, row + len(wsum))`` into the arrays' first columns."""
        done, rows = 0, wsum.shape[0]
        while done < rows:
            start, c_acc, c_wsum, c_valid = self.chunks[0]
            lo = row + done - start
            take = min(c_wsum.shape[0] - lo, rows - done)
            ys, cols = slice(done, done + take), c_wsum.shape[1]
            acc[:, ys, :cols] += c_acc[:, lo : lo + take]
            wsum[ys, :cols] += c_wsum[lo : lo + take]
            valid[ys, :cols] |= c_valid[lo : lo + take]
            done += take
            if lo + take == c_wsum.shape[0]:
                self.chunks.popleft()


def check_tiling(
    tile_size: int, overlap: int, batch_size: int = 1, blend: str = 'crop'
) -> None:
    """Check tiling options: the one check every tiled pipeline runs first.

    Args:
        tile_size: Tile side ``T``.
        overlap: Overlap ``O`` between neighbouring tiles.
        batch_size: Tiles per model call.
        blend: Blending mode; 'linear' and 'cosine' need ``T >= 2 O``.

    Raises:
        InvalidInputError: With one line naming the option and its bounds.
    """
    if tile_size <= 0:
        raise InvalidInputError(
            None, f'the tile size must be positive, got {tile_size}'
        )
    if batch_size <= 0:
        raise InvalidInputError(
            None, f'the batch size must be positive, got {batch_size}'
        )
    if not 0 <= overlap < tile_size:
        raise InvalidInputError(
            None, f'the overlap ({overlap}) must be in [0, tile size {tile_size})'
        )
    if blend not in ('crop', 'linear', 'cosine'):
        raise InvalidInputError(
            None, f"blend must be 'cosine', 'linear' or 'crop', got {blend!r}"
        )
    if blend != 'crop' and 2 * overlap > tile_size:
        raise InvalidInputError(
            None,
            f'{blend} blending needs a tile size ({tile_size}) of at least twice '
            f'the overlap ({overlap})',
        )


#: Former name, kept while detection.py still imports it.
_check_tiling = check_tiling


_POOL_NUMBERS = itertools.count()


@contextlib.contextmanager
def worker_thread(
    name: str, workers: int = 1
) -> Iterator[concurrent.futures.ThreadPoolExecutor]:
    """A thread pool whose threads are joined when the block ends, however it ends.

    ``ThreadPoolExecutor.shutdown`` joins only the threads the pool recorded; an
    interruption inside ``submit`` (between starting a thread and recording it)
    would leave one reading from a raster that is then closed. Threads are found
    by their unique name instead.

    Args:
        name: What the threads do (part of their names).
        workers: Number of threads.

    Yields:
        The pool.
    """
    prefix = f'torchgeo-ext-{name}-{next(_POOL_NUMBERS)}'
    pool = concurrent.futures.ThreadPoolExecutor(
        max_workers=workers, thread_name_prefix=prefix
    )
    try:
        yield pool
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        for thread in threading.enumerate():
            if thread.name.startswith(f'{prefix}_'):
                thread.join()


@dataclass(frozen=True)
class TileBatch:
    """One batch of tiles read by :func:`tile_batches`.

    Attributes:
        image: (B, C, h, w) float32 pixel values on the iterator's device, 0
            where a pixel is invalid.
        valid: (B, h, w) bool on the same device: False outside the raster
            and where any band marks the pixel invalid (its nodata value, NaN,
            a GDAL mask; see :meth:`~torchgeo_ext.export.raster.RasterStack.read`).
        windows: The tiles' windows in raster pixels, in batch order.
        indices: The windows' positions in the sequence given to :func:`tile_batches`.
    """

    image: Tensor
    valid: Tensor
    windows: tuple[Window, ...]
    indices: tuple[int, ...]


def batch_indices(
    windows: Sequence[Window], batch_size: int, groups: Sequence[Hashable] | None = None
) -> list[list[int]]:
    """Group consecutive windows into batches of at most *batch_size*.

    A batch holds windows of one size and, when *groups* is given, of one
    group (e.g. one column strip), so that its tiles stack into one tensor.

    Args:
        windows: The tiles' windows, in reading order.
        batch_size: Most windows per batch.
        groups: One key per window; a batch never mixes keys.

    Returns:
        The batches, as positions into *windows*.
    """
    batches: list[list[int]] = []
    key: Hashable = None
    for i, window in enumerate(windows):
        this = (
            None if groups is None else groups[i],
            int(window.height),
            int(window.width),
        )
        if not batches or len(batches[-1]) == batch_size or this != key:
            batches.append([])
        batches[-1].append(i)
        key = this
    return batches


class _Reader:
    """Reads batches of windows from a stack; each extra reader thread opens its own files."""

    def __init__(self, stack: RasterStack, readers: int, pin: bool) -> None:
        self.stack, self.readers, self.pin = stack, readers, pin
        self.local = threading.local()
        self.opened: list[RasterStack] = []
        self.lock = threading.Lock()

    def _stack(self) -> RasterStack:
        if self.readers == 1:  # one thread: the caller's datasets are not shared
            return self.stack
        stack: RasterStack | None = getattr(self.local, 'stack', None)
        if stack is None:  # a rasterio dataset must not be read by two threads
            stack = self.local.stack = open_inputs(self.stack.paths)
            with self.lock:
                self.opened.append(stack)
        return stack

    def read(self, windows: Sequence[Window]) -> tuple[Tensor, Tensor]:
        stack = self._stack()
        arrays = [stack.read(window) for window in windows]
        image = torch.from_numpy(np.stack([a for a, _ in arrays]))
        valid = torch.from_numpy(np.stack([v for _, v in arrays]))
        if self.pin:  # page-locked: the copy to the GPU runs asynchronously
            image, valid = image.pin_memory(), valid.pin_memory()
        return image, valid

    def close(self) -> None:
        for stack in self.opened:
            stack.close()


def tile_batches(
    stack: RasterStack,
    windows: Sequence[Window],
    batch_size: int,
    *,
    groups: Sequence[Hashable] | None = None,
    device: str | torch.device = 'cpu',
    pin_memory: bool = True,
    readers: int = 1,
    read_ahead: int = 2,
) -> Generator[TileBatch]:
    """Read tiles in batches, ahead of the consumer, and move them to *device*.

    Windows in, batches out: background threads read the next *read_ahead*
    batches while the caller runs its model on the current one; the command
    line's interruption is checked between batches. Close the generator (or
    exhaust it) to join the threads: ``with contextlib.closing(...)``.

    Args:
        stack: The open input rasters.
        windows: Tile windows in raster pixels (they may reach beyond the
            raster: such pixels read as 0 and invalid).
        batch_size: Most tiles per batch.
        groups: One key per window; a batch never mixes keys (see
            :func:`batch_indices`).
        device: Where the batches' tensors go.
        pin_memory: Read into page-locked host memory when *device* is a GPU,
            so that the copy overlaps the model's work (ignored on the CPU).
        readers: Reading threads; more than one helps where reading is slow
            (remote files, heavy decompression), each opening its own handles.
        read_ahead: Batches read ahead of the consumer (at least *readers*).

    Yields:
        One :class:`TileBatch` per batch, in the order of *windows*.

    Raises:
        Interrupted: When the command line received SIGINT or SIGTERM.
    """
    if readers < 1 or read_ahead < 1:
        raise ValueError(
            f'readers and read_ahead must be positive ({readers}, {read_ahead})'
        )
    dev = torch.device(device)
    pin = pin_memory and dev.type == 'cuda'
    reader = _Reader(stack, readers, pin)
    batches = iter(batch_indices(windows, batch_size, groups))
    try:
        with worker_thread('read', readers) as pool:
            queue: collections.deque[
                tuple[list[int], concurrent.futures.Future[tuple[Tensor, Tensor]]]
            ] = collections.deque()

            def submit() -> None:
                batch = next(batches, None)
                if batch is not None:
                    queue.append(
                        (batch, pool.submit(reader.read, [windows[i] for i in batch]))
                    )

            for _ in range(max(read_ahead, readers)):
                submit()
            while queue:
                batch, future = queue.popleft()
                image, valid = future.result()
                submit()
                raise_if_interrupted()
                yield TileBatch(
                    image.to(dev, non_blocking=pin),
                    valid.to(dev, non_blocking=pin),
                    tuple(windows[i] for i in batch),
                    tuple(batch),
                )
    finally:
        reader.close()


def _prefetch[T, R](
    fn: Callable[[T], R], items: Sequence[T], pool: concurrent.futures.Executor
) -> Iterator[tuple[T, R]]:
    """Yield ``(item, fn(item))``, computing the next result in *pool* meanwhile."""
    if not items:
        return
    future = pool.submit(fn, items[0])
    for i, item in enumerate(items):
        result = future.result()
        if i + 1 < len(items):
            future = pool.submit(fn, items[i + 1])
        yield item, result


class _Accumulator:
    """Weighted sums of tile outputs for a band of raster rows."""

    def __init__(self, channels: int, width: int) -> None:
        self.channels, self.width = channels, width
        self.base = 0  # raster row of buffer row 0
        self.acc = np.zeros((channels, 0, width), dtype=np.float32)
        self.wsum = np.zeros((0, width), dtype=np.float32)
        self.valid = np.zeros((0, width), dtype=np.bool_)
        self.used = 0  # buffer rows touched so far
        self._scratch = np.empty((0,), dtype=np.float32)
        self._windows: dict[tuple[bytes, bytes], NDArray[np.float32]] = {}

    def _ensure(self, rows: int) -> None:
        self.used = max(self.used, rows)
        have = self.wsum.shape[0]
        if rows <= have:
            return
        grow = rows + BLOCKSIZE // 4  # needs are bounded: grow rarely, never double
        acc = np.zeros((self.channels, grow, self.width), dtype=np.float32)
        wsum = np.zeros((grow, self.width), dtype=np.float32)
        valid = np.zeros((grow, self.width), dtype=np.bool_)
        acc[:, :have], wsum[:have], valid[:have] = self.acc, self.wsum, self.valid
        self.acc, self.wsum, self.valid = acc, wsum, valid

    def _window(
        self, wy: NDArray[np.float32], wx: NDArray[np.float32]
    ) -> NDArray[np.float32]:
        key = (wy.tobytes(), wx.tobytes())
        window = self._windows.get(key)
        if window is None:
            window = self._windows[key] = np.outer(wy, wx)
        return window

    def add(
        self,
        row: int,
        col: int,
        out: NDArray[np.float32],
        wy: NDArray[np.float32],
        wx: NDArray[np.float32],
        valid: NDArray[np.bool_],
        crop: bool,
    ) -> None:
        """Add one tile output with the weights ``outer(wy, wx)``."""
        t_h, t_w = out.shape[1:]
        r, c = row - self.base, col
        self._ensure(r + t_h)
        if crop:  # weights are 0/1: copy the core only
            nz_r, nz_c = np.flatnonzero(wy), np.flatnonzero(wx)
            ys = slice(int(nz_r[0]), int(nz_r[-1]) + 1)
            xs = slice(int(nz_c[0]), int(nz_c[-1]) + 1)
            dy, dx = slice(r + ys.start, r + ys.stop), slice(c + xs.start, c + xs.stop)
            self.acc[:, dy, dx] = out[:, ys, xs]
            self.wsum[dy, dx] = 1
            self.valid[dy, dx] = valid[ys, xs]
            return
        weight = self._window(wy, wx)
        dy, dx = slice(r, r + t_h), slice(c, c + t_w)
        if self._scratch.shape != out.shape:
            self._scratch = np.empty_like(out, dtype=np.float32)
        np.multiply(out, weight, out=self._scratch)
        self.acc[:, dy, dx] += self._scratch
        self.wsum[dy, dx] += weight
        self.valid[dy, dx] |= valid

    def pop(
        self, start: int, stop: int
    ) -> tuple[NDArray[np.float32], NDArray[np.float32], NDArray[np.bool_]]:
        """Return rows [start, stop) (raster rows) and drop all rows before *stop*."""
        i0, i1 = start - self.base, stop - self.base
        self._ensure(i1)
        acc = self.acc[:, i0:i1].copy()
        wsum = self.wsum[i0:i1].copy()
        valid = self.valid[i0:i1].copy()
        keep = max(self.used - i1, 0)
        if keep:
            self.acc[:, :keep] = self.acc[:, i1 : i1 + keep]
            self.wsum[:keep] = self.wsum[i1 : i1 + keep]
            self.valid[:keep] = self.valid[i1 : i1 + keep]
        self.acc[:, keep : self.used] = 0
        self.wsum[keep : self.used] = 0
        self.valid[keep : self.used] = False
        self.used = keep
        self.base = stop
        return acc, wsum, valid


def _as_module_eval(model: Callable[..., Any]) -> Callable[[], None]:
    """Put a torch module in eval mode; return a function restoring its mode."""
    if isinstance(model, torch.nn.Module):
        module, was_training = model, model.training
        module.eval()

        def restore() -> None:
            module.train(was_training)

        return restore
    return lambda: None


def predict_raster(
    model: Callable[[Tensor], Tensor],
    inputs: InputPaths,
    output: str | os.PathLike[str],
    *,
    tile_size: int = 512,
    overlap: int = 64,
    batch_size: int = 4,
    blend: Blend = 'cosine',
    output_kind: OutputKind = 'scores',
    nodata: float | None = None,
    band_names: Sequence[str] | None = None,
    class_names: Sequence[str] | None = None,
    device: str | torch.device = 'cpu',
    progress: bool = True,
    cog: bool = True,
    gdal_cache_mb: int | None = 128,
) -> Path:
    """Run a dense model over a raster of any size, tile by tile, into a GeoTIFF.

    See the module docstring for the tiling scheme.

    Args:
        model: Callable mapping a float32 batch (B, C, T', T') to (B, K, T', T'),
            with ``T' = min(T, raster size)`` per axis.
        inputs: One raster, or several co-registered rasters stacked as
            modalities along C (in the order given).
        output: Output GeoTIFF (same CRS, transform and size as the input).
        tile_size: Tile size ``T`` fed to the model.
        overlap: Minimum overlap ``O`` between tiles; 'crop' is exact for
            models whose receptive-field radius is at most ``O // 2``.
        batch_size: Tiles per model call.
        blend: 'cosine', 'linear' or 'crop' (see the module docstring).
        output_kind: 'scores' (raw outputs, float32), 'probabilities'
            (softmax over K, float32) or 'classes' (argmax of the blended
            probabilities, uint8).
        nodata: Output nodata (default NaN for float outputs, 255 for classes).
            Written where any input band is nodata (or NaN).
        band_names: Output band descriptions (default: class names or
            ``score_k``/``probability_k``).
        class_names: Class names, stored as the ``class_names`` tag (JSON).
        device: Torch device of the model.
        progress: Show a tqdm progress bar.
        cog: Convert the result to a Cloud-Optimized GeoTIFF.
        gdal_cache_mb: Cap on GDAL's block cache while running (see
            :func:`~torchgeo_ext.export.raster.gdal_cache_limit`); None keeps it.

    Returns:
        The output path.

    Raises:
        ValueError: For inconsistent options or an output of the wrong shape.
    """
    check_tiling(tile_size, overlap, batch_size, blend)
    if output_kind not in ('scores', 'probabilities', 'classes'):
        raise ValueError(f'unknown output_kind {output_kind!r}')
    dev = torch.device(device)

    with gdal_cache_limit(gdal_cache_mb), open_inputs(inputs) as stack:
        rows, wy = axis_weights(stack.height, tile_size, overlap, blend)
        cols, wx = axis_weights(stack.width, tile_size, overlap, blend)
        th, tw = len(wy[0]), len(wx[0])
        strips = column_strips(cols, tw, stack.width, STRIP_WIDTH)
        # Strip by strip, each from top to bottom; a batch stays in one strip.
        batches: list[tuple[int, list[Tile]]] = []
        for k, strip in enumerate(strips):
            tiles = [
                (r, cols[j], i, j) for i, r in enumerate(rows) for j in strip.tiles
            ]
            batches += [
                (k, tiles[i : i + batch_size]) for i in range(0, len(tiles), batch_size)
            ]

        def read(batch: tuple[int, list[Tile]]) -> tuple[NDArray[Any], NDArray[Any]]:
            arrays = [stack.read(Window(c, r, tw, th)) for r, c, _, _ in batch[1]]
            return np.stack([a for a, _ in arrays]), np.stack([v for _, v in arrays])

        restore = _as_module_eval(model)
        try:
            return _predict_tiles(
                model,
                stack,
                output,
                strips,
                batches,
                read,
                (wy, wx),
                crop=blend == 'crop',
                total=len(rows) * len(cols),
                output_kind=output_kind,
                nodata=nodata,
                band_names=band_names,
                class_names=class_names,
                device=dev,
                progress=progress,
                cog=cog,
            )
        finally:
            restore()


def _predict_tiles(
    model: Callable[[Tensor], Tensor],
    stack: RasterStack,
    output: str | os.PathLike[str],
    strips: list[Strip],
    batches: list[tuple[int, list[Tile]]],
    read: Callable[[tuple[int, list[Tile]]], tuple[NDArray[Any], NDArray[Any]]],
    weights: tuple[list[NDArray[np.float32]], list[NDArray[np.float32]]],
    *,
    crop: bool,
    total: int,
    output_kind: OutputKind,
    nodata: float | None,
    band_names: Sequence[str] | None,
    class_names: Sequence[str] | None,
    device: torch.device,
    progress: bool,
    cog: bool,
) -> Path:
    height = stack.height
    wy, wx = weights
    tile_shape = (len(wy[0]), len(wx[0]))
    writer: RasterWriter | None = None
    acc: _Accumulator | None = None
    current = -1  # strip of acc
    written = 0  # rows of the current strip handed to the writer
    out_nodata: float = 0.0
    bar = tqdm(total=total, disable=not progress, desc='predict', unit='tile')
    threads = contextlib.ExitStack()
    pool = threads.enter_context(worker_thread('read'))  # reads ahead
    # finishes and writes (compresses) rows while the model runs; one job in flight
    write_pool = threads.enter_context(worker_thread('write'))
    pending: concurrent.futures.Future[None] | None = None
    # carries[k]: the columns strip k shares with strip k + 1 (writer thread only)
    carries: dict[int, _Carry] = {}

    def finish_and_write(
        dst: RasterWriter,
        k: int,
        row: int,
        popped: tuple[NDArray[np.float32], NDArray[np.float32], NDArray[np.bool_]],
        nodata_value: float,
    ) -> None:
        strip = strips[k]
        sums, wsum, valid = popped
        rows = wsum.shape[0]
        if k > 0:
            carries[k - 1].add_to(row, sums, wsum, valid)
            if row + rows == height:
                del carries[k - 1]
        n = strip.final - strip.start
        if strip.final < strip.stop:
            carry = carries.setdefault(k, _Carry())
            carry.put(row, sums[:, :, n:], wsum[:, n:], valid[:, n:])
        block = _finish_rows(
            sums[:, :, :n], wsum[:, :n], valid[:, :n], output_kind, nodata_value
        )
        dst.write(Window(strip.start, row, n, rows), block)

    try:
        for index, ((k, batch), (x_np, valid_np)) in enumerate(
            _prefetch(read, batches, pool)
        ):
            with torch.inference_mode():
                y = model(torch.from_numpy(x_np).to(device))
                if not isinstance(y, Tensor) or y.ndim != 4 or y.shape[0] != len(batch):
                    shape = getattr(y, 'shape', type(y).__name__)
                    raise ValueError(
                        f'the model must return a (B, K, h, w) tensor, got {shape}'
                    )
                if tuple(y.shape[2:]) != tile_shape:
                    raise ValueError(
                        f'the model output {tuple(y.shape)} does not have the tile size '
                        f'{tile_shape}; predict_raster needs same-size dense outputs'
                    )
                if output_kind != 'scores':
                    y = torch.softmax(y.float(), dim=1)
                out = y.float().cpu().numpy()
            if writer is None:
                writer, out_nodata = _open_writer(
                    stack,
                    output,
                    out.shape[1],
                    output_kind,
                    nodata,
                    band_names,
                    class_names,
                    cog,
                )
                writer.__enter__()
            strip = strips[k]
            if acc is None or k != current:
                acc, current, written = (
                    _Accumulator(out.shape[1], strip.stop - strip.start),
                    k,
                    0,
                )
            for (r, c, i, j), tile_out, tile_valid in zip(batch, out, valid_np):
                acc.add(r, c - strip.start, tile_out, wy[i], wx[j], tile_valid, crop)
            bar.update(len(batch))
            raise_if_interrupted()
            # rows of this strip before its next pending tile row are final
            following = batches[index + 1] if index + 1 < len(batches) else None
            done = (
                height if following is None or following[0] != k else following[1][0][0]
            )
            stop = min(done, height)
            if stop < height:
                stop = written + (stop - written) // BLOCKSIZE * BLOCKSIZE
            if stop > written:
                popped = acc.pop(written, stop)
                if pending is not None:
                    pending.result()
                pending = write_pool.submit(
                    finish_and_write, writer, k, written, popped, out_nodata
                )
                written = stop
        if pending is not None:
            pending.result()
    except BaseException as err:
        if pending is not None:
            concurrent.futures.wait([pending])
        if writer is not None:
            writer.close(err)
        raise
    finally:
        bar.close()
        threads.close()
    assert writer is not None
    writer.close()
    return writer.path


def _open_writer(
    stack: RasterStack,
    output: str | os.PathLike[str],
    channels: int,
    output_kind: OutputKind,
    nodata: float | None,
    band_names: Sequence[str] | None,
    class_names: Sequence[str] | None,
    cog: bool,
) -> tuple[RasterWriter, float]:
    if class_names is not None and len(class_names) != channels:
        raise ValueError(f'{len(class_names)} class names for {channels} model outputs')
    tags: dict[str, Any] = {'output_kind': output_kind}
    if class_names is not None:
        tags['class_names'] = json.dumps(list(class_names))
    if output_kind == 'classes':
        if channels > 255:
            raise ValueError(f'{channels} classes do not fit uint8 class ids')
        out_nodata = 255.0 if nodata is None else nodata
        if 0 <= out_nodata < channels:
            raise ValueError(f'nodata {out_nodata} is a class id')
        dtype, count = 'uint8', 1
        names = list(band_names) if band_names is not None else ['class']
    else:
        out_nodata = math.nan if nodata is None else nodata
        dtype, count = 'float32', channels
        prefix = 'score' if output_kind == 'scores' else 'probability'
        names = (
            list(band_names)
            if band_names is not None
            else list(class_names)
            if class_names is not None
            else [f'{prefix}_{k}' for k in range(channels)]
        )
    writer = RasterWriter(
        output,
        width=stack.width,
        height=stack.height,
        count=count,
        dtype=dtype,
        crs=stack.crs,
        transform=stack.transform,
        nodata=out_nodata,
        band_names=names,
        tags=tags,
        cog=cog,
    )
    return writer, out_nodata


def _finish_rows(
    acc: NDArray[np.float32],
    wsum: NDArray[np.float32],
    valid: NDArray[np.bool_],
    output_kind: OutputKind,
    nodata: float,
) -> NDArray[Any]:
    ok = valid & (wsum > 0)
    values = acc / np.where(ok, wsum, 1)[None]
    if output_kind == 'classes':
        classes = values.argmax(axis=0).astype(np.uint8)
        classes[~ok] = np.uint8(nodata)
        return classes[None]
    values[:, ~ok] = nodata
    return values
