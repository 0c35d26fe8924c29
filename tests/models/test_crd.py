import torch

from torchgeo_ext.models.local_anomaly import crd_scores


def test_crd_zero_for_represented_pixel() -> None:
    # A constant scene: every pixel is exactly represented by its ring.
    cube = torch.ones(4, 9, 9) * torch.tensor([1.0, 2.0, 3.0, 4.0])[:, None, None]
    scores = crd_scores(cube, inner=3, outer=5)
    assert scores.abs().max() < 1e-3


def test_crd_outlier_scores_highest() -> None:
    gen = torch.Generator().manual_seed(0)
    cube = 1 + 0.01 * torch.rand(5, 15, 15, generator=gen)
    cube[:, 7, 7] = torch.tensor([0.2, 3.0, 0.5, 2.0, 0.1])
    scores = crd_scores(cube, inner=3, outer=7)
    assert int(scores.argmax()) == 7 * 15 + 7
