"""Tests for M3amba."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from torchgeo_ext.errors import MissingInputError
from torchgeo_ext.models.api import get_model
from torchgeo_ext.models.m3amba import M3amba, TinyCLIP, load_open_clip, m3amba_tiny


def test_outputs_and_frozen_clip() -> None:
    torch.manual_seed(0)
    model = get_model(
        'm3amba_tiny',
        hsi_bands=8,
        lidar_bands=2,
        num_classes=3,
        class_names=['a', 'b', 'c'],
    )
    assert isinstance(model, M3amba)
    out = model(torch.rand(2, 10, 7, 7))
    assert out['logits'].shape == (2, 3)
    assert set(out['aux_logits']) == {'hsi', 'lidar'}
    assert model.text_features.shape == (3, 16)
    assert not any(p.requires_grad for p in model.clip.parameters())
    model.train()
    assert not model.clip.training
    # Gradients reach the 1x1 projections through the frozen CLIP tower.
    out = model(torch.rand(2, 10, 7, 7))
    out['aux_logits']['hsi'].sum().backward()
    assert model.to_rgb[0].weight.grad is not None


def test_without_class_names() -> None:
    model = m3amba_tiny(hsi_bands=4, lidar_bands=1, num_classes=2)
    out = model(torch.rand(1, 5, 5, 5))
    assert out['aux_logits'] == {}
    with pytest.raises(ValueError, match='class names'):
        m3amba_tiny(hsi_bands=4, lidar_bands=1, num_classes=2, class_names=['x'])


def test_centre_pixel_matters() -> None:
    torch.manual_seed(0)
    model = m3amba_tiny(hsi_bands=4, lidar_bands=1, num_classes=2).eval()
    x = torch.rand(1, 5, 7, 7)
    y = x.clone()
    y[:, :, 3, 3] += 1
    assert not torch.allclose(model(x)['logits'], model(y)['logits'])


def test_tiny_clip_tokenizer() -> None:
    clip = TinyCLIP(context_length=8)
    tokens = clip.tokenize(['ab', 'a much longer text'])
    assert tokens.shape == (2, 8)
    assert tokens[0, :3].tolist() == [97, 98, 0]
    assert clip.encode_text(tokens).shape == (2, 32)


def test_clip_weights_must_exist(tmp_path: Path) -> None:
    with pytest.raises(MissingInputError, match='CLIP weights'):
        load_open_clip(tmp_path / 'missing.pt')


@pytest.mark.slow
def test_open_clip_tower_random_weights() -> None:
    pytest.importorskip('open_clip')
    from torchgeo_ext.models.m3amba import m3amba_base

    torch.manual_seed(0)
    model = m3amba_base(
        hsi_bands=4,
        lidar_bands=1,
        num_classes=2,
        class_names=['a', 'b'],
        clip_model='RN50',
        dim=8,
        depth=1,
        d_state=2,
    )
    out = model(torch.rand(1, 5, 5, 5))
    assert out['logits'].shape == (1, 2)
    assert out['aux_logits']['hsi'].shape == (1, 2)
