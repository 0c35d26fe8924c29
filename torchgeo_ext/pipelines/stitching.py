"""Blending tile outputs into finished raster rows, on the model's device."""

from __future__ import annotations

import collections
import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from numpy.typing import NDArray
from torch import Tensor

__all__ = [
    'Accumulator',
    'Carry',
    'OutputFormat',
    'channel_argmax',
    'output_format',
    'tile_window',
]

OutputKind = Literal['scores', 'probabilities', 'classes']
OutputDtype = Literal['float32', 'float16', 'uint8']

#: uint8 probabilities store ``round(p * PROBABILITY_STEPS)``; 255 is nodata.
PROBABILITY_STEPS = 254

#: Rows of a strip: blended values (K, h, w) and validity (h, w).
type Rows = tuple[Tensor, Tensor]


@dataclass(frozen=True)
class OutputFormat:
    """What is written per pixel.

    Attributes:
        kind: 'scores', 'probabilities' or 'classes'.
        dtype: Stored pixel type.
        count: Bands written.
        nodata: Value written where the input is invalid.
        scale: Stored value times *scale* is the value (uint8 probabilities).
    """

    kind: OutputKind
    dtype: OutputDtype
    count: int
    nodata: float
    scale: float = 1.0

    def finish(self, rows: Rows) -> Tensor:
        """Fill nodata and convert blended rows, on their device, into new memory.

        Args:
            rows: Blended values and validity of some rows.

        Returns:
            The (count, h, w) values to write, in :attr:`dtype`.
        """
        values, valid = rows
        invalid = ~valid
        if self.kind == 'classes':
            ids = channel_argmax(values)[1]
            return ids.masked_fill_(invalid, int(self.nodata))[None]
        if self.dtype == 'uint8':
            steps = (values * PROBABILITY_STEPS).round_().clamp_(0, PROBABILITY_STEPS)
            return steps.to(torch.uint8).masked_fill_(invalid, int(self.nodata))
        dtype = getattr(torch, self.dtype)
        nodata = torch.tensor(self.nodata, dtype=dtype, device=values.device)
        return torch.where(valid, values.to(dtype), nodata)


def channel_argmax(values: Tensor) -> tuple[Tensor, Tensor]:
    """The largest of K channels at each pixel and its index (uint8; first on ties).

    A loop over the few channels, one pass over the pixels each: torch's
    ``argmax(dim=0)`` over a strided band of rows was 20x slower on the CPU.

    Args:
        values: (K, h, w) values, K <= 256.

    Returns:
        The (h, w) maxima and the (h, w) uint8 channel indices.
    """
    best = values[0].clone()
    ids = torch.zeros(best.shape, dtype=torch.uint8, device=values.device)
    for k in range(1, values.shape[0]):
        better = values[k] > best
        ids.masked_fill_(better, k)
        torch.maximum(best, values[k], out=best)
    return best, ids


def output_format(
    kind: OutputKind, dtype: OutputDtype | None, channels: int, nodata: float | None
) -> OutputFormat:
    """Check and complete the output options for a model with *channels* outputs.

    Args:
        kind: 'scores' (raw outputs), 'probabilities' (softmax) or 'classes'.
        dtype: 'float32', 'float16' or, for probabilities, 'uint8' (steps of
            1/254, 255 nodata). None: float32, or uint8 for classes.
        channels: Model output channels ``K``.
        nodata: Nodata value (None: NaN for floats, 255 for uint8).

    Returns:
        The format.

    Raises:
        ValueError: For a combination that cannot be stored.
    """
    if kind not in ('scores', 'probabilities', 'classes'):
        raise ValueError(f'unknown output_kind {kind!r}')
    if kind == 'classes':
        if dtype not in (None, 'uint8'):
            raise ValueError(f'classes are stored as uint8, not {dtype}')
        if channels > 255:
            raise ValueError(f'{channels} classes do not fit uint8 class ids')
        out = 255.0 if nodata is None else nodata
        if 0 <= out < channels:
            raise ValueError(f'nodata {out} is a class id')
        return OutputFormat('classes', 'uint8', 1, out)
    dtype = dtype or 'float32'
    if dtype not in ('float32', 'float16', 'uint8'):
        raise ValueError(
            f"output dtype must be 'float32', 'float16' or 'uint8', got {dtype!r}"
        )
    if dtype == 'uint8':
        if kind != 'probabilities':
            raise ValueError(
                'uint8 output holds probabilities only (scores are unbounded)'
            )
        if nodata not in (None, 255):
            raise ValueError('uint8 probabilities use 255 as nodata')
        return OutputFormat(kind, dtype, channels, 255.0, 1 / PROBABILITY_STEPS)
    out = math.nan if nodata is None else nodata
    if not math.isnan(out) and abs(out) > float(np.finfo(dtype).max):
        raise ValueError(f'nodata {out} does not fit {dtype}')
    return OutputFormat(kind, dtype, channels, out)


class Carry:
    """Blended columns a strip shares with the next one, kept by row range.

    One strip appends the shared columns of each finished row range and the
    next takes them back, in the same row order.
    """

    def __init__(self) -> None:
        """Initialise an empty carry."""
        self.chunks: collections.deque[tuple[int, Rows]] = collections.deque()

    def put(self, row: int, values: Tensor, valid: Tensor) -> None:
        """Keep rows ``[row, row + h)`` of the shared columns."""
        self.chunks.append((row, (values.clone(), valid.clone())))

    def add_to(self, row: int, rows: Rows) -> None:
        """Add the carried rows ``[row, row + h)`` into the first columns of *rows*."""
        values, valid = rows
        done, height = 0, valid.shape[0]
        while done < height:
            start, (c_values, c_valid) = self.chunks[0]
            lo = row + done - start
            take = min(c_valid.shape[0] - lo, height - done)
            ys, cols = slice(done, done + take), c_valid.shape[1]
            values[:, ys, :cols] += c_values[:, lo : lo + take]
            valid[ys, :cols] |= c_valid[lo : lo + take]
            done += take
            if lo + take == c_valid.shape[0]:
                self.chunks.popleft()


class Accumulator:
    """Blended tile outputs for a band of raster rows of one strip.

    Tile weights come normalised (they sum to one at every pixel), so the
    sums are the blended values. Rows live in a buffer from :attr:`top` on;
    popped rows are dropped by moving :attr:`top`, and the live rows move to
    the buffer's start only when it is full (amortised: one copy per buffer).
    """

    def __init__(self, channels: int, width: int, device: torch.device) -> None:
        """Initialise an empty band of rows.

        Args:
            channels: Output channels.
            width: Strip width in pixels.
            device: Where the sums live (the model's device).
        """
        self.channels, self.width, self.device = channels, width, device
        self.base = 0  # raster row of buffer row top
        self.top = 0
        self.used = 0  # live rows touched so far, from top
        self.values = torch.zeros((channels, 0, width), device=device)
        self.valid = torch.zeros((0, width), dtype=torch.bool, device=device)

    def _ensure(self, rows: int) -> None:
        """Make live rows ``[0, rows)`` addressable."""
        self.used = max(self.used, rows)
        if self.top + rows <= self.valid.shape[0]:
            return
        size = max(self.valid.shape[0], 2 * rows)  # room to pop for a while
        values = torch.zeros((self.channels, size, self.width), device=self.device)
        valid = torch.zeros((size, self.width), dtype=torch.bool, device=self.device)
        live = slice(self.top, self.top + self.used)
        have = min(self.used, self.valid.shape[0] - self.top)
        values[:, :have] = self.values[:, live][:, :have]
        valid[:have] = self.valid[live][:have]
        self.values, self.valid, self.top = values, valid, 0

    def add(
        self, row: int, col: int, out: Tensor, weight: Tensor | None, valid: Tensor
    ) -> None:
        """Add one tile output at raster *row*, strip column *col*.

        Args:
            row: Raster row of the tile's first row.
            col: Column of the tile in the strip.
            out: (K, h, w) tile output.
            weight: (h, w) normalised blending weights, or None to copy the
                tile (crop: *out* and *valid* are then the tile's kept core).
            valid: (h, w) validity of the tile's pixels.
        """
        t_h, t_w = out.shape[1:]
        r = row - self.base
        self._ensure(r + t_h)
        ys, xs = slice(self.top + r, self.top + r + t_h), slice(col, col + t_w)
        self.valid[ys, xs] = valid  # every tile reads the same validity
        if weight is None:
            self.values[:, ys, xs] = out
        else:
            self.values[:, ys, xs].addcmul_(out, weight)

    def pop(self, start: int, stop: int) -> Rows:
        """Raster rows ``[start, stop)``, then drop all rows before *stop*.

        The rows are views of the buffer, valid until the next :meth:`add`.
        """
        i0, i1 = start - self.base, stop - self.base
        self._ensure(i1)
        rows = (
            self.values[:, self.top + i0 : self.top + i1],
            self.valid[self.top + i0 : self.top + i1],
        )
        # the buffer's rows past the live ones are zero: fresh rows start there
        self.top += i1
        self.used = max(self.used - i1, 0)
        self.base = stop
        return rows


def tile_window(
    wy: NDArray[np.float32], wx: NDArray[np.float32], crop: bool, device: torch.device
) -> Tensor | tuple[slice, slice]:
    """The 2-D weights of a tile on *device*, or the (rows, columns) it keeps under crop."""
    if not crop:
        return torch.outer(torch.from_numpy(wy), torch.from_numpy(wx)).to(device)
    nz_r, nz_c = np.flatnonzero(wy), np.flatnonzero(wx)
    return slice(int(nz_r[0]), int(nz_r[-1]) + 1), slice(
        int(nz_c[0]), int(nz_c[-1]) + 1
    )
