import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics.functional.classification import binary_auroc

from torchgeo_ext.demos.scene import synthetic_anomaly_scene
from torchgeo_ext.models.bsdm import (
    BSDM,
    GammaSchedule,
    ResidualBlock,
    bsdm_scores,
    channel_groups,
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


def test_schedule_matches_authors_formulas() -> None:
    schedule = GammaSchedule()
    betas = np.linspace(1e-4, 0.02, 1000)
    alphas = 1 - betas
    for t in (1, 10, 500):
        # the authors': phi = sqrt(flip(cumprod(flip(alphas[:t]))) * betas[:t])
        phi = np.sqrt(np.flip(np.cumprod(np.flip(alphas[:t]))) * betas[:t])
        assert float(schedule.gamma[t]) == pytest.approx(phi.sum(), rel=1e-12)
        assert float(schedule.alpha_bar[t]) == pytest.approx(
            np.cumprod(alphas)[t], rel=1e-12
        )
    # the suppression gain the issue quotes: gamma_500 / sqrt(abar_500) ~ 63
    gain = float(schedule.gamma[500] / schedule.alpha_bar[500].sqrt())
    assert 60 < gain < 65
    x0 = torch.rand(4, 3, dtype=torch.float64)
    eps = torch.randn(4, 3, dtype=torch.float64)
    torch.testing.assert_close(
        schedule.denoise(schedule.sample(x0, 500, eps), 500, eps), x0
    )


def test_paper_architecture() -> None:
    model = BSDM(276)
    sizes = []
    for block in model.blocks:
        assert isinstance(block, ResidualBlock)
        sizes.append(
            (block.fc1.in_features, block.fc1.out_features, block.fc2.out_features)
        )
        assert block.norm1.normalized_shape == (block.fc1.in_features,)
        assert block.time.in_features == 512
        assert block.fc3.in_features == block.fc3.out_features == block.fc2.out_features
    assert sizes == [
        (128, 200, 100),
        (100, 200, 50),
        (50, 100, 50),
        (50, 100, 50),
        (50, 200, 100),
        (100, 200, 128),
    ]
    assert model.offset.stats1.in_features == 2 * 276
    assert model.offset.stats1.out_features == 512
    assert [type(m) for m in model.time] == [nn.Linear, nn.Tanh, nn.Linear]
    first, last = model.time[0], model.time[2]
    assert isinstance(first, nn.Linear)
    assert isinstance(last, nn.Linear)
    assert (first.in_features, last.out_features) == (128, 512)
    assert isinstance(model.head[0], nn.Tanh)
    assert model.head[1].out_features == 276
    out = model(torch.rand(5, 276), torch.tensor([500]))
    assert out.shape == (5, 276)


def test_residual_block_is_the_authors() -> None:
    torch.manual_seed(0)
    block = ResidualBlock((6, 10, 4), time_dim=8)
    x, temb = torch.randn(3, 6), torch.randn(1, 8)
    ln1 = F.layer_norm(x, (6,), block.norm1.weight, block.norm1.bias)
    h = block.fc2(torch.tanh(block.fc1(torch.tanh(ln1))))
    h = h + block.time(torch.tanh(temb))
    ln2 = F.layer_norm(h, (4,), block.norm2.weight, block.norm2.bias)
    expected = block.fc3(torch.tanh(ln2)) + block.skip(x)
    torch.testing.assert_close(block(x, temb), expected)
    assert isinstance(ResidualBlock((4, 8, 4), 8).skip, nn.Identity)


def test_statistical_offset_equals_literal_concat() -> None:
    model = BSDM(6, **TINY)  # type: ignore[arg-type]
    x = torch.rand(4, 6)
    stats = torch.cat(
        [
            x.mean(1, keepdim=True).expand(4, 6),
            x.std(1, keepdim=True).expand(4, 6),  # unbiased, as the authors'
        ],
        dim=1,
    )
    off = model.offset
    literal = off.embed(x) + off.stats2(torch.tanh(off.stats1(stats)))
    torch.testing.assert_close(off(x), literal)


def test_embedding_and_scalar_noise() -> None:
    emb = sinusoidal_embedding(torch.tensor([0, 500]), 128)
    assert emb.shape == (2, 128)
    assert emb[0, :64].abs().max() == 0
    pixels = torch.rand(20000, 3) * torch.tensor([1.0, 2.0, 3.0])
    noise = pseudo_background_noise(pixels, torch.Generator().manual_seed(0))
    # one scalar mean and std for the whole cube, not per band
    for band in range(3):
        assert float(noise[:, band].mean()) == pytest.approx(
            float(pixels.mean()), abs=0.05
        )
        assert float(noise[:, band].std()) == pytest.approx(
            float(pixels.std()), rel=0.05
        )


def test_channel_groups() -> None:
    gen = torch.Generator().manual_seed(0)
    assert channel_groups(7, 7)[0].tolist() == list(range(7))
    # fewer bands: np.pad(mode='reflect'), the larger half on the left
    for bands, target in ((5, 8), (4, 9), (3, 8)):
        (index,) = channel_groups(bands, target)
        right = (target - bands) // 2
        expected = np.pad(np.arange(bands), (target - bands - right, right), 'reflect')
        assert index.tolist() == expected.tolist()
    # up to twice as many: a sorted random subset
    (subset,) = channel_groups(11, 7, gen)
    assert len(subset) == 7
    assert subset.tolist() == sorted(set(subset.tolist()))
    # more: floor(bands / target) disjoint sorted groups
    groups = channel_groups(23, 7, gen)
    assert len(groups) == 3
    flat = torch.cat(groups).tolist()
    assert flat == sorted(set(flat))
    assert all(len(g) == 7 for g in groups)


def test_fit_and_suppress_shapes() -> None:
    pixels = torch.rand(100, 6)
    model, noise = fit_bsdm(pixels, iterations=2, **TINY)  # type: ignore[arg-type]
    assert noise.shape == pixels.shape
    assert not model.training
    out = suppress_background(model, pixels, repeats=2)
    assert out.shape == pixels.shape
    assert torch.isfinite(out).all()
    out64 = suppress_background(model, pixels, repeats=2, dtype=torch.float64)
    assert out64.dtype == torch.float64
    torch.testing.assert_close(out64.float(), out, rtol=1e-3, atol=1e-3)


def test_bsdm_scores_on_a_scene() -> None:
    cube, truth = synthetic_anomaly_scene(24, 12, abundance=(0.3, 0.5), targets=4)
    scores = bsdm_scores(cube, iterations=30, **TINY)  # type: ignore[arg-type]
    assert scores.shape == (24, 24)
    assert torch.isfinite(scores).all()
    assert auc(scores, truth) > 0.8


def test_bsdm_other_band_count_and_mask() -> None:
    model = BSDM(6, **TINY)  # type: ignore[arg-type]
    cube = torch.rand(13, 6, 5)
    valid = torch.ones(6, 5, dtype=torch.bool)
    valid[0, 0] = False
    # 13 bands on a 6-band model: two random groups suppressed separately
    scores = bsdm_scores(cube, model=model, valid_mask=valid, repeats=2)
    assert scores.shape == (6, 5)
    assert torch.isnan(scores[0, 0])
    assert torch.isfinite(scores[1:]).all()
    fewer = bsdm_scores(cube[:4], model=model, repeats=1)  # reflect-padded 4 -> 6
    assert torch.isfinite(fewer).all()


def test_training_batch_auto_full_and_number() -> None:
    from torchgeo_ext.models.bsdm import AUTO_BATCH, AUTO_FULL_BATCH, training_batch

    assert training_batch('auto', AUTO_FULL_BATCH) is None  # the authors' full batch
    assert training_batch('auto', AUTO_FULL_BATCH + 1) == AUTO_BATCH
    assert training_batch('full', 10**6) is None
    assert training_batch(None, 10**6) is None
    assert training_batch(128, 10**6) == 128
