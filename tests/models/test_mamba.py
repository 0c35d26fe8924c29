"""Tests for the plain-torch selective scan and the Mamba blocks."""

from __future__ import annotations

import pytest
import torch

from torchgeo_ext.models.mamba import (
    SS2D,
    MambaBlock,
    selective_scan,
    selective_scan_reference,
)


def _inputs(
    batch: int = 2, length: int = 37, channels: int = 5, states: int = 4, seed: int = 0
) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, length, channels, generator=g)
    delta = torch.nn.functional.softplus(
        torch.randn(batch, length, channels, generator=g)
    )
    A = -torch.rand(channels, states, generator=g) * 3 - 0.1
    B = torch.randn(batch, length, states, generator=g)
    C = torch.randn(batch, length, states, generator=g)
    D = torch.randn(channels, generator=g)
    return x, delta, A, B, C, D


@pytest.mark.parametrize('chunk_size', [1, 4, 16, 64])
def test_scan_matches_recurrence(chunk_size: int) -> None:
    x, delta, A, B, C, D = _inputs()
    expected = selective_scan_reference(x, delta, A, B, C, D)
    got = selective_scan(x, delta, A, B, C, D, chunk_size=chunk_size)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


def test_scan_float64_exact() -> None:
    x, delta, A, B, C, D = (t.double() for t in _inputs(length=100))
    expected = selective_scan_reference(x, delta, A, B, C, D)
    got = selective_scan(x, delta, A, B, C, D, chunk_size=32)
    assert got.dtype == torch.float64
    torch.testing.assert_close(got, expected, atol=1e-10, rtol=1e-10)


def test_strong_decay_does_not_overflow() -> None:
    # Decay of ~50 per step: a 64-step chunk would overflow float32's exp.
    x, delta, A, B, C, D = _inputs(length=200)
    delta = delta * 0 + 5.0
    A = A * 0 - 10.0
    got = selective_scan(x, delta, A, B, C, D, chunk_size=64)
    assert torch.isfinite(got).all()
    torch.testing.assert_close(
        got, selective_scan_reference(x, delta, A, B, C, D), atol=1e-5, rtol=1e-5
    )


def test_scan_gradients_match() -> None:
    inputs = [t.clone().requires_grad_(True) for t in _inputs(length=20)]
    selective_scan(*inputs, chunk_size=8).square().sum().backward()
    grads = [t.grad.clone() for t in inputs]  # type: ignore[union-attr]
    ref = [t.detach().clone().requires_grad_(True) for t in inputs]
    selective_scan_reference(*ref).square().sum().backward()
    for got, r in zip(grads, ref, strict=True):
        torch.testing.assert_close(got, r.grad, atol=1e-4, rtol=1e-4)


def test_scan_bad_shapes() -> None:
    x, delta, A, B, C, D = _inputs()
    with pytest.raises(ValueError, match='B and C'):
        selective_scan(x, delta, A, B[:, :3], C, D)
    with pytest.raises(ValueError, match='shapes'):
        selective_scan(x, delta[..., :2], A, B, C, D)


def test_mamba_block_is_causal() -> None:
    torch.manual_seed(0)
    block = MambaBlock(8, d_state=4, chunk_size=4)
    x = torch.randn(2, 12, 8)
    y = block(x)
    assert y.shape == x.shape
    x2 = x.clone()
    x2[:, 7:] = torch.randn(2, 5, 8)
    torch.testing.assert_close(block(x2)[:, :7], y[:, :7])
    assert not torch.allclose(block(x2)[:, 7:], y[:, 7:])


def test_ss2d_shapes_and_context() -> None:
    torch.manual_seed(0)
    layer = SS2D(6, d_state=4, directions=4)
    x = torch.randn(2, 5, 7, 6)
    y = layer(x)
    assert y.shape == x.shape
    y2 = layer(x, torch.randn_like(x))
    assert y2.shape == x.shape
    assert not torch.allclose(y, y2)
    with pytest.raises(ValueError, match='directions'):
        SS2D(6, directions=5)


def test_ss2d_every_direction_sees_every_pixel() -> None:
    # Each pixel's output depends on pixels before and after it in row order.
    torch.manual_seed(0)
    layer = SS2D(4, d_state=2, directions=4, d_conv=1)
    x = torch.randn(1, 3, 3, 4, requires_grad=True)
    layer(x)[0, 1, 1].sum().backward()
    assert x.grad is not None
    assert (x.grad.abs().sum(-1) > 0).all()


def test_blocks_carry_the_state() -> None:
    x, delta, A, B, C, D = _inputs(length=101)
    expected = selective_scan_reference(x, delta, A, B, C, D)
    # Blocks of 2 x 5 x 4 = 40 states: 1 step per block ... 101 steps in one.
    for block_elements in (1, 40 * 7, 40 * 64, None):
        got = selective_scan(
            x, delta, A, B, C, D, chunk_size=8, block_elements=block_elements
        )
        torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


def test_long_scan_close_to_float64() -> None:
    # 3000 steps with the decays of a fresh Mamba block (A = -1..-16): the
    # float32 chunked scan stays within 1e-5 of the float64 recurrence.
    g = torch.Generator().manual_seed(1)
    x = torch.randn(1, 3000, 8, generator=g)
    delta = torch.nn.functional.softplus(torch.randn(1, 3000, 8, generator=g) - 1)
    A = -torch.arange(1, 17, dtype=torch.float32).repeat(8, 1)
    B = torch.randn(1, 3000, 16, generator=g)
    C = torch.randn(1, 3000, 16, generator=g)
    exact = selective_scan_reference(*(t.double() for t in (x, delta, A, B, C)))
    got = selective_scan(x, delta, A, B, C)
    torch.testing.assert_close(got.double(), exact, atol=1e-5, rtol=1e-5)
