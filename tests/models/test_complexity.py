import pytest
import torch
from torch import nn

from torchgeo_ext.models.complexity import count_macs, count_parameters


def test_conv_linear_macs() -> None:
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),  # 8*8*8 outputs x 27
        nn.Conv2d(8, 8, 3, padding=1, groups=4),  # 512 x 18
        nn.ConvTranspose2d(8, 4, 2, stride=2),  # 512 inputs x 4 x 4
        nn.Flatten(),
        nn.Linear(4 * 16 * 16, 10),
    )
    result = count_macs(model, input_shape=(1, 3, 8, 8))
    assert result.per_layer == {
        '0': 512 * 27,
        '1': 512 * 18,
        '2': 512 * 16,
        '4': 1024 * 10,
    }
    assert result.macs == sum(result.per_layer.values())
    assert result.params == count_parameters(model)
    # The same count with real values on the CPU.
    assert count_macs(model, torch.zeros(1, 3, 8, 8), device='cpu').macs == result.macs


def test_norm_and_custom_forward() -> None:
    model = nn.Sequential(nn.Conv2d(1, 2, 1), nn.BatchNorm2d(2))
    plain = count_macs(model, input_shape=(2, 1, 4, 4))
    with_norm = count_macs(model, input_shape=(2, 1, 4, 4), include_norm=True)
    assert with_norm.macs - plain.macs == 2 * 2 * 16
    custom = count_macs(
        model, input_shape=(1, 1, 4, 4), forward=lambda m, args: m(args[0]).sum()
    )
    assert custom.macs == 2 * 16
    assert count_parameters(model, trainable_only=True) == count_parameters(model)


def test_original_untouched_and_errors() -> None:
    model = nn.Linear(2, 2)
    count_macs(model, input_shape=(1, 2))
    assert model.weight.device.type == 'cpu'
    assert not model._forward_hooks
    with pytest.raises(ValueError, match='input_shape'):
        count_macs(model)
