"""Tests of the tracker losses in torchgeo_ext.losses.tracking."""

import torch

from torchgeo_ext.losses.tracking import TrackingLoss, centre_heatmap, focal_loss


def test_focal_loss() -> None:
    target = torch.zeros(1, 1, 4, 4)
    target[0, 0, 1, 2] = 1
    good = torch.full_like(target, -8.0)
    good[0, 0, 1, 2] = 8.0
    assert focal_loss(good, target) < 0.01
    assert focal_loss(-good, target) > 1


def test_centre_heatmap_and_loss() -> None:
    target = torch.tensor([[0.25, 0.25, 0.75, 0.75], [0.0, 0.0, 0.2, 0.4]])
    heat, index = centre_heatmap(target, 8)
    assert heat.shape == (2, 1, 8, 8)
    # centre (0.5, 0.5) -> cell (4, 4); centre (0.1, 0.2) -> cell (row 1, col 0)
    assert index.tolist() == [4 * 8 + 4, 1 * 8 + 0]
    assert heat[0, 0, 4, 4] == 1
    assert heat[1, 0, 1, 0] == 1
    assert (heat <= 1).all()
    assert heat[0, 0, 4, 5] < 1
    loss = TrackingLoss(1.0, 5.0, 2.0)
    logits = torch.where(heat == 1, 8.0, -8.0)
    perfect = loss(logits, heat, target, target)
    assert perfect['l1'] == 0
    assert perfect['giou'].abs() < 1e-6
    worse = loss(logits, heat, target.flip(0), target)
    assert worse['loss'] > perfect['loss']
    total = 1.0 * worse['focal'] + 5.0 * worse['l1'] + 2.0 * worse['giou']
    torch.testing.assert_close(worse['loss'], total)
