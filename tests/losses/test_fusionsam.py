import pytest
import torch

from torchgeo_ext.losses.fusionsam import (
    FusionSAMLoss,
    dice_loss,
    vector_quantization_loss,
)


def test_vq_loss_values_and_gradients() -> None:
    z = torch.tensor([[1.0, 2.0], [3.0, 4.0]], requires_grad=True)
    e = torch.tensor([[1.5, 2.0], [3.0, 3.0]], requires_grad=True)
    codebook, commitment = vector_quantization_loss(z, e, beta=0.5)
    # mean squared difference: (0.25 + 0 + 0 + 1) / 4
    assert codebook.item() == pytest.approx(0.3125)
    assert commitment.item() == pytest.approx(0.5 * 0.3125)
    codebook.backward()
    assert z.grad is None or torch.all(z.grad == 0)  # codebook term moves codes only
    assert e.grad is not None
    assert e.grad.abs().sum() > 0
    e.grad = None
    z2 = z.detach().clone().requires_grad_(True)
    _, commitment = vector_quantization_loss(z2, e, beta=0.5)
    commitment.backward()
    assert e.grad is None  # commitment term moves the encoder only
    assert z2.grad is not None
    assert z2.grad.abs().sum() > 0
    with pytest.raises(ValueError, match='differ'):
        vector_quantization_loss(z, e[:1])


def test_dice_perfect_and_ignored() -> None:
    target = torch.tensor([[[0, 1], [1, 2]]])
    logits = torch.nn.functional.one_hot(target, 3).permute(0, 3, 1, 2).float() * 50
    assert dice_loss(logits, target).item() == pytest.approx(0.0, abs=1e-4)
    # pixels of the ignore index change nothing
    noisy = logits.clone()
    target_ignored = target.clone()
    target_ignored[0, 0, 0] = 255
    noisy[0, :, 0, 0] = torch.tensor([0.0, 50.0, 0.0])
    assert dice_loss(noisy, target_ignored, ignore_index=255).item() == pytest.approx(
        0.0, abs=1e-4
    )


def test_total_loss_terms() -> None:
    torch.manual_seed(0)
    logits = torch.randn(2, 4, 5, 5)
    target = torch.randint(0, 4, (2, 5, 5))
    z = torch.randn(2, 6, 8)
    e = torch.randn(2, 6, 8)
    loss = FusionSAMLoss(dice_weight=0.5, vq_weight=2.0, beta=0.25)
    out = loss(logits, target, [(z, e), (z, e)])
    ce = torch.nn.functional.cross_entropy(logits, target)
    codebook, commitment = vector_quantization_loss(z, e, 0.25)
    expected = ce + 0.5 * dice_loss(logits, target) + 2.0 * 2 * (codebook + commitment)
    torch.testing.assert_close(out['loss'], expected)
    torch.testing.assert_close(out['codebook'], 2 * codebook)
    no_vq = FusionSAMLoss(dice_weight=0.0)(logits, target)
    torch.testing.assert_close(no_vq['loss'], ce)
