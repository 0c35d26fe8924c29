"""Tests of the shared YOLO layers in torchgeo_ext.models.yolo_layers."""

import pytest
import torch

from torchgeo_ext.models.yolo_layers import SPP


@pytest.mark.parametrize('kernel_sizes', [(5, 9, 13), (13, 5, 9), (3, 7)])
def test_spp_sequential_pools_equal_parallel_pyramid(
    kernel_sizes: tuple[int, ...],
) -> None:
    torch.manual_seed(0)
    spp = SPP(8, 6, kernel_sizes).eval()
    x = torch.randn(2, 8, 11, 17)  # odd sizes: borders where the pools are cut
    hidden = spp.cv1(x)
    parallel = [pool(hidden) for pool in spp.m]  # the pyramid as the paper draws it
    expected = spp.cv2(torch.cat([hidden, *parallel], dim=1))
    torch.testing.assert_close(spp(x), expected, rtol=0, atol=0)
