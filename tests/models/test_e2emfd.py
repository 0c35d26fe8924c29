"""Tests of E2E-MFD in torchgeo_ext.models.e2emfd."""

import pytest
import torch
from torch import nn

from torchgeo_ext.losses.fusion import FusionLoss
from torchgeo_ext.losses.obb import OBBLoss
from torchgeo_ext.models.e2emfd import (
    SelectiveKernel,
    e2emfd_yolov8n_obb,
    gmta_aligned_gradient,
    gmta_backward,
)
from torchgeo_ext.ops.obb import obb_to_poly


def test_forward_and_fusion_rule() -> None:
    model = e2emfd_yolov8n_obb(num_classes=3)
    x = torch.rand(2, 4, 60, 90)
    out = model(x)
    assert out.fused.shape == (2, 1, 60, 90)
    assert out.weights.shape == (2, 2, 60, 90)
    assert ((out.weights > 0) & (out.weights < 1)).all()
    visible = x[:, :3].amax(1, keepdim=True)
    torch.testing.assert_close(out.visible, visible)
    torch.testing.assert_close(out.ir, x[:, 3:])
    expected = out.weights[:, :1] * x[:, 3:] + out.weights[:, 1:] * visible
    torch.testing.assert_close(out.fused, expected)
    assert out.detection.scores.shape == (2, 8 * 12 + 4 * 6 + 2 * 3, 3)
    shared = {id(p) for p in model.shared_parameters()}
    assert shared == {id(p) for p in model.backbone.parameters()}


def test_requires_rgb_and_ir() -> None:
    with pytest.raises(ValueError, match="'rgb'"):
        e2emfd_yolov8n_obb(modalities={'ir': [0]})


def test_selective_kernel_shape() -> None:
    sk = SelectiveKernel(8)
    assert sk(torch.randn(2, 8, 5, 7)).shape == (2, 8, 5, 7)


def test_gmta_aligned_gradient_properties() -> None:
    torch.manual_seed(0)
    grads = torch.randn(50, 2, dtype=torch.float64) * torch.tensor([1.0, 10.0])
    update = gmta_aligned_gradient(grads)
    gram = grads.T @ grads
    evals, evecs = torch.linalg.eigh(gram)
    w = evecs @ torch.diag((evals.min() / evals).sqrt()) @ evecs.T
    aligned = grads @ w
    # aligned components: orthogonal, equal norm sqrt(lambda_min)
    torch.testing.assert_close(
        aligned.T @ aligned, evals.min() * torch.eye(2, dtype=torch.float64)
    )
    torch.testing.assert_close(update, aligned.sum(1))
    # a descent direction for both tasks
    assert (grads.T @ update > 0).all()
    # orthogonal gradients of equal norm are left unchanged
    ortho = torch.zeros(4, 2, dtype=torch.float64)
    ortho[0, 0] = 3.0
    ortho[1, 1] = 3.0
    torch.testing.assert_close(gmta_aligned_gradient(ortho), ortho.sum(1))
    # degenerate (one task without gradient): plain sum
    degenerate = torch.stack(
        (torch.randn(5, dtype=torch.float64), torch.zeros(5, dtype=torch.float64)), 1
    )
    torch.testing.assert_close(gmta_aligned_gradient(degenerate), degenerate.sum(1))


def test_gmta_backward_toy_two_tasks() -> None:
    torch.manual_seed(0)
    shared = nn.Linear(3, 3)
    heads = nn.ModuleList([nn.Linear(3, 1), nn.Linear(3, 1)])
    x = torch.randn(16, 3)
    targets = [torch.randn(16, 1), 10 * torch.randn(16, 1)]
    feats = shared(x)
    losses = [((h(feats) - t) ** 2).mean() for h, t in zip(heads, targets, strict=True)]
    expected_heads = [
        torch.autograd.grad(losses[k], list(heads[k].parameters()), retain_graph=True)
        for k in range(2)
    ]
    grads = gmta_backward(losses, shared.parameters())
    assert grads.shape == (sum(p.numel() for p in shared.parameters()), 2)
    # task heads get their own plain gradients
    for k in range(2):
        for p, g in zip(heads[k].parameters(), expected_heads[k], strict=True):
            torch.testing.assert_close(p.grad, g)
    # the shared parameters get the aligned update
    update = torch.cat(
        [p.grad.reshape(-1) for p in shared.parameters() if p.grad is not None]
    )
    assert update.numel() == grads.shape[0]
    torch.testing.assert_close(update, gmta_aligned_gradient(grads))
    # which, unlike the plain sum, is not dominated by the larger task
    aligned = grads.T @ update
    plain = grads.T @ grads.sum(1)
    assert (aligned[1] / aligned[0]) < (plain[1] / plain[0])


@pytest.mark.slow
def test_joint_loss_decreases() -> None:
    torch.manual_seed(0)
    model = e2emfd_yolov8n_obb(num_classes=2)
    det_loss, fus_loss = OBBLoss(2), FusionLoss()
    x = torch.rand(2, 4, 64, 64)
    polys = [obb_to_poly(torch.tensor([[30.0, 30, 24, 10, 0.3]]))] * 2
    labels = [torch.tensor([1])] * 2
    opt = torch.optim.Adam(model.parameters(), 2e-3)
    totals = []
    for _ in range(5):
        out = model(x)
        ld, _ = det_loss(out.detection, polys, labels)
        lf, _ = fus_loss(out.fused, out.ir, out.visible, polys)
        opt.zero_grad()
        gmta_backward([lf, ld], model.shared_parameters())
        opt.step()
        totals.append((ld + lf).item())
    assert totals[-1] < totals[0]
