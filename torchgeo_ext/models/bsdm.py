"""BSDM: background suppression diffusion model for hyperspectral anomaly detection.

Ma, Xie, Li et al., "BSDM: Background Suppression Diffusion Model for
Hyperspectral Anomaly Detection" (2023). A diffusion model learns the
scene's background as *noise*; at inference the scene itself is fed to the
denoiser, which removes the background, and RX on the suppressed cube scores
the anomalies.

Pieces (see ``docs/models/anomaly.md``):

* :class:`BSDM`, the per-pixel denoiser: the statistical offset module
  (each pixel's band mean and band standard deviation, broadcast to C,
  concatenated -> Linear 2C->512 -> tanh -> Linear 512->128, added to a
  Linear C->128 embedding of the spectrum), a sinusoidal time embedding
  (128 -> Linear -> 512), six residual MLP blocks (in, hidden, out) =
  (128,200,100), (100,200,50), (50,100,50) x 2, (50,200,100), (100,200,128),
  and a Linear 128->C predicting the noise.
* :class:`GammaSchedule`: T = 1000 linear betas 1e-4..0.02. The pseudo
  background noise is *one* sample ``eps ~ N(mean(x), std(x))`` (per band)
  drawn once and reused at every step, so the per-step noise terms add
  coherently and the closed form is ``x_t = sqrt(abar_t) x_0 + gamma_t eps``
  with ``gamma_t = sum_{s<=t} sqrt(beta_s) sqrt(abar_t / abar_s)``
  (``gamma_t = sqrt(alpha_t) gamma_{t-1} + sqrt(beta_t)``).
* :func:`fit_bsdm`: unsupervised training on the scene itself, t = 500,
  MSE on the noise, AdamW 1e-4 with cosine decay to 1e-5, 500 iterations.
* :func:`suppress_background`: treat the scene as ``x_500`` and repeat 10
  times ``x <- (x - gamma_t eps_hat(x, t)) / sqrt(abar_t)``; then RX.
* :func:`bsdm_scores`: fit + suppress + RX in one call (the command line's
  ``--method bsdm``).

Band handling: the model works on any band count ``C`` (``in_channels``);
a model trained on one sensor is applied to another by resampling each
spectrum to its band count (:func:`align_bands`, linear interpolation along
the spectral axis), the channel alignment the paper uses for cross-dataset
generalisation. Implementation note: the statistical offset's first layer
acts on ``[m 1_C, s 1_C]``; it is evaluated as ``m W_m 1 + s W_s 1 + b``,
which is the same function with the same parameters at a fraction of the cost.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from numpy.typing import NDArray
from torch import Tensor, nn

__all__ = (
    'BSDM',
    'GammaSchedule',
    'align_bands',
    'bsdm_scores',
    'fit_bsdm',
    'pseudo_background_noise',
    'sinusoidal_embedding',
    'suppress_background',
)

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
        -math.log(10000.0) * torch.arange(half, dtype=torch.float32) / half
    )
    angles = t.to(torch.float32)[:, None] * freqs[None, :].to(t.device)
    return torch.cat([angles.sin(), angles.cos()], dim=1)


class GammaSchedule:
    """Linear beta schedule with the coherent (fixed-noise) forward process."""

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
        # Index 0 is the clean signal: beta_0 = 0, abar_0 = 1, gamma_0 = 0.
        betas = torch.linspace(beta_start, beta_end, steps, dtype=torch.float64)
        self.betas = torch.cat([torch.zeros(1, dtype=torch.float64), betas])
        self.alphas = 1 - self.betas
        self.alpha_bar = torch.cumprod(self.alphas, dim=0)
        gamma = torch.zeros(steps + 1, dtype=torch.float64)
        for t in range(1, steps + 1):
            gamma[t] = self.alphas[t].sqrt() * gamma[t - 1] + self.betas[t].sqrt()
        self.gamma = gamma

    def step(self, x_prev: Tensor, t: int, noise: Tensor) -> Tensor:
        """One forward step ``x_t = sqrt(alpha_t) x_{t-1} + sqrt(beta_t) eps``.

        Args:
            x_prev: ``x_{t-1}``.
            t: Step in ``1..T``.
            noise: The fixed pseudo-background noise.

        Returns:
            ``x_t``.
        """
        return (
            float(self.alphas[t].sqrt()) * x_prev + float(self.betas[t].sqrt()) * noise
        )

    def sample(self, x0: Tensor, t: int, noise: Tensor) -> Tensor:
        """Closed form ``x_t = sqrt(abar_t) x_0 + gamma_t eps``.

        Args:
            x0: Clean spectra.
            t: Step in ``0..T``.
            noise: The fixed pseudo-background noise.

        Returns:
            ``x_t``.
        """
        return float(self.alpha_bar[t].sqrt()) * x0 + float(self.gamma[t]) * noise


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
        std = x.std(dim=1, keepdim=True, unbiased=False)
        c = self.in_channels
        weight = self.stats1.weight  # hidden x 2C: [mean part | std part]
        # Linear(concat(mean 1_C, std 1_C)) without materialising N x 2C.
        hidden = mean * weight[:, :c].sum(dim=1) + std * weight[:, c:].sum(dim=1)
        hidden = torch.tanh(hidden + self.stats1.bias)
        return self.embed(x) + self.stats2(hidden)


class ResidualBlock(nn.Module):
    """Residual MLP block conditioned on the time embedding."""

    def __init__(self, sizes: tuple[int, int, int], time_dim: int) -> None:
        """Initialise the block.

        Args:
            sizes: (in, hidden, out) widths.
            time_dim: Size of the time embedding.
        """
        super().__init__()
        d_in, d_hidden, d_out = sizes
        self.fc1 = nn.Linear(d_in, d_hidden)
        self.time = nn.Linear(time_dim, d_hidden)
        self.fc2 = nn.Linear(d_hidden, d_out)
        self.skip: nn.Module = (
            nn.Identity() if d_in == d_out else nn.Linear(d_in, d_out)
        )
        self.act = nn.SiLU()

    def forward(self, x: Tensor, temb: Tensor) -> Tensor:
        """Apply the block.

        Args:
            x: ``N x in`` features.
            temb: ``N x time_dim`` (or ``1 x time_dim``) time embedding.

        Returns:
            ``N x out`` features.
        """
        h = self.act(self.fc1(x) + self.time(temb))
        return self.fc2(h) + self.skip(x)


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
        self.time = nn.Sequential(nn.Linear(time_dim, time_hidden), nn.SiLU())
        self.blocks = nn.ModuleList(
            ResidualBlock((b[0], b[1], b[2]), time_hidden) for b in blocks
        )
        self.head = nn.Linear(embed_dim, in_channels)

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


def align_bands(x: Tensor, bands: int) -> Tensor:
    """Resample spectra to another band count (linear interpolation, endpoints kept).

    Args:
        x: ``... x C`` spectra.
        bands: Target band count.

    Returns:
        ``... x bands`` spectra (``x`` itself when C already equals ``bands``).
    """
    if x.shape[-1] == bands:
        return x
    shape = x.shape[:-1]
    flat = x.reshape(-1, 1, x.shape[-1])
    out = F.interpolate(flat, size=bands, mode='linear', align_corners=True)
    return out.reshape(*shape, bands)


def pseudo_background_noise(
    pixels: Tensor, generator: torch.Generator | None = None
) -> Tensor:
    """One draw of pseudo background noise ``N(mean(x), std(x))`` per band.

    Args:
        pixels: ``N x C`` (normalised) spectra of the scene.
        generator: Random generator (for determinism).

    Returns:
        ``N x C`` noise, to be reused at every step and iteration.
    """
    mean = pixels.mean(dim=0)
    std = pixels.std(dim=0)
    z = torch.randn(pixels.shape, generator=generator, dtype=pixels.dtype)
    return mean + std * z


def _normalise(cube: Tensor, valid: Tensor) -> Tensor:
    """Min-max scale a cube to [0, 1] over its valid pixels, as ``N x C`` pixels."""
    pixels = cube.reshape(cube.shape[0], -1).T
    good = pixels[valid.reshape(-1)]
    low, high = good.min(), good.max()
    return (pixels - low) / (high - low).clamp_min(1e-12)


def fit_bsdm(
    pixels: Tensor,
    *,
    model: BSDM | None = None,
    iterations: int = 500,
    batch_size: int = 1024,
    lr: float = 1e-4,
    min_lr: float = 1e-5,
    t: int = 500,
    schedule: GammaSchedule | None = None,
    seed: int = 0,
    **model_kwargs: Any,
) -> tuple[BSDM, Tensor]:
    """Train BSDM on a scene's own pixels (unsupervised).

    Args:
        pixels: ``N x C`` normalised spectra (see :func:`bsdm_scores`).
        model: A model to continue training (default: a new :class:`BSDM`).
        iterations: Optimisation steps (paper: 500).
        batch_size: Pixels per step (all pixels when the scene is smaller).
        lr: Initial AdamW learning rate.
        min_lr: Final learning rate of the cosine schedule.
        t: Diffusion step used for training (paper: 500).
        schedule: Noise schedule (default :class:`GammaSchedule`).
        seed: Seed of the noise draw, batches and initialisation.
        **model_kwargs: Passed to :class:`BSDM` for a new model.

    Returns:
        The trained model (eval mode) and the fixed pseudo-background noise.
    """
    generator = torch.Generator().manual_seed(seed)
    schedule = schedule or GammaSchedule()
    x = pixels.to(torch.float32)
    if model is None:
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            model = BSDM(x.shape[1], **model_kwargs)
    noise = pseudo_background_noise(x, generator)
    target_x = schedule.sample(x, t, noise)
    steps = torch.tensor([t])
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(
        optimizer, T_max=max(iterations, 1), eta_min=min_lr
    )
    model.train()
    for _ in range(iterations):
        if x.shape[0] > batch_size:
            index = torch.randint(0, x.shape[0], (batch_size,), generator=generator)
        else:
            index = torch.arange(x.shape[0])
        loss = F.mse_loss(model(target_x[index], steps), noise[index])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        scheduler.step()
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
) -> Tensor:
    """Suppress the background: the scene is treated as ``x_t`` and denoised ``repeats`` times.

    Args:
        model: Trained noise predictor.
        pixels: ``N x C`` normalised spectra (band count aligned to the model).
        t: Diffusion step the scene is taken to be at.
        repeats: Number of suppression steps (paper: 10).
        schedule: Noise schedule (default :class:`GammaSchedule`).
        batch_size: Pixels per forward pass (bounds memory).

    Returns:
        ``N x C`` suppressed spectra.
    """
    schedule = schedule or GammaSchedule()
    gamma = float(schedule.gamma[t])
    scale = float(schedule.alpha_bar[t].sqrt())
    steps = torch.tensor([t])
    x = pixels.to(torch.float32)
    for _ in range(repeats):
        eps = torch.cat([model(chunk, steps) for chunk in x.split(batch_size)])
        x = (x - gamma * eps) / scale
    return x


def bsdm_scores(
    cube: Tensor | NDArray[Any],
    *,
    valid_mask: Tensor | NDArray[Any] | None = None,
    checkpoint: str | os.PathLike[str] | None = None,
    model: BSDM | None = None,
    iterations: int | None = None,
    batch_size: int = 1024,
    t: int = 500,
    repeats: int = 10,
    seed: int = 0,
    **model_kwargs: Any,
) -> Tensor:
    """BSDM anomaly scores of a scene in one call: fit on the scene, suppress, RX.

    Args:
        cube: ``C x H x W`` scene (any band count).
        valid_mask: Optional ``H x W`` mask of valid pixels (others score NaN).
        checkpoint: A checkpoint of :class:`torchgeo_ext.trainers.anomaly.AnomalyDetectionTask`
            with a BSDM model, used as the starting point (and, with
            ``iterations=0``, as is).
        model: A model to start from instead of a checkpoint.
        iterations: Training steps on the scene (default: 500 from scratch,
            0 when a trained model is given).
        batch_size: Pixels per training step.
        t: Diffusion step for training and suppression.
        repeats: Suppression steps.
        seed: Random seed.
        **model_kwargs: Passed to :class:`BSDM` for a new model.

    Returns:
        ``H x W`` float32 scores.
    """
    from .rx import rx_scores

    x = torch.as_tensor(cube).to(torch.float32)
    c, h, w = x.shape
    valid = torch.isfinite(x).all(dim=0)
    if valid_mask is not None:
        valid &= torch.as_tensor(valid_mask, dtype=torch.bool)
    x = torch.where(valid[None], x, torch.zeros(()))
    if checkpoint is not None and model is None:
        model = load_bsdm(checkpoint)
    if iterations is None:
        iterations = 0 if model is not None else 500
    pixels = _normalise(x, valid)
    bands = model.in_channels if model is not None else c
    aligned = align_bands(pixels, bands)
    if iterations > 0 or model is None:
        model, _ = fit_bsdm(
            aligned[valid.reshape(-1)],
            model=model,
            iterations=iterations,
            batch_size=batch_size,
            t=t,
            seed=seed,
            **model_kwargs,
        )
    suppressed = suppress_background(model, aligned, t=t, repeats=repeats)
    cube_out = suppressed.T.reshape(bands, h, w)
    return rx_scores(cube_out, valid)


def load_bsdm(checkpoint: str | os.PathLike[str]) -> BSDM:
    """The BSDM model of an anomaly-task checkpoint.

    Args:
        checkpoint: Checkpoint of :class:`torchgeo_ext.trainers.anomaly.AnomalyDetectionTask`.

    Returns:
        The model, in eval mode.

    Raises:
        InvalidInputError: If the checkpoint holds no BSDM model.
    """
    from ..errors import InvalidInputError
    from ..trainers.base import load_task

    task = load_task(checkpoint)
    model = getattr(task, 'model', None)
    if not isinstance(model, BSDM):
        raise InvalidInputError(checkpoint, 'not a BSDM checkpoint (model is not BSDM)')
    model.eval()
    return model
