"""Tests of FoRA/LMA in torchgeo_ext.models.lma."""

import itertools

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from torchgeo_ext.losses.obb import OBBLoss
from torchgeo_ext.models.lma import (
    ModalConv2d,
    RankAllocator,
    adaptor_ranks,
    lma_yolov8n_obb,
    parameter_table,
    rank_budget,
    set_modality,
    split_modalities,
    two_stream_yolov8n_obb,
)
from torchgeo_ext.ops.obb import obb_to_poly


def make_conv() -> ModalConv2d:
    torch.manual_seed(0)
    return ModalConv2d(nn.Conv2d(4, 6, 3, padding=1, bias=False), 2, rank=5, alpha=10)


def test_zero_e_gives_shared_weights() -> None:
    layer = make_conv()
    x = torch.randn(2, 4, 8, 8)
    expected = F.conv2d(x, layer.weight, padding=1)
    for modality in (0, 1):
        assert torch.equal(layer.modal_weight(modality), layer.weight)
        layer.modality = modality
        assert torch.equal(layer(x), expected)


def test_adaptor_arithmetic() -> None:
    layer = make_conv()
    with torch.no_grad():
        layer.lora_E.copy_(torch.tensor([1.0, -2.0, 0.5, 3.0, 1.5]))
    assert layer.scaling == 2.0
    for m in (0, 1):
        a, b = layer.lora_A[m], layer.lora_B[m]
        assert a.shape == (5, 4 * 3)
        assert b.shape == (6 * 3, 5)
        delta = 2.0 * b @ torch.diag(layer.lora_E) @ a
        torch.testing.assert_close(layer.delta(m), delta.reshape(6, 4, 3, 3))
    # modalities differ, share W0 and E
    assert not torch.allclose(layer.modal_weight(0), layer.modal_weight(1))


def test_rank_masking() -> None:
    layer = make_conv()
    with torch.no_grad():
        layer.lora_E.fill_(1.0)
        layer.rank_mask.copy_(torch.tensor([1.0, 0, 1, 0, 0]))
    assert layer.active_rank() == 2
    a, b = layer.lora_A[1], layer.lora_B[1]
    kept = [0, 2]
    delta = layer.scaling * b[:, kept] @ a[kept]
    torch.testing.assert_close(layer.delta(1), delta.reshape(6, 4, 3, 3))
    # masked ranks receive no gradient through E
    layer.modality = 1
    layer(torch.randn(1, 4, 5, 5)).sum().backward()
    assert layer.lora_E.grad is not None
    assert (layer.lora_E.grad[[1, 3, 4]] == 0).all()
    assert (layer.lora_E.grad[kept] != 0).all()


def test_modal_conv_rejects_groups() -> None:
    with pytest.raises(ValueError, match='ungrouped'):
        ModalConv2d(nn.Conv2d(4, 4, 3, groups=2, bias=False))


def test_rank_budget_schedule() -> None:
    total = 600
    assert rank_budget(0, total) == 9
    assert rank_budget(100, total) == 9  # until 1/6 of training
    assert rank_budget(300, total) == 6  # from 1/2 of training
    assert rank_budget(600, total) == 6
    # cubic in between: half way (step 200) is 6 + 3 / 8
    assert rank_budget(200, total) == pytest.approx(6 + 3 * 0.5**3)
    values = [rank_budget(s, total) for s in range(100, 301, 10)]
    assert all(a >= b for a, b in itertools.pairwise(values))


def test_shared_backbone_uses_per_modality_layers() -> None:
    model = lma_yolov8n_obb(num_classes=5)
    convs = [m for m in model.backbone.modules() if isinstance(m, ModalConv2d)]
    assert len(convs) > 20
    assert all(c.rank == 9 for c in convs)
    set_modality(model, 1)
    assert all(c.modality == 1 for c in convs)
    set_modality(model, 0)
    # IR is repeated to the 3-channel shared stem
    parts = split_modalities(torch.zeros(1, 4, 2, 2), model.modalities, 3)
    assert [p.shape[1] for p in parts] == [3, 3]


def test_lma_fewer_parameters_than_two_stream() -> None:
    lma = lma_yolov8n_obb(num_classes=5)
    two = two_stream_yolov8n_obb(num_classes=5)
    n_lma = sum(p.numel() for p in lma.parameters())
    n_two = sum(p.numel() for p in two.parameters())
    assert n_lma == 3_262_567
    assert n_two == 4_355_842
    table = parameter_table({'LMA': lma, 'two-stream': two})
    assert '| LMA | 3,262,567 |' in table
    assert '| two-stream | 4,355,842 |' in table


def test_forward_shapes() -> None:
    x = torch.randn(1, 4, 64, 96)
    for model in (lma_yolov8n_obb(3), two_stream_yolov8n_obb(3)):
        out = model(x)
        assert out.scores.shape == (1, 8 * 12 + 4 * 6 + 2 * 3, 3)


def test_rank_allocator_reaches_budget() -> None:
    torch.manual_seed(0)
    model = lma_yolov8n_obb(num_classes=2)
    for _, layer in model.backbone.adaptors():
        nn.init.normal_(layer.lora_E, std=0.1)
    allocator = RankAllocator(model, total_steps=6)
    layers = len(allocator.layers)
    criterion = OBBLoss(2)
    x = torch.randn(1, 4, 64, 64)
    polys = [obb_to_poly(torch.tensor([[30.0, 30, 20, 10, 0.2]]))]
    labels = [torch.tensor([1])]
    budgets = []
    for step in range(6):
        model.zero_grad()
        loss, _ = criterion(model(x), polys, labels)
        loss.backward()
        budgets.append(allocator.step(step))
        total = sum(adaptor_ranks(model).values())
        if budgets[-1] >= 9:
            assert total == 9 * layers
        else:
            assert total == int(budgets[-1] * layers)
    assert budgets[0] == 9
    assert budgets[-1] == 6
    ranks = allocator.final_ranks()
    assert sum(ranks.values()) == 6 * layers
    # E is zero where masked
    for _, layer in allocator.layers:
        assert (layer.lora_E[layer.rank_mask == 0] == 0).all()


def test_inference_weight_cache_follows_updates() -> None:
    layer = make_conv()
    layer.modality = 1
    x = torch.randn(1, 4, 6, 6)
    with torch.no_grad():
        first = layer(x)
        torch.testing.assert_close(layer(x), first)
        layer.lora_E.fill_(1.0)  # in-place update invalidates the cache
        updated = layer(x)
    expected = F.conv2d(x, layer.modal_weight(1), padding=1)
    torch.testing.assert_close(updated, expected)
    assert not torch.allclose(updated, first)
    # with gradients on, the weight is rebuilt (and differentiable)
    layer(x).sum().backward()
    assert layer.lora_E.grad is not None


def test_modality_layout() -> None:
    from torchgeo_ext.models.lma import modality_layout

    assert modality_layout(None) == {'rgb': [0, 1, 2], 'ir': [3]}
    assert modality_layout({'ir': (4,), 'rgb': range(3)}) == {
        'ir': [4],
        'rgb': [0, 1, 2],
    }
