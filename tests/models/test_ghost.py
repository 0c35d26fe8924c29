import pytest
import torch
from torch import nn

from torchgeo_ext.models.complexity import count_macs, count_parameters
from torchgeo_ext.models.ghost import (
    SELF_TEACHING_LAYERS,
    FeatureTap,
    OneToOneSelfTeaching,
    QuantAct,
    QuantConv2d,
    SwitchGate,
    allocate_bits,
    gumbel_sigmoid,
    kmeans_1d,
    quantization_report,
    quantize_activation,
    quantize_superyolo,
    quantize_weight,
)
from torchgeo_ext.models.superyolo import superyolo_early
from torchgeo_ext.models.yolo_layers import Conv


def test_weight_quantizer_arithmetic() -> None:
    w = torch.linspace(-0.5, 0.5, 101, requires_grad=True)
    q = quantize_weight(w, 2)
    # 2 bits: 4 levels -1, -1/3, 1/3, 1.
    levels = torch.tensor([-1.0, -1 / 3, 1 / 3, 1.0])
    assert torch.isclose(q[:, None], levels[None]).any(dim=1).all()
    assert q.min() == -1
    assert q.max() == 1
    # Hand computation for one value: tanh normalisation then rounding.
    t = torch.tanh(w.detach())
    scaled = t / (2 * t.abs().max()) + 0.5
    expected = 2 * torch.round(scaled * 3) / 3 - 1
    assert torch.allclose(q.detach(), expected)
    # Straight-through: the gradient is that of the unrounded transform.
    q.sum().backward()
    assert w.grad is not None
    assert (w.grad.abs() > 0).all()
    assert quantize_weight(w, 32) is w


def test_activation_quantizer() -> None:
    x = torch.tensor([-0.5, 0.1, 0.49, 0.5, 0.9, 2.0], requires_grad=True)
    q = quantize_activation(x, 1)
    assert q.tolist() == [0.0, 0.0, 0.0, 0.0, 1.0, 1.0]
    q8 = quantize_activation(x, 8)
    assert torch.allclose(q8[1], torch.tensor(round(0.1 * 255) / 255))
    q8.sum().backward()
    assert x.grad is not None
    assert x.grad.tolist() == [0.0, 1.0, 1.0, 1.0, 1.0, 0.0]


def test_kmeans_and_bit_allocation() -> None:
    values = torch.tensor([-0.3, 0.0, 0.1, 0.5]).repeat(100)
    centres, inertia = kmeans_1d(values, 4)
    assert torch.allclose(centres, torch.tensor([-0.3, 0.0, 0.1, 0.5]))
    assert inertia == pytest.approx(0.0, abs=1e-12)
    # Four distinct values fit 2 bits exactly.
    assert allocate_bits(values) == 2
    generator = torch.Generator().manual_seed(0)
    gaussian = torch.randn(1024, generator=generator)
    # Spread-out weights need more bits; a looser threshold needs fewer.
    strict = allocate_bits(gaussian * 0.02)
    loose = allocate_bits(gaussian * 0.02, threshold=50.0)
    assert strict > loose >= 2
    assert allocate_bits(gaussian, max_bits=5) == 5


def test_gumbel_gate() -> None:
    logits = torch.tensor([-3.0, 3.0], requires_grad=True)
    g = gumbel_sigmoid(logits, training=False)
    assert g.tolist() == [0.0, 1.0]
    g.sum().backward()
    assert logits.grad is not None
    assert (logits.grad > 0).all()
    torch.manual_seed(0)
    noisy = gumbel_sigmoid(torch.zeros(1000))
    assert set(noisy.round().tolist()) == {0.0, 1.0}
    assert torch.allclose(noisy, noisy.round())
    assert 0.3 < noisy.mean() < 0.7


def test_one_to_one_self_teaching() -> None:
    torch.manual_seed(0)
    ost = OneToOneSelfTeaching([8, 16], dim=4).eval()
    fs = [torch.randn(3, 8, 5, 5), torch.randn(3, 16, 3, 3)]
    ft = [torch.randn(3, 8, 5, 5), torch.randn(3, 16, 3, 3)]
    loss_same, _ = ost(fs, fs)
    assert loss_same == 0
    # Force the switch open: identical q and k embeddings give positive logits.
    gates = [g for g in ost.gates if isinstance(g, SwitchGate)]
    for gate in gates:
        for seq in (gate.query, gate.key):
            linear, norm = seq[0], seq[1]
            assert isinstance(linear, nn.Linear)
            assert isinstance(norm, nn.BatchNorm1d)
            nn.init.zeros_(linear.weight)
            nn.init.constant_(linear.bias, 1.0)
            norm.reset_running_stats()
    loss, open_gates = ost(fs, ft)
    assert open_gates.shape == (2, 3)
    assert (open_gates == 1).all()
    assert loss > 0
    # A closed switch blocks the teacher.
    for gate in gates:
        linear = gate.query[0]
        assert isinstance(linear, nn.Linear)
        nn.init.constant_(linear.bias, -1.0)
    loss_closed, gates_closed = ost(fs, ft)
    assert (gates_closed == 0).all()
    assert loss_closed == 0


@pytest.mark.slow
def test_quantize_superyolo_and_report() -> None:
    torch.manual_seed(0)
    model = superyolo_early(8, 4, super_resolution=False)
    fp = quantization_report(model, (1, 4, 64, 64))
    assert fp.size_mb == pytest.approx(count_parameters(model) * 4 / 2**20)
    macs = count_macs(model, input_shape=(1, 4, 64, 64))
    assert fp.bops == macs.macs * 32 * 32

    bits = quantize_superyolo(model, fixed_bits=4)
    convs = [m for m in model.modules() if isinstance(m, Conv)]
    assert len(bits) == len(convs)
    assert all(isinstance(m.conv, QuantConv2d) for m in convs)
    assert all(isinstance(m.act, QuantAct) for m in convs)
    assert not isinstance(model.detect.conv, QuantConv2d)  # head stays FP
    q = quantization_report(model, (1, 4, 64, 64))
    assert set(q.activation_bits.values()) == {4}
    assert q.size_mb < fp.size_mb / 4
    assert q.bops < fp.bops / 16
    assert q.weight_bits['detect.conv'] == 32

    out = model.train().forward_raw(torch.rand(1, 4, 32, 32))[0]
    assert out.shape == (1, 3, 8, 8, 13)
    out.sum().backward()
    assert model.b1.conv.weight.grad is not None

    # Bit widths travel with the state dict.
    other = superyolo_early(8, 4, super_resolution=False)
    quantize_superyolo(other, fixed_bits=8)
    other.load_state_dict(model.state_dict())
    assert isinstance(other.b1.conv, QuantConv2d)
    assert other.b1.conv.num_bits == 4
    assert isinstance(other.b1.act, QuantAct)
    assert other.b1.act.num_bits == 4


@pytest.mark.slow
def test_kmeans_allocation_on_model() -> None:
    model = superyolo_early(2, 4, super_resolution=False)
    bits = quantize_superyolo(
        model, threshold=0.1, max_samples=512, bit_widths={'b2.cv1.conv': 3}
    )
    assert all(2 <= b <= 8 for b in bits.values())
    assert bits['b2.cv1.conv'] == 3
    assert bits['b1.conv'] == model.b1.conv.num_bits  # type: ignore[union-attr]


def test_feature_tap() -> None:
    model = superyolo_early(2, 4, super_resolution=False)
    tap = FeatureTap(model, SELF_TEACHING_LAYERS)
    with tap.capture() as feats:
        model.forward_raw(torch.rand(1, 4, 32, 32))
    assert len(feats) == len(SELF_TEACHING_LAYERS)
    assert feats[0].shape == (1, 64, 16, 16)
    model.forward_raw(torch.rand(1, 4, 32, 32))
    assert len(feats) == len(SELF_TEACHING_LAYERS)  # hooks removed
