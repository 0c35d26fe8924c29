"""Tests of the shared YOLO layers in torchgeo_ext.models.yolo_layers."""

import pytest
import torch

from torchgeo_ext.models.yolo_layers import SPP, top_candidates


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


def test_top_candidates_best_class_threshold_then_top_k() -> None:
    boxes = torch.arange(5.0)[:, None].expand(5, 4)
    class_scores = torch.tensor(
        [[0.1, 0.9], [0.3, 0.2], [0.05, 0.01], [0.7, 0.6], [0.4, 0.8]]
    )
    kept, scores, labels = top_candidates(boxes, class_scores, 0.2, 3)
    # box 2 (best 0.05) and box 1 (best 0.3, 4th) are dropped
    torch.testing.assert_close(kept[:, 0], torch.tensor([0.0, 4.0, 3.0]))
    torch.testing.assert_close(scores, torch.tensor([0.9, 0.8, 0.7]))
    assert labels.tolist() == [1, 1, 0]
    assert labels.dtype == torch.int64
    none = top_candidates(boxes, class_scores, 0.95, 3)
    assert [t.shape[0] for t in none] == [0, 0, 0]
