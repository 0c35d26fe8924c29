"""STAD: small target aware detector for hyperspectral anomaly detection."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from numpy.typing import NDArray
from torch import Tensor, nn

from .bsdm import channel_groups

__all__ = (
    'STADStudent',
    'STADTeacher',
    'saliency_reach',
    'saliency_scores',
    'select_bands',
    'small_target_filter',
    'stad',
    'stad_scores',
    'synthetic_blobs',
)


def _standardise(x: Tensor) -> Tensor:
    """Min-max scale each image of a ``B x C x H x W`` batch to [0, 1]."""
    low = x.amin(dim=(1, 2, 3), keepdim=True)
    high = x.amax(dim=(1, 2, 3), keepdim=True)
    return (x - low) / (high - low).clamp_min(1e-12)


def select_bands(x: Tensor, bands: int) -> Tensor:
    """The authors' band handling: the first ``bands`` bands (reflect-padded if fewer).

    Args:
        x: ``B x C x H x W`` images.
        bands: The model's band count.

    Returns:
        ``B x bands x H x W``.
    """
    c = x.shape[1]
    if c >= bands:
        return x[:, :bands]
    return x[:, channel_groups(c, bands)[0]]


class STADTeacher(nn.Module):
    """Transformer teacher: ``B x C x H x W`` -> one reconstruction per stage."""

    def __init__(
        self,
        in_channels: int = 10,
        stages: int = 3,
        heads: int = 2,
        ffn: int = 1000,
        dropout: float = 0.1,
    ) -> None:
        """Initialise the teacher (defaults: the authors').

        Args:
            in_channels: Bands = token size (divisible by ``heads``).
            stages: Number of encoder stages.
            heads: Attention heads.
            ffn: Feed-forward width.
            dropout: Dropout of attention and feed-forward (training only).
        """
        super().__init__()
        if in_channels % heads:
            raise ValueError(
                f'in_channels ({in_channels}) must be divisible by heads ({heads})'
            )
        self.in_channels = in_channels
        self.stages = nn.ModuleList(
            nn.TransformerEncoderLayer(
                in_channels,
                heads,
                dim_feedforward=ffn,
                dropout=dropout,
                batch_first=True,
                norm_first=False,
            )
            for _ in range(stages)
        )

    def forward(self, x: Tensor) -> list[Tensor]:
        """Reconstruct.

        Args:
            x: ``B x C x H x W`` images (standardised to [0, 1]).

        Returns:
            ``stages`` reconstructions, each ``B x C x H x W``.
        """
        b, c, h, w = x.shape
        tokens = x.flatten(2).transpose(1, 2)  # B x HW x C
        outputs = []
        for stage in self.stages:
            tokens = stage(tokens)
            outputs.append(tokens.transpose(1, 2).reshape(b, c, h, w))
        return outputs


class STADStudent(nn.Module):
    """The authors' convolutional student: one reconstruction per teacher stage."""

    def __init__(
        self, in_channels: int = 10, stages: int = 3, width: int = 100
    ) -> None:
        """Initialise the student.

        Args:
            in_channels: Bands.
            stages: Number of stages (as the teacher's).
            width: Hidden channels (the authors': 100).
        """
        super().__init__()
        self.in_channels = in_channels
        self.stages = nn.ModuleList(
            nn.Sequential(
                nn.Conv2d(in_channels, width, 3, padding=1),
                nn.BatchNorm2d(width),
                nn.ReLU(),
                nn.ConvTranspose2d(width, in_channels, 3, padding=1),
                nn.BatchNorm2d(in_channels),
                nn.ReLU(),
            )
            for _ in range(stages - 1)
        )
        # A per-pixel Linear(C, C), written as the equivalent 1 x 1 convolution.
        self.out = nn.Conv2d(in_channels, in_channels, 1)

    def forward(self, x: Tensor) -> list[Tensor]:
        """Reconstruct.

        Args:
            x: ``B x C x H x W`` images.

        Returns:
            One ``B x C x H x W`` reconstruction per stage.
        """
        outputs = []
        h = x
        for stage in self.stages:
            h = stage(h)
            outputs.append(h)
        outputs.append(self.out(h))
        return outputs


def _grow_blob(area: int, generator: torch.Generator | None) -> list[tuple[int, int]]:
    """A random 4-connected shape of ``area`` pixels grown from (0, 0).

    Each sweep visits the free 4-neighbours of the shape in row-major order
    and adds each with probability 1/2 until the area is reached.
    """
    shape = {(0, 0)}
    while len(shape) < area:
        frontier = sorted(
            {
                (r + dr, c + dc)
                for r, c in shape
                for dr, dc in ((-1, 0), (1, 0), (0, -1), (0, 1))
            }
            - shape
        )
        for point in frontier:
            if (
                len(shape) < area
                and float(torch.rand(1, generator=generator, device='cpu')) < 0.5
            ):
                shape.add(point)
    return sorted(shape)


def _draw(low: int, high: int, generator: torch.Generator | None) -> int:
    """One host-side integer draw in ``[low, high)``."""
    return int(torch.randint(low, high, (1,), generator=generator, device='cpu'))


def synthetic_blobs(
    batch: int,
    height: int,
    width: int,
    *,
    count: tuple[int, int] = (1, 32),
    area: tuple[int, int] = (3, 20),
    cell: int = 9,
    generator: torch.Generator | None = None,
) -> Tensor:
    """The authors' synthetic anomaly masks for training on anomaly-free crops.

    A canvas of ``cell x cell`` cells (at least 9 x 9 cells, 81 x 81 pixels,
    as the authors') gets ``n`` blobs (``n`` uniform in ``count``), each in its
    own random cell at a random position inside it, each a randomly grown
    4-connected shape of ``area`` pixels (uniform in ``area``); the mask is
    the canvas's top-left ``height x width`` corner (so blobs near the far
    edges may be cut or lost, as in theirs).

    Args:
        batch: Number of masks.
        height: Mask height.
        width: Mask width.
        count: Range of blobs per mask (inclusive).
        area: Range of blob areas in pixels (inclusive).
        cell: Cell size in pixels.
        generator: Random generator.

    Returns:
        ``batch x 1 x height x width`` float mask in {0, 1}.
    """
    cells = max(9, -(-max(height, width) // cell))
    size = cells * cell
    # Drawn on the host (a seed gives the same masks on every device).
    mask = torch.zeros(batch, 1, height, width, device='cpu')
    for b in range(batch):
        n = _draw(count[0], count[1] + 1, generator)
        order = torch.randperm(cells * cells, generator=generator, device='cpu')
        slots = order[:n].tolist()
        for slot in slots:
            row_cell, col_cell = divmod(slot, cells)
            r0 = row_cell * cell + _draw(0, cell, generator)
            c0 = col_cell * cell + _draw(0, cell, generator)
            a = _draw(area[0], area[1] + 1, generator)
            for dr, dc in _grow_blob(a, generator):
                r, c = r0 + dr, c0 + dc
                if 0 <= r < min(height, size) and 0 <= c < min(width, size):
                    mask[b, 0, r, c] = 1
    return mask


def bilateral_filter(
    image: Tensor,
    radius: int = 1,
    sigma_color: float = 80.0,
    sigma_space: float = 1.0,
    mode: str | None = None,
) -> Tensor:
    """OpenCV-style bilateral filter with a circular support.

    Neighbours within Euclidean distance ``radius`` are weighted by
    ``exp(-d^2 / 2 sigma_space^2) * exp(-(I_q - I_p)^2 / 2 sigma_color^2)``;
    the border is reflected without repeating the edge (OpenCV's default).

    Args:
        image: ``B x 1 x H x W`` map.
        radius: Support radius in pixels (OpenCV ``d = 2 radius + 1``).
        sigma_color: Range sigma, in the map's units.
        sigma_space: Spatial sigma in pixels.
        mode: Border padding (default: ``'reflect'``, or ``'replicate'`` for
            a map no larger than the radius); a strip of a larger map passes
            the whole map's.

    Returns:
        The filtered map.
    """
    h, w = image.shape[-2:]
    if mode is None:
        mode = border_mode(h, w, radius)
    padded = F.pad(image, (radius,) * 4, mode=mode)
    total = torch.zeros_like(image)
    norm = torch.zeros_like(image)
    for dr in range(-radius, radius + 1):
        for dc in range(-radius, radius + 1):
            d2 = dr * dr + dc * dc
            if d2 > radius * radius:
                continue
            shifted = padded[
                ..., radius + dr : radius + dr + h, radius + dc : radius + dc + w
            ]
            weight = torch.exp(
                -d2 / (2 * sigma_space**2)
                - (shifted - image).square() / (2 * sigma_color**2)
            )
            total = total + weight * shifted
            norm = norm + weight
    return total / norm


def border_mode(height: int, width: int, radius: int = 1) -> str:
    """The bilateral filter's border padding for a map of this size."""
    return 'reflect' if min(height, width) > radius else 'replicate'


def small_target_filter(
    rx_map: Tensor, radius: int = 1, sigma_color: float = 80.0, sigma_space: float = 1.0
) -> Tensor:
    """Small target filter: bilateral-filtered RX map minus its median, clamped at 0.

    Args:
        rx_map: ``B x 1 x H x W`` (or ``H x W``) RX scores.
        radius: Bilateral support radius (the authors': 1, OpenCV ``d=3``).
        sigma_color: Range sigma on the map scaled to [0, 255] (theirs: 80).
        sigma_space: Spatial sigma in pixels (theirs: OpenCV's 1 for 0).

    Returns:
        Filter weights of the input's shape, >= 0 (in [0, 255] units).
    """
    squeeze = rx_map.ndim == 2
    x = rx_map[None, None] if squeeze else rx_map
    x = torch.nan_to_num(x.to(torch.float32), nan=0.0)
    low = x.amin(dim=(2, 3), keepdim=True)
    high = x.amax(dim=(2, 3), keepdim=True)
    x = 255 * (x - low) / (high - low).clamp_min(1e-12)
    smooth = bilateral_filter(x, radius, sigma_color, sigma_space)
    median = smooth.flatten(1).median(dim=1).values.view(-1, 1, 1, 1)
    out = (smooth - median).clamp_min(0)
    return out[0, 0] if squeeze else out


def saliency_scores(
    model: nn.Module, x: Tensor, stf: Tensor, elements: int | None = None
) -> Tensor:
    """Gradient saliency: max over bands of ``|d/dx mean(STF * sum of stage errors)|``.

    Args:
        model: Teacher or student (returns a list of stage reconstructions).
        x: ``B x C x H x W`` standardised images.
        stf: ``B x 1 x H x W`` small target filter weights.
        elements: The mean's denominator (default: the elements of ``x``; a
            strip of a larger image passes the image's).

    Returns:
        ``B x H x W`` saliency.
    """
    with torch.enable_grad():
        inp = x.detach().clone().requires_grad_(True)
        outputs = model(inp)
        error = torch.stack([(out - inp).square() for out in outputs]).sum(dim=0)
        objective = (error * stf).sum() / (elements or error.numel())
        (grad,) = torch.autograd.grad(objective, inp)
    return grad.abs().amax(dim=1)


def stad_scores(
    cube: Tensor | NDArray[Any],
    *,
    model: nn.Module,
    window: int = 64,
    valid_mask: Tensor | NDArray[Any] | None = None,
) -> Tensor:
    """STAD scores of a scene.

    Args:
        cube: ``C x H x W`` scene (its first ``model.in_channels`` bands are used).
        model: A trained teacher or student (see
            :func:`torchgeo_ext.trainers.anomaly.load_stad`).
        window: Side of the tiles the teacher's attention runs over (bounds
            its quadratic cost); the student runs on the whole scene.
        valid_mask: Optional ``H x W`` mask; invalid pixels are zeroed and score NaN.

    Returns:
        ``H x W`` float32 scores.
    """
    from .rx import rx_scores

    model.eval()
    # Everything runs where the model is.
    device = next(model.parameters()).device
    x = torch.as_tensor(cube).to(device=device, dtype=torch.float32)
    _, h, w = x.shape
    valid = torch.isfinite(x).all(dim=0)
    if valid_mask is not None:
        valid &= torch.as_tensor(valid_mask, dtype=torch.bool).to(device)
    x = x.masked_fill(~valid[None], 0.0)
    bands = int(getattr(model, 'in_channels', x.shape[0]))
    aligned = _standardise(select_bands(x[None], bands))
    stf = small_target_filter(rx_scores(aligned[0], valid).nan_to_num(0.0)[None, None])
    if not isinstance(model, STADTeacher):
        window = max(h, w)
    scores = torch.zeros(h, w, device=device)
    for r0 in range(0, h, window):
        for c0 in range(0, w, window):
            tile = aligned[:, :, r0 : r0 + window, c0 : c0 + window]
            weights = stf[:, :, r0 : r0 + window, c0 : c0 + window]
            scores[r0 : r0 + window, c0 : c0 + window] = saliency_scores(
                model, tile, weights
            )[0]
    return scores.masked_fill(~valid, float('nan'))


def saliency_reach(model: nn.Module) -> int | None:
    """How many pixels away an input pixel still changes a pixel's saliency.

    Args:
        model: Teacher or student.

    Returns:
        For the student, twice its convolutions' reach (the gradient goes
        through the errors of the neighbours); None for the teacher, whose
        attention spans its whole tile.
    """
    if isinstance(model, STADStudent):
        return 2 * 2 * len(model.stages)  # two 3 x 3 convolutions per stage
    return None


def stad(in_channels: int = 10, **kwargs: Any) -> STADTeacher:
    """The registry's STAD builder: the teacher, the authors' sizes unless *kwargs* say otherwise.

    Args:
        in_channels: Model band count.
        **kwargs: Further :class:`STADTeacher` arguments.

    Returns:
        The teacher.
    """
    return STADTeacher(in_channels, **kwargs)
