"""Tiled dense prediction over georeferenced rasters of any size."""

from __future__ import annotations

import collections
import concurrent.futures
import contextlib
import itertools
import json
import os
import threading
from collections.abc import Callable, Generator, Hashable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, Self

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
from .stitching import (
    Accumulator,
    Carry,
    OutputDtype,
    OutputFormat,
    OutputKind,
    Rows,
    output_format,
    tile_window,
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

#: Target width in pixels of the column strips that :func:`predict_raster`
#: processes one after the other (bounds the buffered rows' width).
STRIP_WIDTH = 2048

Blend = Literal['cosine', 'linear', 'crop']
Precision = Literal['32', '16-mixed', 'bf16-mixed']
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


@contextlib.contextmanager
def eval_mode(model: Callable[..., Any]) -> Iterator[None]:
    """Put a torch module in eval mode for the block, then restore its mode.

    The module of a bound method (``task.classify``) is put in eval mode too;
    any other callable is left as it is.
    """
    module = (
        model
        if isinstance(model, torch.nn.Module)
        else getattr(model, '__self__', None)
    )
    if not isinstance(module, torch.nn.Module):
        yield
        return
    was_training = module.training
    module.eval()
    try:
        yield
    finally:
        module.train(was_training)


def check_precision(precision: str | int) -> Precision:
    """Check a precision named as Lightning names it.

    Args:
        precision: '32' (or '32-true', 32), '16-mixed' or 'bf16-mixed'.

    Returns:
        '32', '16-mixed' or 'bf16-mixed'.

    Raises:
        InvalidInputError: For another name.
    """
    name = str(precision)
    if name in ('32', '32-true'):
        return '32'
    if name in ('16-mixed', 'bf16-mixed'):
        return name  # type: ignore[return-value]
    raise InvalidInputError(
        None, f"precision must be '32', '16-mixed' or 'bf16-mixed', got {precision!r}"
    )


def autocast(device: torch.device, precision: Precision) -> Any:
    """The autocast context of *precision* on *device* (none for '32')."""
    if precision == '32':
        return contextlib.nullcontext()
    dtype = torch.float16 if precision == '16-mixed' else torch.bfloat16
    return torch.autocast(device.type, dtype=dtype)


@dataclass(frozen=True)
class TilePlan:
    """Where :func:`predict_raster`'s tiles lie, in reading order, and their weights.

    Attributes:
        height: Raster height.
        width: Raster width.
        strips: The column strips (see :func:`column_strips`).
        windows: The tiles, strip by strip, each strip from top to bottom.
        strip_of: The strip of each tile.
        weight_of: Each tile's (row, column) index into *wy* and *wx*.
        wy: 1-D weights of each tile row (see :func:`axis_weights`),
            normalised: the weights of the tiles covering a row sum to one.
        wx: 1-D weights of each tile column, normalised.
    """

    height: int
    width: int
    strips: list[Strip]
    windows: list[Window]
    strip_of: list[int]
    weight_of: list[tuple[int, int]]
    wy: list[NDArray[np.float32]]
    wx: list[NDArray[np.float32]]

    @property
    def tile_shape(self) -> tuple[int, int]:
        """(rows, columns) of every tile."""
        return len(self.wy[0]), len(self.wx[0])

    def final_row(self, index: int) -> int:
        """Row above which the strip of tile *index* is final once tiles up to it are added."""
        following = index + 1
        if (
            following == len(self.windows)
            or self.strip_of[following] != self.strip_of[index]
        ):
            return self.height
        return int(self.windows[following].row_off)


def plan_tiles(
    height: int, width: int, tile_size: int, overlap: int, blend: Blend
) -> TilePlan:
    """Lay out the tiles of a raster for :func:`predict_raster`.

    Args:
        height: Raster height.
        width: Raster width.
        tile_size: Tile size.
        overlap: Minimum overlap between tiles.
        blend: Blending mode.

    Returns:
        The plan.
    """
    rows, wy = _normalised(height, *axis_weights(height, tile_size, overlap, blend))
    cols, wx = _normalised(width, *axis_weights(width, tile_size, overlap, blend))
    th, tw = len(wy[0]), len(wx[0])
    strips = column_strips(cols, tw, width, STRIP_WIDTH)
    windows, strip_of, weight_of = [], [], []
    for k, strip in enumerate(strips):
        for i, row in enumerate(rows):
            for j in strip.tiles:
                windows.append(Window(cols[j], row, tw, th))
                strip_of.append(k)
                weight_of.append((i, j))
    return TilePlan(height, width, strips, windows, strip_of, weight_of, wy, wx)


def _normalised(
    length: int, starts: list[int], weights: list[NDArray[np.float32]]
) -> tuple[list[int], list[NDArray[np.float32]]]:
    """Divide 1-D tile weights by their sum over the tiles covering each pixel.

    Tile weights are outer products over a grid of tiles, so their sum at a
    pixel is the product of the 1-D sums: dividing the 1-D weights makes every
    pixel's 2-D weights sum to one, and blending needs no division per pixel.
    """
    total = np.zeros(length, dtype=np.float64)
    for start, w in zip(starts, weights):
        total[start : start + len(w)] += w
    return starts, [
        (w / total[start : start + len(w)]).astype(np.float32)
        for start, w in zip(starts, weights)
    ]


def forward_tiles(
    model: Callable[[Tensor], Tensor],
    image: Tensor,
    precision: Precision,
    output_kind: OutputKind,
) -> Tensor:
    """Run the model on a batch of tiles; float32 scores, or probabilities.

    Raises:
        ValueError: If the model does not return (B, K, h, w) at the tile size.
    """
    with torch.inference_mode(), autocast(image.device, precision):
        y = model(image)
    if not isinstance(y, Tensor) or y.ndim != 4 or y.shape[0] != image.shape[0]:
        shape = getattr(y, 'shape', type(y).__name__)
        raise ValueError(f'the model must return a (B, K, h, w) tensor, got {shape}')
    if y.shape[2:] != image.shape[2:]:
        raise ValueError(
            f'the model output {tuple(y.shape)} does not have the tile size '
            f'{tuple(image.shape[2:])}; predict_raster needs same-size dense outputs'
        )
    y = y.float()
    return y if output_kind == 'scores' else torch.softmax(y, dim=1)


class Stitcher:
    """Adds tile outputs strip by strip, on their device, and hands on finished rows."""

    def __init__(self, plan: TilePlan, crop: bool, device: torch.device) -> None:
        """Initialise a new Stitcher.

        Args:
            plan: The tiles.
            crop: Copy each tile's core instead of blending.
            device: Where the sums live.
        """
        self.plan, self.crop, self.device = plan, crop, device
        self.weights: dict[tuple[int, int], Tensor | tuple[slice, slice]] = {}
        self.acc: Accumulator | None = None
        self.strip = -1  # strip of acc
        self.written = 0  # rows of the current strip handed on
        self.carries: dict[int, Carry] = {}  # columns strip k shares with k + 1

    def add(
        self, batch: TileBatch, out: Tensor, sink: Callable[[Window, Rows], None]
    ) -> None:
        """Add a batch's outputs (one strip) and pass the rows now final to *sink*."""
        plan = self.plan
        k = plan.strip_of[batch.indices[0]]
        strip = plan.strips[k]
        if self.acc is None or k != self.strip:
            self.acc = Accumulator(out.shape[1], strip.stop - strip.start, self.device)
            self.strip, self.written = k, 0
        for index, window, tile, valid in zip(
            batch.indices, batch.windows, out, batch.valid
        ):
            i, j = plan.weight_of[index]
            weight = self.weights.get((i, j))
            if weight is None:
                weight = self.weights[i, j] = tile_window(
                    plan.wy[i], plan.wx[j], self.crop, self.device
                )
            row, col = int(window.row_off), int(window.col_off) - strip.start
            if isinstance(weight, tuple):  # crop: copy the kept core
                ys, xs = weight
                self.acc.add(
                    row + ys.start, col + xs.start, tile[:, ys, xs], None, valid[ys, xs]
                )
            else:
                self.acc.add(row, col, tile, weight, valid)
        done = plan.final_row(batch.indices[-1])
        stop = (
            done
            if done >= plan.height
            else self.written + (done - self.written) // BLOCKSIZE * BLOCKSIZE
        )
        if stop > self.written:
            self._hand_on(self.acc.pop(self.written, stop), sink)
            self.written = stop

    def _hand_on(self, rows: Rows, sink: Callable[[Window, Rows], None]) -> None:
        """Add the columns carried from the previous strip, keep those for the next, pass the rest."""
        k, row = self.strip, self.written
        strip = self.plan.strips[k]
        values, valid = rows
        if k > 0:
            self.carries[k - 1].add_to(row, rows)
            if row + valid.shape[0] == self.plan.height:
                del self.carries[k - 1]
        n = strip.final - strip.start
        if strip.final < strip.stop:
            carry = self.carries.setdefault(k, Carry())
            carry.put(row, values[:, :, n:], valid[:, n:])
        window = Window(strip.start, row, n, valid.shape[0])
        sink(window, (values[:, :, :n], valid[:, :n]))


class RasterSink:
    """Finishes rows on their device and writes them on a writer thread (one block in flight)."""

    def __init__(
        self,
        writer: RasterWriter,
        output: OutputFormat,
        on_rows: Callable[[Window, Tensor, Tensor], None] | None = None,
    ) -> None:
        """Initialise a new RasterSink.

        Args:
            writer: The (unopened) output.
            output: What is written per pixel.
            on_rows: Called with each window and its blended rows (see
                :func:`predict_raster`).
        """
        self.writer, self.output, self.on_rows = writer, output, on_rows
        self.pending: concurrent.futures.Future[None] | None = None
        self.exit = contextlib.ExitStack()

    def __enter__(self) -> Self:
        """Open the output and start the writer thread."""
        with contextlib.ExitStack() as opening:
            opening.enter_context(self.writer)
            self.pool = opening.enter_context(worker_thread('write'))
            self.exit = opening.pop_all()
        return self

    def __call__(self, window: Window, rows: Rows) -> None:
        """Finish and write rows (the previous write must be done first)."""
        if self.on_rows is not None:
            self.on_rows(window, *rows)
        block = self.output.finish(rows).cpu().numpy()
        if self.pending is not None:
            self.pending.result()
        self.pending = self.pool.submit(self.writer.write, window, block)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        """Wait for the last write, then finish the output, or discard it on an error."""
        if exc is None and self.pending is not None:
            try:
                self.pending.result()
            except BaseException as err:
                if not self.exit.__exit__(type(err), err, err.__traceback__):
                    raise
                return False
        return bool(self.exit.__exit__(exc_type, exc, tb))


def open_output(
    stack: RasterStack,
    output: str | os.PathLike[str],
    fmt: OutputFormat,
    band_names: Sequence[str] | None,
    class_names: Sequence[str] | None,
    cog: bool,
    threads: int | None,
    on_rows: Callable[[Window, Tensor, Tensor], None] | None = None,
) -> RasterSink:
    """The sink writing *fmt* to *output* on the grid of *stack*."""
    channels = fmt.count if fmt.kind != 'classes' else None
    if (
        class_names is not None
        and channels is not None
        and len(class_names) != channels
    ):
        raise ValueError(f'{len(class_names)} class names for {channels} model outputs')
    tags: dict[str, Any] = {'output_kind': fmt.kind}
    if class_names is not None:
        tags['class_names'] = json.dumps(list(class_names))
    prefix = {'scores': 'score', 'probabilities': 'probability'}.get(fmt.kind, 'class')
    names = (
        list(band_names) if band_names is not None
        else ['class'] if fmt.kind == 'classes'
        else list(class_names) if class_names is not None
        else [f'{prefix}_{k}' for k in range(fmt.count)]
    )  # fmt: skip
    writer = RasterWriter(
        output, width=stack.width, height=stack.height, count=fmt.count,
        dtype=fmt.dtype, crs=stack.crs, transform=stack.transform, nodata=fmt.nodata,
        band_names=names, tags=tags, cog=cog, threads=threads,
        scale=None if fmt.scale == 1 else fmt.scale,
    )  # fmt: skip
    return RasterSink(writer, fmt, on_rows)


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
    dtype: OutputDtype | None = None,
    nodata: float | None = None,
    band_names: Sequence[str] | None = None,
    class_names: Sequence[str] | None = None,
    device: str | torch.device = 'cpu',
    precision: Precision | str = '32',
    progress: bool = True,
    cog: bool = True,
    gdal_cache_mb: int | None = 128,
    threads: int | None = None,
    readers: int = 1,
    on_rows: Callable[[Window, Tensor, Tensor], None] | None = None,
) -> Path:
    """Run a dense model over a raster of any size, tile by tile, into a GeoTIFF.

    Along each axis of length ``L``, tiles of size ``T' = min(T, L)`` start at
    ``0, S, 2S, ...`` (stride ``S = T - O`` for the overlap ``O``) and the last
    tile is flush with the raster edge, so every tile lies inside the raster
    and the model's own padding acts at the raster edges as on the whole image.
    ``blend='crop'`` gives each pixel to one tile, cutting in the middle of the
    overlap: every kept pixel is at least ``O // 2`` pixels from an inner tile
    edge, so tiled prediction equals whole-image prediction when ``O // 2`` is
    at least the model's receptive-field radius. ``'linear'``/``'cosine'``
    weight each tile by a separable window ramping over the ``O`` pixels along
    each inner tile edge (the ramps of two neighbours sum to one), which hides
    the seams of models whose tile outputs disagree (large receptive fields,
    attention, normalisation over the tile).

    Memory does not grow with the raster's size beyond one band of pixels
    along a strip edge: tile columns are grouped into vertical strips of about
    :data:`STRIP_WIDTH` pixels, processed one after the other from top to
    bottom; rows become final once no pending tile covers them and are
    streamed to the GeoTIFF in whole 256-pixel blocks; the columns the next
    strip also covers (the overlap, widened to the block grid, at most
    ``overlap + 255`` columns) are carried over to it. Tiles are read ahead
    (:func:`tile_batches`), blended on *device* and written by a writer thread.

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
        blend: 'cosine', 'linear' or 'crop' (see above).
        output_kind: 'scores' (raw outputs), 'probabilities' (softmax over K)
            or 'classes' (argmax of the blended probabilities, uint8).
        dtype: Stored type of scores and probabilities: 'float32' (default),
            'float16', or for probabilities 'uint8' (``round(p * 254)``,
            GDAL scale 1/254, nodata 255).
        nodata: Output nodata (default NaN for floats, 255 for uint8), written
            where any input band marks the pixel invalid (nodata, NaN, mask).
        band_names: Output band descriptions (default: class names or
            ``score_k``/``probability_k``).
        class_names: Class names, stored as the ``class_names`` tag (JSON).
        device: Torch device of the model; blending runs there too.
        precision: '32', '16-mixed' or 'bf16-mixed' (autocast), as in Lightning.
        progress: Show a tqdm progress bar.
        cog: Write a Cloud-Optimized GeoTIFF.
        gdal_cache_mb: Cap on GDAL's block cache while running (see
            :func:`~torchgeo_ext.export.raster.gdal_cache_limit`); None keeps it.
        threads: Compression threads (None: all cores).
        readers: Reading threads (see :func:`tile_batches`).
        on_rows: Called, before they are written, with each window of
            finished rows, their blended outputs (K, h, w) on *device*
            (probabilities for 'probabilities' and 'classes', else scores) and
            their validity (h, w): a pipeline's own statistics or rasters
            come from there, not from re-reading the output.

    Returns:
        The output path.

    Raises:
        ValueError: For inconsistent options or an output of the wrong shape.
    """
    check_tiling(tile_size, overlap, batch_size, blend)
    output_format(output_kind, dtype, 0, nodata)  # the options, before any work
    precision = check_precision(precision)
    dev = torch.device(device)
    with gdal_cache_limit(gdal_cache_mb), open_inputs(inputs) as stack:
        plan = plan_tiles(stack.height, stack.width, tile_size, overlap, blend)
        batches = tile_batches(
            stack,
            plan.windows,
            batch_size,
            groups=plan.strip_of,
            device=dev,
            readers=readers,
        )

        def forward(image: Tensor) -> Tensor:
            return forward_tiles(model, image, precision, output_kind)

        def open_sink(channels: int) -> RasterSink:
            fmt = output_format(output_kind, dtype, channels, nodata)
            return open_output(
                stack, output, fmt, band_names, class_names, cog, threads, on_rows
            )

        bar = tqdm(
            total=len(plan.windows), disable=not progress, desc='predict', unit='tile'
        )
        stitcher = Stitcher(plan, blend == 'crop', dev)
        with eval_mode(model), contextlib.closing(batches), bar:
            return run_tiles(batches, forward, stitcher, open_sink, bar.update)


def run_tiles(
    batches: Iterator[TileBatch],
    forward: Callable[[Tensor], Tensor],
    stitcher: Stitcher,
    open_sink: Callable[[int], RasterSink],
    done: Callable[[int], object],
) -> Path:
    """The loop of :func:`predict_raster`: model, blending, writing, batch by batch.

    Args:
        batches: The tiles (see :func:`tile_batches`).
        forward: The model step (see :func:`forward_tiles`).
        stitcher: Blends outputs into finished rows.
        open_sink: Opens the output for the model's number of channels
            (known from the first batch).
        done: Called with the number of tiles of each finished batch.

    Returns:
        The output path, once written; on an error nothing is left there.
    """
    with contextlib.ExitStack() as run:
        sink: RasterSink | None = None
        for batch in batches:
            out = forward(batch.image)
            if sink is None:
                sink = run.enter_context(open_sink(out.shape[1]))
            stitcher.add(batch, out, sink)
            done(len(batch.indices))
    assert sink is not None  # a raster has at least one tile
    return sink.writer.path
