from pathlib import Path

import pytest
import torch
from segment_anything.modeling import ImageEncoderViT, MaskDecoder, PromptEncoder, Sam

from torchgeo_ext.errors import InvalidInputError, MissingInputError
from torchgeo_ext.models.api import get_model
from torchgeo_ext.models.sam import (
    SAM_VARIANTS,
    build_sam,
    load_sam,
    sam_tiny,
    sam_variant_of,
)


def test_tiny_sam_uses_segment_anything_classes() -> None:
    sam = sam_tiny()
    assert isinstance(sam, Sam)
    assert isinstance(sam.image_encoder, ImageEncoderViT)
    assert isinstance(sam.prompt_encoder, PromptEncoder)
    assert isinstance(sam.mask_decoder, MaskDecoder)
    assert len(sam.image_encoder.blocks) == 2
    assert sam.image_encoder.img_size == 256
    assert sam.prompt_encoder.embed_dim == 32
    x = torch.rand(1, 3, 256, 256) * 255
    with torch.no_grad():
        embedding = sam.image_encoder(sam.preprocess(x))
    assert embedding.shape == (1, 32, 16, 16)
    assert isinstance(get_model('sam_tiny'), Sam)


def test_variant_table_matches_registry_vit_b() -> None:
    # vit_b is built through segment_anything's registry: the table used to
    # recognise checkpoints must describe it.
    sam = build_sam('vit_b')
    config = SAM_VARIANTS['vit_b']
    assert sam.image_encoder.patch_embed.proj.out_channels == config.encoder_embed_dim
    assert len(sam.image_encoder.blocks) == config.encoder_depth
    assert sam_variant_of(sam.state_dict()) == 'vit_b'


def test_load_roundtrip(tmp_path: Path) -> None:
    torch.manual_seed(0)
    sam = sam_tiny()
    path = tmp_path / 'sam_tiny.pth'
    torch.save(sam.state_dict(), path)
    loaded = load_sam(path)
    assert not loaded.training
    for key, value in sam.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[key], value)
    assert isinstance(load_sam(path, 'tiny'), Sam)


def test_missing_checkpoint(tmp_path: Path) -> None:
    with pytest.raises(MissingInputError, match='SAM checkpoint not found'):
        load_sam(tmp_path / 'nope.pth')


def test_not_a_sam_state_dict(tmp_path: Path) -> None:
    path = tmp_path / 'other.pth'
    torch.save({'state_dict': {'w': torch.zeros(1)}, 'epoch': 3}, path)
    with pytest.raises(InvalidInputError, match=r'not a SAM state dict.*Lightning'):
        load_sam(path)
    garbage = tmp_path / 'garbage.pth'
    garbage.write_bytes(b'not a checkpoint at all')
    with pytest.raises(InvalidInputError, match='not a readable SAM checkpoint'):
        load_sam(garbage)


def test_wrong_variant(tmp_path: Path) -> None:
    path = tmp_path / 'sam_tiny.pth'
    torch.save(sam_tiny().state_dict(), path)
    with pytest.raises(InvalidInputError, match='SAM tiny checkpoint, not vit_b'):
        load_sam(path, 'vit_b')
    with pytest.raises(ValueError, match='unknown SAM variant'):
        load_sam(path, 'vit_x')


def test_unknown_width_and_wrong_shapes(tmp_path: Path) -> None:
    state = sam_tiny().state_dict()
    odd = dict(state)
    odd['image_encoder.patch_embed.proj.weight'] = torch.zeros(48, 3, 16, 16)
    path = tmp_path / 'odd.pth'
    torch.save(odd, path)
    with pytest.raises(InvalidInputError, match='width 48 matches no known variant'):
        load_sam(path)
    broken = dict(state)
    broken['mask_decoder.iou_token.weight'] = torch.zeros(1, 7)
    torch.save(broken, path)
    with pytest.raises(InvalidInputError, match='do not fit SAM tiny'):
        load_sam(path)
