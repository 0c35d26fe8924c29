import numpy as np
import pytest
import torch
from torchmetrics.functional.classification import binary_auroc

from torchgeo_ext.demo_scene import synthetic_anomaly_scene
from torchgeo_ext.models.bsdm import (
    BSDM,
    GammaSchedule,
    ResidualBlock,
    align_bands,
    bsdm_scores,
    fit_bsdm,
    pseudo_background_noise,
    sinusoidal_embedding,
    suppress_background,
)

TINY = {
    'embed_dim': 16,
    'time_dim': 8,
    'time_hidden': 32,
    'stats_hidden': 32,
    'blocks': [(16, 32, 16), (16, 32, 16)],
}


def auc(scores: torch.Tensor, truth: np.ndarray) -> float:
    values, ranks = torch.unique(scores.flatten(), return_inverse=True)
    probs = ranks.double() / max(len(values) - 1, 1)
    return float(binary_auroc(probs, torch.from_numpy(truth).flatten().long()))


def test_forward_process_matches_closed_form() -> None:
    schedule = GammaSchedule()
    gen = torch.Generator().manual_seed(0)
    x0 = torch.rand(20, 7, generator=gen, dtype=torch.float64)
    noise = torch.randn(20, 7, generator=gen, dtype=torch.float64)
    x = x0
    for t in range(1, 501):
        x = schedule.step(x, t, noise)
        if t in (1, 10, 250, 500):
            torch.testing.assert_close(x, schedule.sample(x0, t, noise))
    # gamma_t = sum_s sqrt(beta_s) sqrt(abar_t / abar_s), and it exceeds sqrt(1 - abar_t)
    t = 500
    s = torch.arange(1, t + 1)
    explicit = (
        schedule.betas[s].sqrt()
        * (schedule.alpha_bar[t] / schedule.alpha_bar[s]).sqrt()
    ).sum()
    torch.testing.assert_close(schedule.gamma[t], explicit)
    assert schedule.gamma[t] > (1 - schedule.alpha_bar[t]).sqrt()
    assert schedule.betas[1] == pytest.approx(1e-4)
    assert schedule.betas[1000] == pytest.approx(0.02)


def test_paper_architecture() -> None:
    model = BSDM(276)
    sizes = []
    for block in model.blocks:
        assert isinstance(block, ResidualBlock)
        sizes.append(
            (block.fc1.in_features, block.fc1.out_features, block.fc2.out_features)
        )
    assert (
        sizes
        == [
            (128, 200, 100),
            (100, 200, 50),
            (50, 100, 50),
            (50, 100, 50),
            (50, 200, 100),
            (100, 200, 128),
        ]
        == [
            (128, 200, 100),
            (100, 200, 50),
            (50, 100, 50),
            (50, 100, 50),
            (50, 200, 100),
            (100, 200, 128),
        ]
    )
    assert model.offset.stats1.in_features == 2 * 276
    assert model.offset.stats1.out_features == 512
    assert model.time[0].in_features == 128
    assert model.time[0].out_features == 512
    out = model(torch.rand(5, 276), torch.tensor([500]))
    assert out.shape == (5, 276)


def test_statistical_offset_equals_literal_concat() -> None:
    model = BSDM(6, **TINY)  # type: ignore[arg-type]
    x = torch.rand(4, 6)
    stats = torch.cat(
        [
            x.mean(1, keepdim=True).expand(4, 6),
            x.std(1, keepdim=True, unbiased=False).expand(4, 6),
        ],
        dim=1,
    )
    off = model.offset
    literal = off.embed(x) + off.stats2(torch.tanh(off.stats1(stats)))
    torch.testing.assert_close(off(x), literal)


def test_embedding_and_noise() -> None:
    emb = sinusoidal_embedding(torch.tensor([0, 500]), 128)
    assert emb.shape == (2, 128)
    assert emb[0, :64].abs().max() == 0
    pixels = torch.rand(5000, 3) * torch.tensor([1.0, 2.0, 3.0])
    noise = pseudo_background_noise(pixels, torch.Generator().manual_seed(0))
    torch.testing.assert_close(noise.mean(0), pixels.mean(0), atol=0.05, rtol=0.05)
    torch.testing.assert_close(noise.std(0), pixels.std(0), atol=0.05, rtol=0.05)


def test_align_bands() -> None:
    x = torch.linspace(0, 1, 11).expand(3, 11)
    out = align_bands(x, 21)
    assert out.shape == (3, 21)
    torch.testing.assert_close(out[0], torch.linspace(0, 1, 21))
    assert align_bands(x, 11) is x


def test_fit_and_suppress_shapes() -> None:
    pixels = torch.rand(100, 6)
    model, noise = fit_bsdm(pixels, iterations=2, batch_size=32, **TINY)  # type: ignore[arg-type]
    assert noise.shape == pixels.shape
    assert not model.training
    out = suppress_background(model, pixels, repeats=2)
    assert out.shape == pixels.shape
    assert torch.isfinite(out).all()


def test_bsdm_finds_anomalies() -> None:
    cube, truth = synthetic_anomaly_scene(24, 12, abundance=(0.2, 0.4), targets=4)
    scores = bsdm_scores(cube, iterations=150, batch_size=256, **TINY)  # type: ignore[arg-type]
    assert scores.shape == (24, 24)
    assert auc(scores, truth) > 0.9


def test_bsdm_other_band_count_and_mask() -> None:
    model = BSDM(8, **TINY)  # type: ignore[arg-type]
    cube = torch.rand(13, 6, 5)
    valid = torch.ones(6, 5, dtype=torch.bool)
    valid[0, 0] = False
    scores = bsdm_scores(cube, model=model, valid_mask=valid, repeats=2)
    assert scores.shape == (6, 5)
    assert torch.isnan(scores[0, 0])
    assert torch.isfinite(scores[1:]).all()
