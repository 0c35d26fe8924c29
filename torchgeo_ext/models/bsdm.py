"""BSDM: background suppression diffusion model for hyperspectral anomaly detection."""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from typing import Any, Literal

import torch
import torch.nn.functional as F
from numpy.typing import NDArray
from torch import Tensor, nn

__all__ = (
    'BSDM',
    'GammaSchedule',
    'band_groups',
    'bsdm',
    'bsdm_scores',
    'channel_groups',
    'fit_bsdm',
    'fit_on_scene',
    'normalise_pixels',
    'pseudo_background_noise',
    'sinusoidal_embedding',
    'suppress_background',
    'suppress_groups',
)

#: Scenes with at most this many pixels train on the full batch by default
#: (``batch_size='auto'``), as the authors did.
AUTO_FULL_BATCH = 4096

#: Pixels per training step on larger scenes by default: a 256 x 256 scene
#: then fits in 2 minutes and well under 1 GB on 2 CPU cores
#: (benchmarks/anomaly_scale.md) instead of 12 minutes and 3.3 GB.
AUTO_BATCH = 4096

#: Residual MLP blocks of the paper: (in, hidden, out).
PAPER_BLOCKS: tuple[tuple[int, int, int], ...] = (
    (128, 200, 100),
    (100, 200, 50),
    (50, 100, 50),
    (50, 100, 50),
    (50, 200, 100),
    (100, 200, 128),
)


def sinusoidal_embedding(t: Tensor, dim: int = 128) -> Tensor:
    """Transformer-style sinusoidal embedding of diffusion steps.

    Args:
        t: ``N`` integer or float steps.
        dim: Embedding size (even).

    Returns:
        ``N x dim`` embedding (sines then cosines).
    """
    half = dim // 2
    freqs = torch.exp(
        -math.log(10000.0)
        * torch.arange(half, dtype=torch.float32, device=t.device)
        / half
    )
    angles = t.to(torch.float32)[:, None] * freqs[None, :]
    return torch.cat([angles.sin(), angles.cos()], dim=1)


class GammaSchedule:
    """Linear beta schedule with the coherent (fixed-noise) forward process.

    ``betas[i]``, ``i = 0..T-1``, are the linear betas. For a step ``t``:
    ``alpha_bar[t] = prod_{i<=t} alpha_i`` and
    ``gamma[t] = sum_{s<t} sqrt(beta_s prod_{s<=j<t} alpha_j)``, the
    authors' indexing (``gamma`` accumulates ``t`` noise steps, each scaled by
    the alphas from its own step on; ``alpha_bar`` has one more factor).
    """

    def __init__(
        self, steps: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02
    ) -> None:
        """Initialise the schedule.

        Args:
            steps: Number of diffusion steps T.
            beta_start: First beta.
            beta_end: Last beta.
        """
        self.steps = steps
        # A host-side table: steps read Python floats from it.
        self.betas = torch.linspace(
            beta_start, beta_end, steps, dtype=torch.float64, device='cpu'
        )
        self.alphas = 1 - self.betas
        self.alpha_bar = torch.cumprod(self.alphas, dim=0)
        gamma = torch.zeros(steps + 1, dtype=torch.float64, device='cpu')
        for t in range(1, steps + 1):
            # The sum above as a recursion:
            # gamma_t = sqrt(alpha_{t-1}) (gamma_{t-1} + sqrt(beta_{t-1})).
            gamma[t] = self.alphas[t - 1].sqrt() * (
                gamma[t - 1] + self.betas[t - 1].sqrt()
            )
        self.gamma = gamma

    def sample(self, x0: Tensor, t: int, noise: Tensor) -> Tensor:
        """Closed form ``x_t = sqrt(abar_t) x_0 + gamma_t eps``.

        Args:
            x0: Clean spectra.
            t: Step in ``1..T-1``.
            noise: The fixed pseudo-background noise.

        Returns:
            ``x_t``.
        """
        return float(self.alpha_bar[t].sqrt()) * x0 + float(self.gamma[t]) * noise

    def denoise(self, x: Tensor, t: int, eps: Tensor) -> Tensor:
        """``(x - gamma_t eps) / sqrt(abar_t)``: the clean signal for a noise estimate.

        Args:
            x: Spectra taken to be at step ``t``.
            t: Step.
            eps: Noise estimate.

        Returns:
            The estimate of ``x_0``.
        """
        return (x - float(self.gamma[t]) * eps) / float(self.alpha_bar[t].sqrt())


class StatisticalOffset(nn.Module):
    """Spectrum embedding plus an offset from the pixel's band statistics."""

    def __init__(self, in_channels: int, hidden: int = 512, out: int = 128) -> None:
        """Initialise the module.

        Args:
            in_channels: Band count C.
            hidden: Width of the statistics branch.
            out: Embedding size.
        """
        super().__init__()
        self.in_channels = in_channels
        self.embed = nn.Linear(in_channels, out)
        self.stats1 = nn.Linear(2 * in_channels, hidden)
        self.stats2 = nn.Linear(hidden, out)

    def forward(self, x: Tensor) -> Tensor:
        """Embed ``N x C`` spectra.

        Args:
            x: Spectra.

        Returns:
            ``N x out`` embedding.
        """
        mean = x.mean(dim=1, keepdim=True)
        std = x.std(dim=1, keepdim=True)  # unbiased, as the authors'
        c = self.in_channels
        weight = self.stats1.weight  # hidden x 2C: [mean part | std part]
        # Linear(concat(mean 1_C, std 1_C)) without materialising N x 2C.
        hidden = mean * weight[:, :c].sum(dim=1) + std * weight[:, c:].sum(dim=1)
        hidden = torch.tanh(hidden + self.stats1.bias)
        return self.embed(x) + self.stats2(hidden)


class ResidualBlock(nn.Module):
    """The authors' residual MLP block conditioned on the time embedding."""

    def __init__(self, sizes: tuple[int, int, int], time_dim: int) -> None:
        """Initialise the block.

        Args:
            sizes: (in, hidden, out) widths.
            time_dim: Size of the (projected) time embedding.
        """
        super().__init__()
        d_in, d_hidden, d_out = sizes
        self.norm1 = nn.LayerNorm(d_in)
        self.fc1 = nn.Linear(d_in, d_hidden)
        self.fc2 = nn.Linear(d_hidden, d_out)
        self.time = nn.Linear(time_dim, d_out)
        self.norm2 = nn.LayerNorm(d_out)
        self.fc3 = nn.Linear(d_out, d_out)
        self.skip: nn.Module = (
            nn.Identity() if d_in == d_out else nn.Linear(d_in, d_out)
        )

    def forward(self, x: Tensor, temb: Tensor) -> Tensor:
        """Apply the block.

        Args:
            x: ``N x in`` features.
            temb: ``N x time_dim`` (or ``1 x time_dim``) time embedding.

        Returns:
            ``N x out`` features.
        """
        h = self.fc2(torch.tanh(self.fc1(torch.tanh(self.norm1(x)))))
        h = h + self.time(torch.tanh(temb))
        h = self.fc3(torch.tanh(self.norm2(h)))
        out: Tensor = h + self.skip(x)
        return out


class BSDM(nn.Module):
    """The BSDM per-pixel noise predictor: ``(N x C spectra, N steps) -> N x C noise``."""

    def __init__(
        self,
        in_channels: int,
        embed_dim: int = 128,
        time_dim: int = 128,
        time_hidden: int = 512,
        stats_hidden: int = 512,
        blocks: Sequence[tuple[int, int, int]] = PAPER_BLOCKS,
    ) -> None:
        """Initialise the model (defaults: the paper's sizes).

        Args:
            in_channels: Band count C (any).
            embed_dim: Spectrum embedding size.
            time_dim: Sinusoidal embedding size.
            time_hidden: Projected time embedding size.
            stats_hidden: Width of the statistical offset branch.
            blocks: Residual blocks (in, hidden, out); the first ``in`` and
                the last ``out`` must equal ``embed_dim``.
        """
        super().__init__()
        if blocks[0][0] != embed_dim or blocks[-1][2] != embed_dim:
            raise ValueError('the residual blocks must start and end at embed_dim')
        self.in_channels = in_channels
        self.time_dim = time_dim
        self.offset = StatisticalOffset(in_channels, stats_hidden, embed_dim)
        self.time = nn.Sequential(
            nn.Linear(time_dim, time_hidden),
            nn.Tanh(),
            nn.Linear(time_hidden, time_hidden),
        )
        self.blocks = nn.ModuleList(
            ResidualBlock((b[0], b[1], b[2]), time_hidden) for b in blocks
        )
        self.head = nn.Sequential(nn.Tanh(), nn.Linear(embed_dim, in_channels))

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        """Predict the noise in noisy spectra.

        Args:
            x: ``N x C`` spectra.
            t: ``N`` steps, or one step (shape ``()`` or ``(1,)``) shared by all.

        Returns:
            ``N x C`` predicted noise.
        """
        steps = t.reshape(-1)
        temb = self.time(sinusoidal_embedding(steps, self.time_dim).to(x.dtype))
        h = self.offset(x)
        for block in self.blocks:
            h = block(h, temb)
        out: Tensor = self.head(h)
        return out


def channel_groups(
    bands: int, target: int, generator: torch.Generator | None = None
) -> list[Tensor]:
    """The authors' channel alignment: band indices for a model of ``target`` bands.

    * ``bands == target``: all bands.
    * ``bands < target``: reflect padding (``np.pad(mode='reflect')``: the edge
      band is not repeated), the larger half of the padding on the left.
    * ``target < bands < 2 target``: a sorted random subset of ``target`` bands.
    * ``bands >= 2 target``: ``n = bands // target`` groups cut from a sorted
      random subset of ``n * target`` bands; each group is suppressed
      separately and the results are concatenated.

    Args:
        bands: The scene's band count.
        target: The model's band count.
        generator: Random generator for the band draws.

    Returns:
        One or more index tensors of length ``target``, on the host.
    """
    if bands == target:
        return [torch.arange(bands, device='cpu')]
    if bands < target:
        right = (target - bands) // 2
        left = target - bands - right
        index = torch.arange(-left, bands + right, device='cpu')
        if bands == 1:
            return [torch.zeros(target, dtype=torch.long, device='cpu')]
        period = 2 * (bands - 1)
        index = index.remainder(period)
        return [torch.where(index >= bands, period - index, index)]
    groups = bands // target
    chosen = torch.randperm(bands, generator=generator, device='cpu')
    chosen = chosen[: groups * target]
    chosen = chosen.sort().values
    if groups == 1:
        return [chosen]
    return list(chosen.split(target))


def pseudo_background_noise(
    pixels: Tensor, generator: torch.Generator | None = None
) -> Tensor:
    """One draw of pseudo background noise with the cube's scalar mean and std.

    As the authors: one mean and one unbiased standard deviation over every
    value of the (min-max normalised) cube, not per band.

    Args:
        pixels: ``N x C`` (normalised) spectra of the scene.
        generator: Random generator (for determinism).

    Returns:
        ``N x C`` noise, to be reused at every step and iteration.
    """
    mean = pixels.mean()
    std = pixels.std()
    # Drawn on the host so that a seed gives the same noise on every device.
    z = torch.randn(pixels.shape, generator=generator, dtype=pixels.dtype, device='cpu')
    return mean + std * z.to(pixels.device)


def normalise_cube(cube: Tensor, valid: Tensor) -> Tensor:
    """Global min-max scale of a ``C x H x W`` cube over its valid pixels, as ``N x C``.

    Args:
        cube: The scene.
        valid: ``H x W`` valid pixels.

    Returns:
        ``H*W x C`` pixels in [0, 1] (invalid pixels may fall outside).
    """
    pixels = cube.reshape(cube.shape[0], -1).T
    good = pixels[valid.reshape(-1)]
    return normalise_pixels(pixels, good.min(), good.max())


def normalise_pixels(pixels: Tensor, low: Tensor, high: Tensor) -> Tensor:
    """Min-max scale pixels with a scene's range (``low`` and ``high`` of its valid values).

    Args:
        pixels: Pixels of the scene (any shape).
        low: The scene's smallest valid value.
        high: The scene's largest valid value.

    Returns:
        The scaled pixels.
    """
    return (pixels - low) / (high - low).clamp_min(1e-12)


def fit_bsdm(
    pixels: Tensor,
    *,
    model: BSDM | None = None,
    iterations: int = 500,
    batch_size: int | None = None,
    lr: float = 1e-4,
    min_lr: float = 1e-5,
    t: int = 500,
    schedule: GammaSchedule | None = None,
    seed: int = 0,
    progress: bool = False,
    **model_kwargs: Any,
) -> tuple[BSDM, Tensor]:
    """Train BSDM on a scene's own pixels (unsupervised).

    Args:
        pixels: ``N x C`` normalised spectra (see :func:`bsdm_scores`).
        model: A model to continue training (default: a new :class:`BSDM`).
        iterations: Optimisation steps (paper: 500).
        batch_size: Pixels per step; ``None`` (the authors') uses every
            pixel in every step.
        lr: Initial AdamW learning rate.
        min_lr: Final learning rate of the cosine schedule.
        t: Diffusion step used for training (paper: 500).
        schedule: Noise schedule (default :class:`GammaSchedule`).
        seed: Seed of the noise draw, batches and initialisation.
        progress: Show a progress bar over the steps, with the loss.
        **model_kwargs: Passed to :class:`BSDM` for a new model.

    Returns:
        The trained model (eval mode) and the fixed pseudo-background noise.
    """
    from tqdm import tqdm

    generator = torch.Generator().manual_seed(seed)
    schedule = schedule or GammaSchedule()
    x = pixels.to(torch.float32)
    if model is None:
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            model = BSDM(x.shape[1], **model_kwargs).to(x.device)
    noise = pseudo_background_noise(x, generator)
    target_x = schedule.sample(x, t, noise)
    steps = torch.tensor([t], device=x.device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(
        optimizer, T_max=max(iterations, 1), eta_min=min_lr
    )
    model.train()
    bar = tqdm(
        range(iterations), desc='bsdm training', unit='step', disable=not progress
    )
    for _ in bar:
        if batch_size is not None and x.shape[0] > batch_size:
            index = torch.randint(
                0, x.shape[0], (batch_size,), generator=generator, device='cpu'
            ).to(x.device)
            loss = F.mse_loss(model(target_x[index], steps), noise[index])
        else:
            loss = F.mse_loss(model(target_x, steps), noise)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        scheduler.step()
        if progress:  # .item() waits for the device: only when shown
            bar.set_postfix(loss=f'{loss.item():.4g}')
    model.eval()
    return model, noise


@torch.no_grad()
def suppress_background(
    model: BSDM,
    pixels: Tensor,
    *,
    t: int = 500,
    repeats: int = 10,
    schedule: GammaSchedule | None = None,
    batch_size: int = 65536,
    dtype: torch.dtype = torch.float32,
) -> Tensor:
    """Suppress the background: the scene is treated as ``x_t`` and denoised ``repeats`` times.

    Args:
        model: Trained noise predictor.
        pixels: ``N x C`` normalised spectra (band count of the model).
        t: Diffusion step the scene is taken to be at.
        repeats: Number of suppression steps (paper: 10).
        schedule: Noise schedule (default :class:`GammaSchedule`).
        batch_size: Pixels per forward pass (bounds memory).
        dtype: Precision of the iteration (the authors': float32; float64
            runs a float64 copy of the model).

    Returns:
        ``N x C`` suppressed spectra (``dtype``).
    """
    schedule = schedule or GammaSchedule()
    steps = torch.tensor([t], device=pixels.device)
    net = model if dtype == torch.float32 else copy.deepcopy(model).to(dtype)
    x = pixels.to(dtype)
    for _ in range(repeats):
        eps = torch.cat([net(chunk, steps) for chunk in x.split(batch_size)])
        x = schedule.denoise(x, t, eps)
    return x


def bsdm_scores(
    cube: Tensor | NDArray[Any],
    *,
    valid_mask: Tensor | NDArray[Any] | None = None,
    model: BSDM | None = None,
    iterations: int | None = None,
    batch_size: int | Literal['auto', 'full'] | None = 'auto',
    t: int = 500,
    repeats: int = 10,
    seed: int = 0,
    dtype: torch.dtype = torch.float32,
    device: str | torch.device | None = None,
    progress: bool = False,
    **model_kwargs: Any,
) -> Tensor:
    """BSDM anomaly scores of a scene in one call: fit on the scene, suppress, RX.

    Args:
        cube: ``C x H x W`` scene (any band count).
        valid_mask: Optional ``H x W`` mask of valid pixels (others score NaN).
        model: A trained model (e.g.
            :func:`torchgeo_ext.trainers.anomaly.load_bsdm` of a checkpoint);
            a scene with another band count is aligned to it with
            :func:`channel_groups`.
        iterations: Training steps on the scene (default: 500 from scratch,
            0 when a trained model is given).
        batch_size: Pixels per training step: ``'full'`` (or ``None``) every
            pixel in every step, the authors' setting; ``'auto'`` (default)
            the full batch on scenes of at most :data:`AUTO_FULL_BATCH`
            pixels, else random mini-batches of :data:`AUTO_BATCH` pixels
            (memory and time per step bounded; see the model page for the
            AUC of each); or a number of pixels.
        t: Diffusion step for training and suppression.
        repeats: Suppression steps K.
        seed: Random seed (initialisation, noise, band draws).
        dtype: Precision of the suppression iteration and of RX's input.
        device: Where to fit and suppress (default: the model's, else the cube's).
        progress: Show a progress bar over the training steps, with the loss.
        **model_kwargs: Passed to :class:`BSDM` for a new model.

    Returns:
        ``H x W`` float32 scores, on the cube's device.
    """
    from .rx import rx_scores

    home = torch.as_tensor(cube).device
    x, valid, model = _scene_on_device(cube, valid_mask, model, device)
    c, h, w = x.shape
    pixels = normalise_cube(x, valid)
    groups = band_groups(c, model, seed, x.device)
    model = fit_on_scene(
        pixels[valid.reshape(-1)],
        groups,
        model,
        iterations=iterations,
        batch_size=batch_size,
        t=t,
        seed=seed,
        progress=progress,
        **model_kwargs,
    )
    suppressed = suppress_groups(
        model, pixels, groups, t=t, repeats=repeats, dtype=dtype
    )
    return rx_scores(suppressed.T.reshape(-1, h, w), valid).to(home)


def _scene_on_device(
    cube: Tensor | NDArray[Any],
    valid_mask: Tensor | NDArray[Any] | None,
    model: BSDM | None,
    device: str | torch.device | None,
) -> tuple[Tensor, Tensor, BSDM | None]:
    """The cube (invalid pixels zeroed), its valid pixels and the model, on one device.

    Everything runs where the model is (the cube's device without a model)
    unless ``device`` says otherwise; a given model is copied there.
    """
    if device is None and model is not None:
        device = next(model.parameters()).device
    if device is not None and model is not None:
        model = copy.deepcopy(model).to(device)
    x = torch.as_tensor(cube).to(device=device, dtype=torch.float32)
    valid = torch.isfinite(x).all(dim=0)
    if valid_mask is not None:
        valid &= torch.as_tensor(valid_mask, dtype=torch.bool).to(x.device)
    return x.masked_fill(~valid[None], 0.0), valid, model


def band_groups(
    bands: int, model: BSDM | None, seed: int, device: torch.device
) -> list[Tensor]:
    """The band groups a scene is suppressed in (:func:`channel_groups`, seeded).

    Args:
        bands: The scene's band count.
        model: The trained model, if any (its band count is the target).
        seed: Seed of the band draws.
        device: Where the index tensors go.

    Returns:
        One index tensor per group.
    """
    target = model.in_channels if model is not None else bands
    generator = torch.Generator().manual_seed(seed)
    return [g.to(device) for g in channel_groups(bands, target, generator)]


def fit_on_scene(
    pixels: Tensor,
    groups: list[Tensor],
    model: BSDM | None,
    *,
    iterations: int | None = None,
    batch_size: int | Literal['auto', 'full'] | None = 'auto',
    t: int = 500,
    seed: int = 0,
    progress: bool = False,
    **model_kwargs: Any,
) -> BSDM:
    """The model :func:`bsdm_scores` suppresses with: trained on the scene's pixels.

    Args:
        pixels: ``N x C`` normalised valid pixels (all of the scene, or a sample).
        groups: Band groups (:func:`band_groups`); each group's pixels are
            training pixels of their own.
        model: A trained model to use or continue training (default: a new one).
        iterations: Training steps (default: 500 from scratch, 0 for a given model).
        batch_size: See :func:`bsdm_scores`.
        t: Diffusion step for training.
        seed: Random seed of the training.
        progress: Show a progress bar over the steps.
        **model_kwargs: Passed to :class:`BSDM` for a new model.

    Returns:
        The model (a trained copy; a given model untouched with 0 iterations).
    """
    if iterations is None:
        iterations = 0 if model is not None else 500
    if model is not None and iterations == 0:
        return model
    start = copy.deepcopy(model) if model is not None else None
    train = torch.cat([pixels[:, g] for g in groups])
    fitted, _ = fit_bsdm(
        train,
        model=start,
        iterations=iterations,
        batch_size=training_batch(batch_size, len(train)),
        t=t,
        seed=seed,
        progress=progress,
        **model_kwargs,
    )
    return fitted


def suppress_groups(
    model: BSDM,
    pixels: Tensor,
    groups: list[Tensor],
    *,
    t: int = 500,
    repeats: int = 10,
    dtype: torch.dtype = torch.float32,
    batch_size: int = 65536,
) -> Tensor:
    """Background-suppressed pixels: each band group suppressed, then concatenated.

    Args:
        model: Trained noise predictor.
        pixels: ``N x C`` normalised pixels of the scene (any subset: each
            pixel is suppressed on its own).
        groups: Band groups (:func:`band_groups`).
        t: Diffusion step the scene is taken to be at.
        repeats: Suppression steps K.
        dtype: Precision of the iteration.
        batch_size: Pixels per forward pass.

    Returns:
        ``N x (groups * model bands)`` suppressed spectra.
    """
    parts = [
        suppress_background(
            model,
            pixels[:, g],
            t=t,
            repeats=repeats,
            dtype=dtype,
            batch_size=batch_size,
        )
        for g in groups
    ]
    return torch.cat(parts, dim=1)


def training_batch(
    batch_size: int | Literal['auto', 'full'] | None, pixels: int
) -> int | None:
    """Pixels per training step of :func:`bsdm_scores` (None: the full batch).

    Args:
        batch_size: ``'auto'``, ``'full'``/None or a number of pixels.
        pixels: Training pixels of the scene.

    Returns:
        The mini-batch size, or None for the full batch.
    """
    if batch_size == 'auto':
        return None if pixels <= AUTO_FULL_BATCH else AUTO_BATCH
    if batch_size == 'full' or batch_size is None:
        return None
    return int(batch_size)


def bsdm(in_channels: int = 10, **kwargs: Any) -> BSDM:
    """The registry's BSDM builder: the paper's sizes unless *kwargs* say otherwise.

    Args:
        in_channels: Band count C.
        **kwargs: Further :class:`BSDM` arguments.

    Returns:
        The model.
    """
    return BSDM(in_channels, **kwargs)
