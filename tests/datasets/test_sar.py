"""Tests of the SAR amplitude reading in torchgeo_ext.datasets.sar."""

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from torchgeo_ext.datasets.sar import read_amplitude
from torchgeo_ext.errors import InvalidInputError, MissingInputError


def test_8_bit_grey_stored_as_rgb(tmp_path: Path) -> None:
    grey = np.arange(48, dtype=np.uint8).reshape(6, 8)
    rgb = np.stack([grey, grey // 2, grey // 3], axis=-1)
    Image.fromarray(rgb).save(tmp_path / 'a.png')
    image = read_amplitude(str(tmp_path / 'a.png'))
    assert image.dtype == torch.float32
    assert torch.equal(image, torch.from_numpy(grey).float()[None])
    as_uint8 = read_amplitude(str(tmp_path / 'a.png'), 'uint8')
    assert as_uint8.dtype == torch.uint8
    assert torch.equal(as_uint8, torch.from_numpy(grey)[None])


@pytest.mark.parametrize('suffix', ['.tif', '.png'])
def test_16_bit_single_band(tmp_path: Path, suffix: str) -> None:
    values = (np.arange(48, dtype=np.uint16) * 1361).reshape(6, 8)
    path = tmp_path / f'a{suffix}'
    Image.fromarray(values).save(path)
    image = read_amplitude(str(path))
    assert image.shape == (1, 6, 8)
    assert torch.equal(image[0], torch.from_numpy(values.astype(np.float32)))
    assert image.max() > 255
    with pytest.raises(InvalidInputError, match=r'a\.\w+: .*16-bit.*uint8'):
        read_amplitude(str(path), 'uint8')


def test_bad_input(tmp_path: Path) -> None:
    with pytest.raises(MissingInputError, match=r'b.tif: image file does not exist'):
        read_amplitude(str(tmp_path / 'b.tif'))
    (tmp_path / 'c.jpg').write_bytes(b'\xff\xd8 not really')
    with pytest.raises(InvalidInputError, match=r'c.jpg: cannot decode image'):
        read_amplitude(str(tmp_path / 'c.jpg'))
    Image.fromarray(np.full((4, 4), -5, dtype=np.int32)).save(tmp_path / 'd.tif')
    with pytest.raises(InvalidInputError, match=r'd.tif: I values outside 0-65535'):
        read_amplitude(str(tmp_path / 'd.tif'))
    Image.fromarray(np.zeros((4, 4), dtype=np.float32)).save(tmp_path / 'e.tif')
    with pytest.raises(
        InvalidInputError,
        match=r'e.tif: expected an 8-bit or 16-bit integer image, got mode F',
    ):
        read_amplitude(str(tmp_path / 'e.tif'))
