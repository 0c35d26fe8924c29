import pytest
import torch

from torchgeo_ext.demos.scene import synthetic_anomaly_scene
from torchgeo_ext.metrics.anomaly import auc_d_f
from torchgeo_ext.models.api import get_model
from torchgeo_ext.models.sap import (
    AnomalyPrior,
    background_dictionary,
    fit_prior,
    lrr_admm,
    polygon_mask,
    prior_input,
    prior_loss,
    prism_pseudo_anomalies,
    sap_scores,
)


class ConstantPrior(AnomalyPrior):
    """A prior that calls every pixel background (plain median shrinkage)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.full((x.shape[0], *x.shape[2:]), -50.0)


def test_polygon_mask_square_and_triangle() -> None:
    square = torch.tensor([[0.5, 0.5], [0.5, 3.5], [3.5, 3.5], [3.5, 0.5]])
    mask = polygon_mask(5, 5, square)
    expected = torch.zeros(5, 5, dtype=torch.bool)
    expected[1:4, 1:4] = True
    assert torch.equal(mask, expected)
    triangle = torch.tensor([[0.0, -0.5], [4.5, -0.5], [4.5, 4.0]])
    tri = polygon_mask(5, 5, triangle)
    # lower-left triangle: on each row, pixels left of the diagonal
    for r in range(5):
        assert tri[r].sum() == pytest.approx(r + 1, abs=1)
        assert not tri[r, r + 1 :].any()


def test_prisms_change_only_their_footprint_and_a_band_interval() -> None:
    gen = torch.Generator().manual_seed(3)
    images = torch.rand(4, 12, 10, 10, generator=gen)
    altered, footprint = prism_pseudo_anomalies(images, count=(1, 1), generator=gen)
    assert altered.shape == images.shape
    assert footprint.shape == (4, 10, 10)
    changed = (altered != images).any(dim=1)
    for i in range(4):
        assert footprint[i].any()
        assert not changed[i][~footprint[i]].any()  # nothing outside the base
        bands = (altered[i] != images[i]).flatten(1).any(dim=1).nonzero().flatten()
        if len(bands):  # one prism: a contiguous band interval
            assert bands.tolist() == list(range(int(bands[0]), int(bands[-1]) + 1))


def test_prior_input_removes_the_principal_background() -> None:
    gen = torch.Generator().manual_seed(0)
    spectra = torch.rand(2, 8, generator=gen)
    abundance = 10 * torch.rand(2, 6 * 6, generator=gen)
    cube = (spectra.T @ abundance).reshape(1, 8, 6, 6)  # rank 2 (plus its mean)
    cube = cube + 0.01 * torch.rand(1, 8, 6, 6, generator=gen)
    cube[0, :, 2, 3] += torch.rand(8, generator=gen)  # one outlier
    residual = prior_input(cube.double(), rank=2)[0]
    norms = residual.pow(2).sum(dim=0).sqrt()
    assert norms.median() == pytest.approx(1.0, rel=1e-6)
    assert int(norms.flatten().argmax()) == 2 * 6 + 3


def test_prior_is_band_count_agnostic_and_registered() -> None:
    prior = get_model('sap_prior')
    assert isinstance(prior, AnomalyPrior)
    for bands in (3, 17):
        assert prior(torch.rand(2, bands, 9, 7)).shape == (2, 9, 7)
    f = prior.features
    expected = (9 * f + f) + (9 * f * f + f) + (9 * (2 * f + 1) * 2 * f + 2 * f)
    expected += 9 * 2 * f + 1
    assert sum(p.numel() for p in prior.parameters()) == expected
    logits = torch.zeros(1, 10, 10)
    logits[0, 0, :2] = 5.0
    prior.top_fraction = 0.02
    assert float(prior.image_logits(logits)[0]) == pytest.approx(5.0)


def test_fit_prior_trains_the_pretext_loss() -> None:
    cube, _ = synthetic_anomaly_scene(12, 6, seed=1, targets=0)
    scene = torch.as_tensor(cube, dtype=torch.float32)
    gen = torch.Generator().manual_seed(0)
    prior = AnomalyPrior(features=4)
    before = [p.detach().clone() for p in prior.parameters()]
    loss = prior_loss(prior, scene[None].expand(2, -1, -1, -1), gen)
    loss.backward()
    assert torch.isfinite(loss)
    assert all(p.grad is not None for p in prior.parameters())
    trained = fit_prior(scene, prior=prior, steps=2, batch_size=2, crop=8)
    assert not trained.training
    assert any(
        not torch.equal(a, b) for a, b in zip(before, trained.parameters(), strict=True)
    )


def test_dictionary_purifications() -> None:
    gen = torch.Generator().manual_seed(0)
    pixels = torch.cat(
        [torch.randn(60, 4, generator=gen), torch.randn(60, 4, generator=gen) + 8]
    )
    pixels[5] = torch.tensor([3.0, -3.0, 3.0, -3.0])  # an outlier of cluster 1
    d = background_dictionary(pixels.double(), clusters=2, atoms=10)
    assert d.shape == (4, 20)
    assert not (d.T == pixels[5].double()).all(dim=1).any()  # first purification
    exclude = torch.zeros(120, dtype=torch.bool)
    exclude[:50] = True
    d2 = background_dictionary(pixels.double(), clusters=2, atoms=30, exclude=exclude)
    chosen = {tuple(col.tolist()) for col in d2.T}
    assert not chosen & {tuple(p.tolist()) for p in pixels[:50].double()}
    assert len(chosen) == 40  # the small cluster gives all its 10 pixels


def test_lrr_admm_satisfies_the_constraint_and_isolates_an_anomaly() -> None:
    gen = torch.Generator().manual_seed(1)
    h, w, c = 6, 6, 5
    basis = torch.rand(c, 2, generator=gen, dtype=torch.float64)
    x = basis @ torch.rand(2, h * w, generator=gen, dtype=torch.float64)
    x[:, 14] += torch.tensor([1.0, -1.0, 1.0, -1.0, 1.0], dtype=torch.float64)
    keep = torch.ones(h * w, dtype=torch.bool)
    d = background_dictionary(x.T, clusters=3, atoms=5)
    z, e = lrr_admm(x, d, ConstantPrior(), (h, w), keep, iterations=200)
    assert torch.linalg.norm(x - d @ z - e) / torch.linalg.norm(x) < 1e-3
    assert int(e.norm(dim=0).argmax()) == 14


def test_sap_scores_find_strong_targets_and_respect_nodata() -> None:
    cube, truth = synthetic_anomaly_scene(16, 20, seed=3, abundance=(0.5, 0.8))
    valid = torch.ones(16, 16, dtype=torch.bool)
    valid[0, :4] = False
    # A briefly trained prior: the pipeline runs end to end.
    scores = sap_scores(cube, valid_mask=valid, fit_steps=2, iterations=5)
    assert scores.shape == (16, 16)
    assert scores.dtype == torch.float32
    assert torch.isnan(scores[~valid]).all()
    assert torch.isfinite(scores[valid]).all()
    # With a prior calling every pixel background, the dual-purified LRR alone
    # separates strong targets (RX gets 0.99 on this scene).
    scores = sap_scores(cube, valid_mask=valid, prior=ConstantPrior(), iterations=30)
    inside = valid.numpy()
    assert auc_d_f(scores[valid], truth[inside]) > 0.95


def test_sap_scores_reject_bad_arguments() -> None:
    with pytest.raises(ValueError, match='C x H x W'):
        sap_scores(torch.rand(4, 4))
    with pytest.raises(ValueError, match='purge'):
        sap_scores(torch.rand(3, 4, 4), purge=1.0)


def test_sap_creates_tensors_on_the_cube_device() -> None:
    from tests.trainers.test_device_guard import _on_meta_by_default

    torch.manual_seed(0)
    cube = torch.rand(5, 9, 9)
    scores = _on_meta_by_default(sap_scores)(cube, fit_steps=1, iterations=3)
    assert scores.shape == (9, 9)
    assert scores.device.type == 'cpu'
    assert torch.isfinite(scores).all()
