"""Tests of reading weight files in torchgeo_ext.models.weights."""

from pathlib import Path

import pytest
import torch

from torchgeo_ext.errors import InvalidInputError, MissingInputError
from torchgeo_ext.models.weights import read_state_dict


def test_plain_and_nested(tmp_path: Path) -> None:
    weights = {'a.weight': torch.ones(2), 'b.bias': torch.zeros(1)}
    plain = tmp_path / 'plain.pth'
    torch.save(weights, plain)
    assert read_state_dict(plain).keys() == weights.keys()
    nested = tmp_path / 'nested.pth'
    torch.save({'epoch': 3, 'model': weights}, nested)
    torch.testing.assert_close(read_state_dict(nested), weights)


def test_prefixes_in_order(tmp_path: Path) -> None:
    path = tmp_path / 'task.ckpt'
    state = {
        'model.conv.weight': torch.ones(1),
        'ema_model.module.conv.weight': torch.full((1,), 2.0),
        'ema_model.n_averaged': torch.tensor(5),
    }
    torch.save({'state_dict': state, 'hyper_parameters': {'lr': 0.1}}, path)
    ema = read_state_dict(path, prefixes=('ema_model.module.', 'model.'))
    assert ema == {'conv.weight': torch.full((1,), 2.0)}
    raw = read_state_dict(path, prefixes=('student.', 'model.'))
    assert raw == {'conv.weight': torch.ones(1)}


def test_errors(tmp_path: Path) -> None:
    with pytest.raises(MissingInputError, match='weights file not found'):
        read_state_dict(tmp_path / 'missing.pth')
    bad = tmp_path / 'bad.pth'
    bad.write_text('not weights')
    with pytest.raises(InvalidInputError, match='unreadable weights'):
        read_state_dict(bad)
    listed = tmp_path / 'list.pth'
    torch.save([torch.ones(1)], listed)
    with pytest.raises(InvalidInputError, match='not a state dict'):
        read_state_dict(listed)
