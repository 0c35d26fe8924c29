"""SAP: low-rank representation with a self-supervised anomaly prior (Liu et al.)."""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from numpy.typing import NDArray
from torch import Tensor, nn

__all__ = (
    'AnomalyPrior',
    'SAPBackground',
    'anomaly_norms',
    'background_dictionary',
    'fit_background',
    'fit_prior',
    'lrr_admm',
    'polygon_mask',
    'prior_input',
    'prior_loss',
    'prior_reach',
    'prism_pseudo_anomalies',
    'sap_prior',
    'sap_scores',
    'scale_scene',
)


class AnomalyPrior(nn.Module):
    """Per-pixel anomaly evidence of a residual cube, for any band count.

    Each band goes through the same two 3 x 3 convolutions (weights shared
    over bands, so the band count is free); the band responses are pooled
    (mean and max over bands, plus each pixel's residual norm) and two more
    3 x 3 convolutions give one logit per pixel. The image-level logit of the
    pretext classification is the mean of the top ``top_fraction`` pixel
    logits (:meth:`image_logits`).
    """

    def __init__(self, features: int = 8, top_fraction: float = 0.02) -> None:
        """Initialise a new AnomalyPrior.

        Args:
            features: Channels of the shared per-band convolutions.
            top_fraction: Fraction of pixels whose logits make the image logit.
        """
        super().__init__()
        self.features = features
        self.top_fraction = top_fraction
        self.band = nn.Sequential(
            nn.Conv2d(1, features, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(features, features, 3, padding=1),
        )
        self.head = nn.Sequential(
            nn.Conv2d(2 * features + 1, 2 * features, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(2 * features, 1, 3, padding=1),
        )

    def forward(self, x: Tensor) -> Tensor:
        """Pixel logits.

        Args:
            x: ``B x C x H x W`` residual cubes (see :func:`prior_input`).

        Returns:
            ``B x H x W`` logits, higher for anomalous pixels.
        """
        b, c, h, w = x.shape
        per_band = self.band(x.reshape(b * c, 1, h, w)).reshape(b, c, -1, h, w)
        norm = x.pow(2).mean(dim=1, keepdim=True).sqrt()
        pooled = torch.cat([per_band.mean(dim=1), per_band.amax(dim=1), norm], dim=1)
        logits: Tensor = self.head(pooled)[:, 0]
        return logits

    def image_logits(self, pixel_logits: Tensor) -> Tensor:
        """Image-level logits: mean of each image's top pixel logits.

        Args:
            pixel_logits: ``B x H x W``.

        Returns:
            ``B`` logits.
        """
        flat = pixel_logits.flatten(1)
        k = max(1, math.ceil(self.top_fraction * flat.shape[1]))
        return flat.topk(k, dim=1).values.mean(dim=1)


def sap_prior(**kwargs: Any) -> AnomalyPrior:
    """The SAP prior network at this library's default size.

    Args:
        **kwargs: Passed to :class:`AnomalyPrior`.

    Returns:
        The network.
    """
    return AnomalyPrior(**kwargs)


def polygon_mask(height: int, width: int, vertices: Tensor) -> Tensor:
    """Pixels whose centres lie inside a polygon (even-odd rule).

    Args:
        height: Mask height.
        width: Mask width.
        vertices: ``V x 2`` ``(row, col)`` vertices in pixel-centre coordinates.

    Returns:
        ``H x W`` boolean mask.
    """
    device = vertices.device
    rows = torch.arange(height, dtype=torch.float64, device=device)[:, None]
    cols = torch.arange(width, dtype=torch.float64, device=device)[None, :]
    rows, cols = rows.expand(height, width), cols.expand(height, width)
    v = vertices.to(torch.float64)
    r0, c0 = v[:, 0], v[:, 1]
    r1, c1 = v.roll(-1, dims=0)[:, 0], v.roll(-1, dims=0)[:, 1]
    # An edge crosses the horizontal ray to the right of the point.
    straddles = (r0[:, None, None] > rows) != (r1[:, None, None] > rows)
    t = (rows - r0[:, None, None]) / (r1 - r0).where(r1 != r0, 1.0)[:, None, None]
    crossing = c0[:, None, None] + t * (c1 - c0)[:, None, None]
    hits = straddles & (cols < crossing)
    return hits.sum(dim=0) % 2 == 1


def _random_polygon(
    height: int, width: int, radius: tuple[float, float], generator: torch.Generator
) -> Tensor:
    """A random star-shaped polygon (3-8 vertices) around a random centre (CPU)."""
    cpu = torch.device('cpu')
    n = int(torch.randint(3, 9, (1,), generator=generator, device=cpu))
    unit = torch.rand(2, generator=generator, device=cpu)
    centre = unit * torch.tensor([height - 1.0, width - 1.0], device=cpu)
    angles = torch.rand(n, generator=generator, device=cpu) * 2 * math.pi
    angles = angles.sort().values
    size = radius[0] + (radius[1] - radius[0]) * float(
        torch.rand(1, generator=generator, device=cpu)
    )
    reach = size * (0.5 + 0.5 * torch.rand(n, generator=generator, device=cpu))
    return centre + torch.stack([reach * angles.sin(), reach * angles.cos()], dim=1)


def prism_pseudo_anomalies(
    images: Tensor,
    *,
    count: tuple[int, int] = (1, 3),
    radius: tuple[float, float] = (0.8, 4.0),
    abundance: tuple[float, float] = (0.1, 1.0),
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor]:
    """Copies of images with pseudo-anomaly prisms.

    A prism is a random polygon base (3-8 vertices, star-shaped around a
    random centre, radius uniform in ``radius``; at least its centre pixel)
    times a random contiguous band interval (start and length uniform). Inside
    it the spectrum becomes ``(1 - a) x + a s`` with ``s`` the spectrum of a
    random pixel of the same image and ``a`` uniform in ``abundance``.

    Args:
        images: ``B x C x H x W`` anomaly-free images.
        count: Range of prisms per image (inclusive).
        radius: Range of the polygons' radii in pixels.
        abundance: Range of the mixing fraction ``a``.
        generator: Random generator.

    Returns:
        The altered copies (``B x C x H x W``) and the prisms' footprints
        (``B x H x W`` boolean).
    """
    gen = generator if generator is not None else torch.Generator().manual_seed(0)
    out = images.clone()
    b, c, h, w = images.shape
    footprint = torch.zeros(b, h, w, dtype=torch.bool, device=images.device)

    def draw(low: int, high: int) -> int:
        return int(torch.randint(low, high, (1,), generator=gen, device='cpu'))

    for i in range(b):
        for _ in range(draw(count[0], count[1] + 1)):
            vertices = _random_polygon(h, w, radius, gen)
            base = polygon_mask(h, w, vertices)
            centre = vertices.mean(dim=0).round().long()
            base[centre[0].clamp(0, h - 1), centre[1].clamp(0, w - 1)] = True
            base = base.to(images.device)
            length = draw(1, c + 1)
            start = draw(0, c - length + 1)
            source = draw(0, h * w)
            spectrum = images[i].reshape(c, -1)[start : start + length, source]
            a = abundance[0] + (abundance[1] - abundance[0]) * float(
                torch.rand(1, generator=gen, device='cpu')
            )
            band = out[i, start : start + length]
            mixed = (1 - a) * band + a * spectrum[:, None, None].to(band)
            out[i, start : start + length] = torch.where(base[None], mixed, band)
            footprint[i] |= base
    return out, footprint


def prior_input(images: Tensor, rank: int = 3) -> Tensor:
    """The residual cubes the prior sees in training: images minus their rank-r background.

    Each image's pixels are centred and projected off their own top ``rank``
    principal components, then divided by the median pixel norm of the
    residual (the same scale-free standardisation :func:`lrr_admm` applies
    to its residual).

    Args:
        images: ``B x C x H x W``.
        rank: Principal components removed.

    Returns:
        ``B x C x H x W`` standardised residuals.
    """
    b, c, h, w = images.shape
    pixels = images.reshape(b, c, -1).transpose(1, 2).to(torch.float64)
    centred = pixels - pixels.mean(dim=1, keepdim=True)
    r = min(rank, c - 1, h * w - 1)
    if r > 0:
        _, _, vh = torch.linalg.svd(centred, full_matrices=False)
        basis = vh[:, :r].transpose(1, 2)  # B x C x r
        centred = centred - centred @ basis @ basis.transpose(1, 2)
    residual = centred.transpose(1, 2).reshape(b, c, h, w)
    return _standardise_residual(residual).to(images.dtype)


def _standardise_residual(residual: Tensor) -> Tensor:
    """Divide ``B x C x H x W`` residuals by each cube's median pixel norm."""
    norms = residual.pow(2).sum(dim=1).sqrt().flatten(1)
    scale = norms.median(dim=1).values.clamp_min(1e-12)
    return residual / scale[:, None, None, None]


def _random_crops(
    tiles: Sequence[Tensor], size: int, count: int, gen: torch.Generator
) -> Tensor:
    """``count x C x size x size`` random crops of a ``C x H x W`` scene or of tiles."""
    if len(tiles) > 1:  # a random tile per crop, then a crop of it
        which = torch.randint(0, len(tiles), (count,), generator=gen, device='cpu')
        return torch.cat(
            [_random_crops([tiles[i]], size, 1, gen) for i in which.tolist()]
        )
    scene = tiles[0]
    _, h, w = scene.shape
    rows = torch.randint(0, h - size + 1, (count,), generator=gen, device='cpu')
    cols = torch.randint(0, w - size + 1, (count,), generator=gen, device='cpu')
    return torch.stack(
        [
            scene[:, r : r + size, c : c + size]
            for r, c in zip(rows.tolist(), cols.tolist(), strict=True)
        ]
    )


def prior_loss(
    prior: AnomalyPrior, clean: Tensor, generator: torch.Generator, rank: int = 3
) -> Tensor:
    """The pretext loss on a batch of anomaly-free images.

    Binary cross-entropy of the image logits: each image (label 0) against
    its copy with prisms (label 1).

    Args:
        prior: The network.
        clean: ``B x C x H x W`` anomaly-free images.
        generator: Random generator of the prisms.
        rank: Principal components removed by :func:`prior_input`.

    Returns:
        The scalar loss.
    """
    altered, _ = prism_pseudo_anomalies(clean, generator=generator)
    inputs = prior_input(torch.cat([clean, altered]), rank)
    labels = torch.zeros(2 * len(clean), dtype=inputs.dtype, device=inputs.device)
    labels[len(clean) :] = 1
    logits = prior.image_logits(prior(inputs))
    return F.binary_cross_entropy_with_logits(logits, labels)


def fit_prior(
    scene: Tensor | Sequence[Tensor],
    *,
    prior: AnomalyPrior | None = None,
    steps: int = 200,
    batch_size: int = 8,
    crop: int = 16,
    lr: float = 1e-3,
    rank: int = 3,
    seed: int = 0,
) -> AnomalyPrior:
    """Train (or fine-tune) the prior self-supervised on one scene.

    Each step draws ``batch_size`` random crops of the scene, makes their
    prism copies and takes one Adam step on :func:`prior_loss`.

    Args:
        scene: ``C x H x W`` scene, already scaled (invalid pixels zeroed), or
            tiles of one (each crop from a random tile).
        prior: Network to fine-tune (a new :class:`AnomalyPrior` if None).
        steps: Optimisation steps.
        batch_size: Crops per step (each with its prism copy).
        crop: Crop side (capped at the scene's sides).
        lr: Adam learning rate.
        rank: Principal components removed by :func:`prior_input`.
        seed: Random seed (initialisation, crops, prisms).

    Returns:
        The trained network, in eval mode.
    """
    gen = torch.Generator().manual_seed(seed)
    tiles = [scene] if isinstance(scene, Tensor) else list(scene)
    if prior is None:
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            prior = AnomalyPrior().to(tiles[0].device)
    size = min(crop, *(min(tile.shape[1:]) for tile in tiles))
    optimizer = torch.optim.Adam(prior.parameters(), lr=lr)
    prior.train()
    for _ in range(steps):
        loss = prior_loss(prior, _random_crops(tiles, size, batch_size, gen), gen, rank)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return prior.eval()


def _kmeans(pixels: Tensor, k: int, iterations: int, gen: torch.Generator) -> Tensor:
    """Cluster labels of ``N x C`` CPU pixels (k-means++ seeding, Lloyd iterations)."""
    n = len(pixels)
    centres = pixels[torch.randint(0, n, (1,), generator=gen, device='cpu')]
    for _ in range(1, k):
        d = torch.cdist(pixels, centres).min(dim=1).values.pow(2)
        if float(d.sum()) <= 0:
            break
        pick = torch.multinomial(d / d.sum(), 1, generator=gen)
        centres = torch.cat([centres, pixels[pick]])
    labels = torch.cdist(pixels, centres).argmin(dim=1)
    for _ in range(iterations):
        for j in range(len(centres)):
            members = pixels[labels == j]
            if len(members):
                centres[j] = members.mean(dim=0)
        labels = torch.cdist(pixels, centres).argmin(dim=1)
    return labels


def background_dictionary(
    pixels: Tensor,
    *,
    clusters: int = 10,
    atoms: int = 20,
    exclude: Tensor | None = None,
    seed: int = 0,
) -> Tensor:
    """A background dictionary from clustered, purified pixels.

    The candidate pixels (all, or those not in ``exclude``) are clustered
    with k-means; inside each cluster the ``atoms`` pixels of lowest
    Mahalanobis distance to the cluster (a ridge-regularised cluster
    covariance) are kept. This is the first purification; the second is the
    caller's ``exclude`` (see :func:`sap_scores`). Clusters of fewer than
    ``max(2, 1 %)`` of the candidates are dropped (likely anomalies); others
    smaller than ``atoms`` give all their pixels.

    Args:
        pixels: ``N x C`` pixels.
        clusters: Number of k-means clusters.
        atoms: Atoms kept per cluster.
        exclude: Optional ``N`` boolean mask of pixels never used.
        seed: Random seed of the k-means seeding.

    Returns:
        ``C x M`` dictionary (``M <= clusters * atoms``).
    """
    candidates = pixels if exclude is None else pixels[~exclude]
    gen = torch.Generator().manual_seed(seed)
    # Clustering on the CPU (its random seeding uses a CPU generator).
    labels = _kmeans(candidates.cpu(), min(clusters, len(candidates)), 10, gen)
    labels = labels.to(candidates.device)
    ids, sizes = labels.unique(return_counts=True)
    # Tiny clusters are more likely anomalies than background: dropped.
    smallest = max(2, math.ceil(0.01 * len(candidates)))
    if bool((sizes >= smallest).any()):
        ids = ids[sizes >= smallest]
    chosen = []
    c = pixels.shape[1]
    for j in ids.tolist():
        members = candidates[labels == j]
        if len(members) <= atoms:
            chosen.append(members)
            continue
        centred = members - members.mean(dim=0)
        cov = centred.T @ centred / (len(members) - 1)
        ridge = 1e-6 * max(float(cov.diagonal().mean()), 1e-12)
        eye = torch.eye(c, dtype=cov.dtype, device=cov.device)
        inv = torch.linalg.pinv(cov + ridge * eye)
        distance = ((centred @ inv) * centred).sum(dim=1)
        chosen.append(members[distance.argsort()[:atoms]])
    return torch.cat(chosen).T


def _singular_value_threshold(matrix: Tensor, tau: float) -> Tensor:
    """Proximal step of ``tau`` times the nuclear norm."""
    u, s, vh = torch.linalg.svd(matrix, full_matrices=False)
    return (u * (s - tau).clamp_min(0)) @ vh


def _prior_shrinkage(
    residual: Tensor, prior: AnomalyPrior, shape: tuple[int, int], keep: Tensor
) -> Tensor:
    """The learned prior's proximal step on the anomaly part (``C x N`` valid columns).

    The network reads the standardised residual cube; its anomaly probability
    ``a`` lowers each column's shrinkage threshold
    ``(1 - a) * median column norm`` (a background pixel shrinks by the
    typical residual norm, a confident anomaly not at all).
    """
    c = residual.shape[0]
    h, w = shape
    cube = torch.zeros(c, h * w, dtype=torch.float32, device=residual.device)
    cube[:, keep] = residual.to(torch.float32)
    with torch.no_grad():
        logits = prior(_standardise_residual(cube.reshape(1, c, h, w)))[0]
    probability = logits.sigmoid().reshape(-1)[keep].to(residual)
    norms = residual.norm(dim=0)
    tau = (1 - probability) * norms.median()
    return residual * (1 - tau / norms.clamp_min(1e-12)).clamp_min(0)


def lrr_admm(
    pixels: Tensor,
    dictionary: Tensor,
    prior: AnomalyPrior,
    shape: tuple[int, int],
    keep: Tensor,
    *,
    iterations: int = 50,
    mu: float = 1e-2,
    rho: float = 1.1,
    mu_max: float = 1e6,
    tol: float = 1e-6,
) -> tuple[Tensor, Tensor]:
    """Solve ``min ||Z||_* + R(E)`` s.t. ``X = D Z + E`` by inexact ALM.

    ``Z`` is split as ``Z = J``; each iteration updates ``J`` (singular value
    thresholding), ``Z`` (a linear solve), ``E`` (the learned prior's
    proximal step, :func:`_prior_shrinkage`) and the multipliers, and grows
    the penalty ``mu`` by ``rho``.

    Args:
        pixels: ``C x N`` valid pixels ``X``.
        dictionary: ``C x M`` background dictionary ``D``.
        prior: The trained prior network.
        shape: ``(H, W)`` of the scene.
        keep: ``H*W`` boolean mask of the valid pixels (the columns of ``X``).
        iterations: Maximum iterations.
        mu: Initial penalty.
        rho: Penalty growth per iteration.
        mu_max: Penalty cap.
        tol: Stop when both constraint residuals (relative to ``||X||``) are below.

    Returns:
        ``Z`` (``M x N``) and ``E`` (``C x N``).
    """
    x, d = pixels.to(torch.float64), dictionary.to(torch.float64)
    m, n = d.shape[1], x.shape[1]
    z = torch.zeros(m, n, dtype=x.dtype, device=x.device)
    e = torch.zeros_like(x)
    y1, y2 = torch.zeros_like(x), torch.zeros_like(z)
    eye = torch.eye(m, dtype=x.dtype, device=x.device)
    gram_inv = torch.linalg.inv(eye + d.T @ d)
    scale = max(float(x.norm()), 1e-12)
    for _ in range(iterations):
        j = _singular_value_threshold(z + y2 / mu, 1 / mu)
        z = gram_inv @ (d.T @ (x - e) + j + (d.T @ y1 - y2) / mu)
        e = _prior_shrinkage(x - d @ z + y1 / mu, prior, shape, keep)
        gap_x = x - d @ z - e
        gap_z = z - j
        y1 = y1 + mu * gap_x
        y2 = y2 + mu * gap_z
        mu = min(rho * mu, mu_max)
        if max(float(gap_x.norm()), float(gap_z.norm())) / scale < tol:
            break
    return z, e


def sap_scores(
    cube: Tensor | NDArray[Any],
    *,
    valid_mask: Tensor | NDArray[Any] | None = None,
    prior: AnomalyPrior | None = None,
    fit_steps: int | None = None,
    clusters: int = 10,
    atoms: int = 20,
    purge: float = 0.05,
    iterations: int = 50,
    seed: int = 0,
) -> Tensor:
    """SAP anomaly scores of a scene.

    1. Min-max scale the scene over its valid pixels (:func:`scale_scene`).
    2. Fit the background (:func:`fit_background`): the prior, the given
       (pre-trained) network fine-tuned for ``fit_steps`` (default 0), or a
       new one trained on the scene itself (default 200 steps); and the
       dual-purified dictionary.
    3. The score is each pixel's anomaly norm ``||e_i||`` of the LRR with
       that dictionary (:func:`anomaly_norms`).

    Args:
        cube: ``C x H x W`` scene.
        valid_mask: Optional ``H x W`` valid pixels (others score NaN).
        prior: A pre-trained prior (e.g. from
            :func:`torchgeo_ext.trainers.sap.load_sap_prior`).
        fit_steps: Self-supervised steps on the scene (see above).
        clusters: k-means clusters of the dictionary.
        atoms: Atoms per cluster.
        purge: Fraction of pixels the second purification removes.
        iterations: ALM iterations per pass.
        seed: Random seed (prior training, k-means seeding).

    Returns:
        ``H x W`` float32 scores.

    Raises:
        ValueError: If the cube is not ``C x H x W`` or ``purge`` is outside [0, 1).
    """
    x = torch.as_tensor(cube).to(torch.float32)
    if x.ndim != 3:
        raise ValueError(f'expected a C x H x W cube, got shape {tuple(x.shape)}')
    # A given prior scores on its own device (as the other anomaly models).
    weights = [] if prior is None else list(prior.parameters())
    if weights:
        x = x.to(weights[0].device)
    c, h, w = x.shape
    valid = torch.isfinite(x).all(dim=0)
    if valid_mask is not None:
        valid &= torch.as_tensor(valid_mask, dtype=torch.bool).to(x.device)
    keep = valid.reshape(-1)
    scores = torch.full((h * w,), float('nan'), device=x.device)
    if int(keep.sum()) < 2:
        _check_purge(purge)
        return scores.reshape(h, w)
    good = x.reshape(c, -1)[:, keep]
    scene = scale_scene(x, valid, good.min(), good.max())
    background = fit_background(
        [(scene, valid)],
        prior=prior,
        fit_steps=fit_steps,
        clusters=clusters,
        atoms=atoms,
        purge=purge,
        iterations=iterations,
        seed=seed,
    )
    norms = anomaly_norms(scene, valid, background, iterations)
    scores[keep] = norms.to(torch.float32)
    return scores.reshape(h, w)


def _check_purge(purge: float) -> None:
    if not 0 <= purge < 1:
        raise ValueError(f'purge must be in [0, 1), got {purge}')


def scale_scene(cube: Tensor, valid: Tensor, low: Tensor, high: Tensor) -> Tensor:
    """A scene (or a window of it) min-max scaled with the scene's range, 0 where invalid.

    Args:
        cube: ``C x H x W`` pixels.
        valid: ``H x W`` valid pixels.
        low: The scene's smallest valid value.
        high: The scene's largest valid value.

    Returns:
        ``C x H x W`` scaled pixels.
    """
    scaled = (cube - low) / (high - low).clamp_min(1e-12)
    return scaled.masked_fill(~valid[None], 0.0)


@dataclass(frozen=True)
class SAPBackground:
    """What SAP fits on a scene: the prior network and the background dictionary.

    Attributes:
        prior: The trained prior (eval mode).
        dictionary: ``C x M`` dual-purified background dictionary (float64).
    """

    prior: AnomalyPrior
    dictionary: Tensor


def fit_background(
    tiles: Sequence[tuple[Tensor, Tensor]],
    *,
    prior: AnomalyPrior | None = None,
    fit_steps: int | None = None,
    clusters: int = 10,
    atoms: int = 20,
    purge: float = 0.05,
    iterations: int = 50,
    seed: int = 0,
) -> SAPBackground:
    """Fit SAP's prior and dual-purified dictionary on a scene or on tiles sampled from it.

    The prior is trained (or fine-tuned) on random crops of the tiles
    (:func:`fit_prior`). The dictionary: clusters purified by their
    Mahalanobis distances (:func:`background_dictionary`), an LRR pass on
    each tile, then the ``purge`` fraction of pixels with the largest
    anomaly norms is excluded and the dictionary rebuilt from the rest.

    Args:
        tiles: ``(scene, valid)`` pairs: ``C x h x w`` scaled pixels
            (:func:`scale_scene`) and ``h x w`` valid pixels; one pair is
            the whole scene.
        prior: A pre-trained prior.
        fit_steps: Self-supervised steps (default: 0 with a prior, else 200).
        clusters: k-means clusters of the dictionary.
        atoms: Atoms per cluster.
        purge: Fraction of pixels the second purification removes.
        iterations: ALM iterations of the LRR pass.
        seed: Random seed (prior training, k-means seeding).

    Returns:
        The fitted background.

    Raises:
        ValueError: If ``purge`` is outside [0, 1).
    """
    _check_purge(purge)
    steps = fit_steps if fit_steps is not None else (0 if prior is not None else 200)
    if steps > 0 or prior is None:
        start = copy.deepcopy(prior) if prior is not None else None
        scenes = [scene for scene, _ in tiles]
        prior = fit_prior(scenes, prior=start, steps=steps, seed=seed)
    prior.eval()
    columns = torch.cat(
        [
            scene.reshape(len(scene), -1)[:, valid.reshape(-1)].T
            for scene, valid in tiles
        ]
    ).to(torch.float64)
    first = background_dictionary(columns, clusters=clusters, atoms=atoms, seed=seed)
    cut = int(purge * len(columns))
    if cut == 0:
        return SAPBackground(prior, first)
    background = SAPBackground(prior, first)
    norms = torch.cat(
        [anomaly_norms(scene, valid, background, iterations) for scene, valid in tiles]
    )
    exclude = torch.zeros(len(norms), dtype=torch.bool, device=norms.device)
    exclude[norms.argsort(descending=True)[:cut]] = True
    second = background_dictionary(
        columns, clusters=clusters, atoms=atoms, exclude=exclude, seed=seed
    )
    return SAPBackground(prior, second)


def anomaly_norms(
    scene: Tensor, valid: Tensor, background: SAPBackground, iterations: int = 50
) -> Tensor:
    """The anomaly norms ``||e_i||`` of a scene's (or window's) valid pixels, by LRR.

    Args:
        scene: ``C x h x w`` scaled pixels (:func:`scale_scene`).
        valid: ``h x w`` valid pixels.
        background: The fitted prior and dictionary.
        iterations: ALM iterations.

    Returns:
        One norm per valid pixel, in raster order (float64).
    """
    c, h, w = scene.shape
    keep = valid.reshape(-1)
    if not bool(keep.any()):
        return torch.zeros(0, dtype=torch.float64, device=scene.device)
    x = scene.reshape(c, -1)[:, keep].to(torch.float64)
    _, e = lrr_admm(
        x, background.dictionary, background.prior, (h, w), keep, iterations=iterations
    )
    return e.norm(dim=0)


def prior_reach(prior: AnomalyPrior) -> int:
    """How many pixels away an input pixel still changes the prior's output at a pixel."""
    return sum(
        (int(m.kernel_size[0]) - 1) // 2
        for m in prior.modules()
        if isinstance(m, nn.Conv2d)
    )
