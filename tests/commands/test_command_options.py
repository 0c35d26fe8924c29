import argparse

import pytest

from torchgeo_ext.commands import _options as options
from torchgeo_ext.errors import InvalidInputError


@pytest.mark.parametrize(
    ('kind', 'good', 'bad'),
    [
        (options.positive_int, ['1', '512'], ['0', '-3', '1.5', 'x']),
        (options.non_negative_int, ['0', '7'], ['-1', 'nan']),
        (options.odd_positive_int, ['1', '9'], ['0', '4', '-3']),
        (options.at_least(8), ['8', '100'], ['7', 'x']),
        (options.positive_float, ['0.5', '255'], ['0', '-1', 'nan', 'inf']),
        (options.non_negative_float, ['0', '2.5'], ['-0.1', 'nan', 'inf']),
        (options.unit_float, ['0', '0.5', '1'], ['-0.1', '1.01', 'nan']),
        (options.open_unit_float, ['0.5', '0.999'], ['0', '1', 'nan']),
        (
            options.device,
            ['cpu', 'cuda', 'cuda:1', 'MPS'],
            ['gpu', 'tpu', 'cuda:x', ''],
        ),
    ],
)
def test_option_types(kind: object, good: list[str], bad: list[str]) -> None:
    assert callable(kind)
    for value in good:
        kind(value)
    for value in bad:
        with pytest.raises(argparse.ArgumentTypeError):
            kind(value)


def test_check_device() -> None:
    import torch

    options.check_device('cpu')
    if not torch.cuda.is_available():
        with pytest.raises(InvalidInputError, match='no cuda device'):
            options.check_device('cuda')
