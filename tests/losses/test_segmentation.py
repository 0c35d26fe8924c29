"""Tests of DIAnet's losses in torchgeo_ext.losses.segmentation."""

import math

import pytest
import torch
import torch.nn.functional as F

from torchgeo_ext.losses.segmentation import DistributionAwareLoss, OhemCrossEntropyLoss


def f(e: float) -> float:
    return e - math.log((1 - e) / (1 + e))


def test_dal_hand_computed() -> None:
    # Three pixels, two classes. Probabilities (0.5, 0.5), (0.25, 0.75), (0.8, 0.2)
    # with targets 0, 1, 0: counts (2, 1), frequencies (2/3, 1/3), median 1/2,
    # weights (0.75, 1.5).
    logits = torch.log(torch.tensor([[0.5, 0.25, 0.8], [0.5, 0.75, 0.2]])).view(
        1, 2, 1, 3
    )
    target = torch.tensor([[[0, 1, 0]]])
    loss = DistributionAwareLoss(num_classes=2)
    w = (0.75, 1.5)
    # squared errors per pixel and class
    errors = [(0.25, 0.25), (0.0625, 0.0625), (0.04, 0.04)]
    error_term = sum(w[0] * f(a) + w[1] * f(b) for a, b in errors) / 3
    dice0 = 2 * (0.5 + 0.8) / ((0.5 + 0.25 + 0.8) + 2)
    dice1 = 2 * 0.75 / ((0.5 + 0.75 + 0.2) + 1)
    expected = error_term - math.log((dice0 + dice1) / 2)
    value = loss(logits, target)
    assert value.item() == pytest.approx(expected, rel=1e-5)
    torch.testing.assert_close(loss.class_weights(), torch.tensor(w))


def test_dal_running_counts() -> None:
    loss = DistributionAwareLoss(num_classes=3, ignore_index=2)
    logits = torch.zeros(1, 3, 2, 2)
    loss(logits, torch.tensor([[[0, 0], [0, 2]]]))
    torch.testing.assert_close(
        loss.counts, torch.tensor([3.0, 0, 0], dtype=torch.float64)
    )
    # unseen classes and the ignore index keep weight 1
    torch.testing.assert_close(loss.class_weights(), torch.ones(3))
    loss(logits, torch.tensor([[[1, 1], [1, 1]]]))
    torch.testing.assert_close(
        loss.counts, torch.tensor([3.0, 4, 0], dtype=torch.float64)
    )
    # frequencies 3/7 and 4/7, median 1/2
    torch.testing.assert_close(loss.class_weights(), torch.tensor([7 / 6, 7 / 8, 1.0]))
    loss.eval()
    loss(logits, torch.tensor([[[0, 0], [0, 0]]]))
    assert loss.counts.tolist() == [3.0, 4.0, 0.0]  # no update in eval mode
    assert 'counts' in loss.state_dict()


def test_dal_ignores_fill() -> None:
    torch.manual_seed(0)
    logits = torch.randn(2, 11, 5, 6, requires_grad=True)
    target = torch.randint(0, 10, (2, 5, 6))
    target[0, :2] = 10
    loss = DistributionAwareLoss(11, ignore_index=10).eval()
    value = loss(logits, target)
    # The same loss on the non-ignored pixels alone
    keep = target != 10
    flat_logits = logits.detach().movedim(1, -1)[keep].T.reshape(1, 11, 1, -1)
    flat_target = target[keep].view(1, 1, -1)
    torch.testing.assert_close(value, loss(flat_logits, flat_target))
    value.backward()
    assert logits.grad is not None
    assert logits.grad[0, :, :2].abs().max() == 0
    assert logits.grad[1].abs().max() > 0
    # all ignored: zero, still differentiable
    all_fill = loss(logits, torch.full((2, 5, 6), 10))
    assert all_fill.item() == 0
    all_fill.backward()


def test_dal_is_minimal_for_perfect_prediction() -> None:
    target = torch.tensor([[[0, 1], [2, 1]]])
    perfect = F.one_hot(target, 3).movedim(-1, 1).float() * 30
    loss = DistributionAwareLoss(3)
    assert loss(perfect, target).item() == pytest.approx(0, abs=1e-4)
    assert loss(torch.zeros(1, 3, 2, 2), target).item() > 0.5


def test_ohem() -> None:
    torch.manual_seed(0)
    logits = torch.randn(2, 4, 6, 6)
    target = torch.randint(0, 4, (2, 6, 6))
    target[:, 0] = 3
    ce = F.cross_entropy(logits, target, ignore_index=3, reduction='none')
    prob = logits.softmax(1).gather(1, target.clamp(max=3)[:, None]).squeeze(1)
    valid = target != 3
    # threshold only
    loss = OhemCrossEntropyLoss(ignore_index=3, threshold=0.3, min_kept=0)
    hard = valid & (prob < 0.3)
    torch.testing.assert_close(loss(logits, target), ce[hard].mean())
    # min_kept above the number of valid pixels: plain cross-entropy
    loss = OhemCrossEntropyLoss(ignore_index=3, threshold=0.0, min_kept=10_000)
    torch.testing.assert_close(loss(logits, target), ce[valid].mean())
    # min_kept the least confident pixels when none is below the threshold
    loss = OhemCrossEntropyLoss(ignore_index=3, threshold=0.0, min_kept=5)
    order = prob[valid].argsort()
    torch.testing.assert_close(loss(logits, target), ce[valid][order[:5]].mean())
