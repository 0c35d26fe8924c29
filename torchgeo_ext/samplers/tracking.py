"""Template/search pair sampling for training single-object trackers."""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from typing import Any, Protocol

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import Dataset, Sampler

Sample = dict[str, Any]


class _BoxedSequence(Protocol):
    boxes: Tensor

    def __len__(self) -> int: ...


class TrackingDataset(Protocol):
    """What the pair sampler needs from a tracking dataset."""

    @property
    def sequences(self) -> Sequence[_BoxedSequence]:
        """Sequences with ``boxes`` (N x 4 ``x, y, w, h``) and a length."""
        ...

    def load_frame(self, sequence: int, frame: int) -> Tensor:
        """Read frame ``frame`` of sequence ``sequence`` (C x H x W)."""
        ...


def valid_frames(boxes: Tensor) -> Tensor:
    """Indices of frames whose box is finite with positive size.

    Args:
        boxes: N x 4 ``x, y, w, h``.

    Returns:
        int64 indices.
    """
    ok = torch.isfinite(boxes).all(dim=1) & (boxes[:, 2] > 0) & (boxes[:, 3] > 0)
    return torch.nonzero(ok).flatten()


def _jittered_window(
    box: tuple[float, float, float, float],
    factor: float,
    center_jitter: float,
    scale_jitter: float,
    generator: torch.Generator | None,
) -> tuple[int, int, int]:
    """The square window of :func:`crop_around_box`: origin ``x0, y0`` and side."""
    x, y, w, h = box
    cx, cy = x + w / 2, y + h / 2
    jw, jh = w, h
    if scale_jitter > 0:
        jw, jh = (
            float(v)
            for v in torch.tensor([w, h], dtype=torch.float64)
            * torch.exp(
                torch.randn(2, generator=generator, dtype=torch.float64) * scale_jitter
            )
        )
    if center_jitter > 0:
        shift = (torch.rand(2, generator=generator, dtype=torch.float64) - 0.5) * (
            math.sqrt(jw * jh) * center_jitter
        )
        cx, cy = cx + float(shift[0]), cy + float(shift[1])
    side = max(1, math.ceil(math.sqrt(jw * jh) * factor))
    return math.floor(cx - side / 2 + 0.5), math.floor(cy - side / 2 + 0.5), side


def _cut_and_resize(
    image: Tensor, x0: int, y0: int, side: int, output_size: int
) -> Tensor:
    """The window of ``image`` (zeros outside the frame) resized to ``output_size``."""
    height, width = image.shape[-2:]
    window = image.new_zeros((image.shape[0], side, side))
    sx0, sy0 = max(x0, 0), max(y0, 0)
    sx1, sy1 = min(x0 + side, width), min(y0 + side, height)
    if sx1 > sx0 and sy1 > sy0:
        window[:, sy0 - y0 : sy1 - y0, sx0 - x0 : sx1 - x0] = image[:, sy0:sy1, sx0:sx1]
    if side == output_size:
        return window
    return F.interpolate(
        window[None].float(),
        size=(output_size, output_size),
        mode='bilinear',
        align_corners=False,
        antialias=side > output_size,
    )[0].to(image.dtype)


def crop_around_box(
    image: Tensor,
    box: Tensor,
    factor: float,
    output_size: int,
    center_jitter: float = 0.0,
    scale_jitter: float = 0.0,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """Crop a square window around a box, with context and jitter.

    For a box ``x, y, w, h`` (pixel edges; pixel ``i`` covers ``[i, i + 1)``),
    the jittered size is ``(w, h) * exp(N(0, 1) * scale_jitter)`` and the
    jittered centre ``(x + w/2, y + h/2) + (U(0, 1) - 0.5) * sqrt(w' h') *
    center_jitter``. The window has integer side ``S = ceil(sqrt(w' h') *
    factor)`` and integer origin ``round(centre - S/2)``; it is resized from
    ``S`` to ``output_size`` pixels, so a box maps to ``(box - origin) *
    output_size / S``.

    Args:
        image: C x H x W frame.
        box: ``x, y, w, h`` target box in frame pixels.
        factor: Window side relative to ``sqrt(w * h)`` (context amount).
        output_size: Side of the returned crop.
        center_jitter: Maximum centre shift relative to ``sqrt(w * h)``
            (the shift is uniform in ``±center_jitter / 2``).
        scale_jitter: Standard deviation of the log-scale jitter.
        generator: Random generator.

    Returns:
        The C x output_size x output_size crop (zeros outside the frame), the
        box as ``x1, y1, x2, y2`` in crop pixels, and the window as
        ``x1, y1, x2, y2`` in frame pixels.
    """
    box = box.to(torch.float64)
    x, y, w, h = (float(v) for v in box)
    x0, y0, side = _jittered_window(
        (x, y, w, h), factor, center_jitter, scale_jitter, generator
    )
    crop = _cut_and_resize(image, x0, y0, side, output_size)
    scale = output_size / side
    crop_box = torch.tensor(
        [
            (x - x0) * scale,
            (y - y0) * scale,
            (x + w - x0) * scale,
            (y + h - y0) * scale,
        ],
        dtype=torch.float32,
    )
    frame_window = torch.tensor([x0, y0, x0 + side, y0 + side], dtype=torch.float32)
    return crop, crop_box, frame_window


class TrackingPairSampler(Sampler[tuple[int, int, int]]):
    """Sample ``(sequence, template_frame, search_frame)`` triples.

    Each draw picks a sequence uniformly among those with a valid box, a
    template frame uniformly among its frames with a valid box, and a search
    frame uniformly among the valid frames at most ``max_gap`` frames away
    (the template frame itself only when no other frame qualifies).
    """

    def __init__(
        self,
        dataset: TrackingDataset,
        max_gap: int = 100,
        length: int | None = None,
        generator: torch.Generator | None = None,
    ) -> None:
        """Initialise a new TrackingPairSampler.

        Args:
            dataset: A dataset with ``sequences`` (each with ``boxes``).
            max_gap: Largest allowed ``|search_frame - template_frame|``.
            length: Pairs per epoch (default: number of frames with a box).
            generator: Random generator.

        Raises:
            ValueError: If ``max_gap`` is negative or no sequence has a box.
        """
        if max_gap < 0:
            raise ValueError(f'max_gap must be >= 0, got {max_gap}')
        self.max_gap = max_gap
        self.generator = generator
        self.valid = [valid_frames(seq.boxes[: len(seq)]) for seq in dataset.sequences]
        self.usable = [i for i, v in enumerate(self.valid) if len(v)]
        if not self.usable:
            raise ValueError('no sequence has a frame with a valid box')
        self.length = length if length is not None else sum(len(v) for v in self.valid)

    def __len__(self) -> int:
        """Number of pairs per epoch."""
        return self.length

    def _randint(self, high: int) -> int:
        return int(torch.randint(high, (1,), generator=self.generator))

    def __iter__(self) -> Iterator[tuple[int, int, int]]:
        """Yield ``(sequence, template_frame, search_frame)`` triples."""
        for _ in range(self.length):
            seq = self.usable[self._randint(len(self.usable))]
            frames = self.valid[seq]
            template = int(frames[self._randint(len(frames))])
            near = frames[(frames - template).abs() <= self.max_gap]
            others = near[near != template]
            pool = others if len(others) else near
            search = int(pool[self._randint(len(pool))])
            yield seq, template, search


class TrackingPairDataset(Dataset[Sample]):
    """Template and search crops for a ``(sequence, template, search)`` triple.

    Samples have ``template`` (float32 C x t x t), ``template_bbox_xyxy``
    (float32 1 x 4, template-crop pixels), ``search`` (float32 C x s x s),
    ``search_bbox_xyxy`` (float32 1 x 4, search-crop pixels), ``label``
    (int64 (1,), 0), and ``sequence``, ``template_frame``, ``search_frame``
    (int64 indices), plus ``template_window``/``search_window`` (the crop
    windows ``x1, y1, x2, y2`` in frame pixels).

    Crops are square windows around the target of side ``sqrt(w * h) *
    factor`` (context), centred on the target after random centre and scale
    jitter, resized to a fixed size and zero-padded outside the frame
    (:func:`crop_around_box`). Index it with the triples of
    :class:`TrackingPairSampler`::

        pairs = TrackingPairDataset(hotc, template_size=128, search_size=256)
        loader = DataLoader(pairs, sampler=TrackingPairSampler(hotc, max_gap=100),
                            batch_size=16)
    """

    def __init__(
        self,
        dataset: TrackingDataset,
        template_size: int = 128,
        search_size: int = 256,
        template_factor: float = 2.0,
        search_factor: float = 4.0,
        center_jitter: tuple[float, float] = (0.0, 3.0),
        scale_jitter: tuple[float, float] = (0.0, 0.25),
        generator: torch.Generator | None = None,
    ) -> None:
        """Initialise a new TrackingPairDataset.

        Args:
            dataset: A dataset with ``sequences`` and ``load_frame``.
            template_size: Side of the template crop.
            search_size: Side of the search crop.
            template_factor: Template context (window side / sqrt(w h)).
            search_factor: Search context (window side / sqrt(w h)).
            center_jitter: Centre jitter of the template and search crops.
            scale_jitter: Log-scale jitter of the template and search crops.
            generator: Random generator for the jitter.
        """
        self.dataset = dataset
        self.template_size = template_size
        self.search_size = search_size
        self.template_factor = template_factor
        self.search_factor = search_factor
        self.center_jitter = center_jitter
        self.scale_jitter = scale_jitter
        self.generator = generator

    def __len__(self) -> int:
        """Number of frames of the underlying dataset (pairs are drawn by the sampler)."""
        return sum(len(seq) for seq in self.dataset.sequences)

    def __getitem__(self, index: tuple[int, int, int]) -> Sample:
        """Crop the template and search frames of a triple.

        Args:
            index: ``(sequence, template_frame, search_frame)``.

        Returns:
            The pair sample.
        """
        seq, t_frame, s_frame = index
        boxes = self.dataset.sequences[seq].boxes
        out: Sample = {
            'sequence': torch.tensor(seq),
            'template_frame': torch.tensor(t_frame),
            'search_frame': torch.tensor(s_frame),
            'label': torch.zeros(1, dtype=torch.int64),
        }
        for name, frame, size, factor, i in (
            ('template', t_frame, self.template_size, self.template_factor, 0),
            ('search', s_frame, self.search_size, self.search_factor, 1),
        ):
            box = boxes[frame]
            if not (torch.isfinite(box).all() and box[2] > 0 and box[3] > 0):
                raise ValueError(f'frame {frame} of sequence {seq} has no valid box')
            crop, crop_box, window = crop_around_box(
                self.dataset.load_frame(seq, frame),
                box,
                factor,
                size,
                self.center_jitter[i],
                self.scale_jitter[i],
                self.generator,
            )
            out[name] = crop
            out[f'{name}_bbox_xyxy'] = crop_box[None]
            out[f'{name}_window'] = window
        return out
