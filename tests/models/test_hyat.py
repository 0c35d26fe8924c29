"""Tests for the HyA-T tracker model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from torchgeo_ext.errors import InvalidInputError, MissingInputError
from torchgeo_ext.models.hyat import HyATracker, hyat_base, hyat_tiny


def _pair(bands: int, batch: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return (
        torch.rand(batch, 3 + bands, 16, 16, generator=g),
        torch.rand(batch, 3 + bands, 32, 32, generator=g),
    )


@pytest.mark.parametrize('bands', [16, 25, 15])
def test_shapes(bands: int) -> None:
    model = hyat_tiny(bands, template_size=16, search_size=32).eval()
    out = model(*_pair(bands))
    assert out['score'].shape == (2, 1, 4, 4)
    assert out['size'].shape == (2, 2, 4, 4)
    assert out['offset'].shape == (2, 2, 4, 4)
    box = out['bbox_xyxy']
    assert box.shape == (2, 4)
    assert (box[:, 2:] >= box[:, :2]).all()


def test_bad_sizes() -> None:
    with pytest.raises(ValueError, match='multiples'):
        hyat_tiny(template_size=12, search_size=32)


def test_base_sizes() -> None:
    model = hyat_base(25)
    assert len(model.blocks) == 12
    assert model.patch_embed.proj.out_channels == 768
    assert model.patch_size == 16
    assert model.search_grid == 16
    assert model.hei.in_channels == 25


def _set_adapters(model: HyATracker, value: float) -> None:
    with torch.no_grad():
        for name, param in model.named_parameters():
            if '.up.' in name or name.startswith('hei.'):
                param.fill_(value)


def test_zero_adapters_give_backbone_output() -> None:
    torch.manual_seed(0)
    model = hyat_tiny(16, template_size=16, search_size=32).eval()
    template, search = _pair(16)
    # Zero-initialised adapters: the HSI bands cannot change the output.
    other_t, other_s = template.clone(), search.clone()
    other_t[:, 3:] = torch.rand_like(other_t[:, 3:])
    other_s[:, 3:] = 0
    a = model(template, search)['score']
    b = model(other_t, other_s)['score']
    assert torch.equal(a, b)
    # Non-zero adapters: now they do.
    _set_adapters(model, 0.05)
    c = model(template, search)['score']
    d = model(other_t, other_s)['score']
    assert not torch.allclose(c, d)
    assert not torch.allclose(a, c)


def test_freeze_backbone() -> None:
    model = hyat_tiny(16, template_size=16, search_size=32)
    model.freeze_backbone()
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    frozen = {n for n, p in model.named_parameters() if not p.requires_grad}
    assert trainable
    assert frozen
    for name in trainable:
        assert name.startswith(('hei.', 'spectral_embed.', 'head.')) or any(
            part in name for part in ('.has.', '.has_spectral.', '.ham.')
        ), name
    for name in frozen:
        assert not any(part in name for part in ('.has', '.ham', 'hei', 'head'))
    assert 'blocks.0.attn.qkv.weight' in frozen
    assert 'patch_embed.proj.weight' in frozen


def test_adapters_learn_with_frozen_backbone() -> None:
    torch.manual_seed(0)
    model = hyat_tiny(16, template_size=16, search_size=32)
    model.freeze_backbone()
    before = {k: v.clone() for k, v in model.backbone_state_dict().items()}
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    out = model(*_pair(16))
    (out['score'].mean() + out['size'].mean()).backward()
    opt.step()
    for key, value in model.backbone_state_dict().items():
        assert torch.equal(value, before[key]), key
    assert model.state_dict()['blocks.0.has.up.weight'].abs().sum() > 0
    assert model.hei.weight.abs().sum() > 0


def test_load_backbone(tmp_path: Path) -> None:
    torch.manual_seed(0)
    source = hyat_tiny(16, template_size=32, search_size=64)
    path = tmp_path / 'vit.pth'
    state = {
        'blocks.0.attn.qkv.weight': source.state_dict()['blocks.0.attn.qkv.weight']
    }
    state['pos_embed_search'] = source.pos_embed_search  # 8x8 grid, resized to 4x4
    state['head.score.3.bias'] = torch.ones(1)  # not backbone: skipped
    torch.save({'model': state}, path)
    target = hyat_tiny(16, template_size=16, search_size=32)
    loaded = target.load_backbone(path)
    assert loaded == ['blocks.0.attn.qkv.weight', 'pos_embed_search']
    assert torch.equal(
        target.state_dict()['blocks.0.attn.qkv.weight'],
        state['blocks.0.attn.qkv.weight'],
    )
    assert target.pos_embed_search.shape == (1, 16, 32)
    assert not torch.equal(target.state_dict()['head.score.3.bias'], torch.ones(1))
    with pytest.raises(MissingInputError):
        target.load_backbone(tmp_path / 'missing.pth')
    torch.save({'other': torch.zeros(1)}, tmp_path / 'bad.pth')
    with pytest.raises(InvalidInputError):
        target.load_backbone(tmp_path / 'bad.pth')


def test_timm_layers_match_the_plain_formulas() -> None:
    # The blocks use timm's Attention, Mlp and PatchEmbed; check them against
    # the plain formulas the tracker was written with.
    import torch.nn.functional as F

    from torchgeo_ext.models.hyat import _resize_square_pos_embed

    torch.manual_seed(0)
    model = hyat_tiny(4).eval()
    block: Any = model.blocks[0]
    x = torch.randn(2, 5, 32)
    b, n, d = x.shape
    heads = block.attn.num_heads
    qkv = F.linear(x, block.attn.qkv.weight, block.attn.qkv.bias)
    q, k, v = qkv.reshape(b, n, 3, heads, d // heads).permute(2, 0, 3, 1, 4)
    att = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, n, d)
    expected = F.linear(att, block.attn.proj.weight, block.attn.proj.bias)
    with torch.no_grad():
        torch.testing.assert_close(block.attn(x), expected)
        mlp = block.mlp
        torch.testing.assert_close(mlp(x), mlp.fc2(F.gelu(mlp.fc1(x))))
        image = torch.randn(1, 3, 32, 16)
        tokens = model.patch_embed(image)
        conv = model.patch_embed.proj(image).flatten(2).transpose(1, 2)
        torch.testing.assert_close(tokens, conv)
    pos = torch.randn(1, 16, 8)
    grid = pos.reshape(1, 4, 4, 8).permute(0, 3, 1, 2)
    resized = F.interpolate(grid, size=(8, 8), mode='bicubic', align_corners=False)
    torch.testing.assert_close(
        _resize_square_pos_embed(pos, 64), resized.permute(0, 2, 3, 1).reshape(1, 64, 8)
    )
    # A non-square grid is left alone.
    assert _resize_square_pos_embed(torch.randn(1, 6, 8), 64).shape == (1, 6, 8)
