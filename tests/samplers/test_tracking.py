import math
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from torch import Tensor
from torch.utils.data import DataLoader

from torchgeo_ext.datasets.hotc import HOTC
from torchgeo_ext.samplers.tracking import (
    TrackingPairDataset,
    TrackingPairSampler,
    crop_around_box,
    valid_frames,
)

ROOT = Path(__file__).parents[1] / 'data' / 'hotc'


def coordinate_image(height: int = 40, width: int = 50) -> Tensor:
    """Channel 0 holds x + 0.5, channel 1 holds y + 0.5 (pixel centres)."""
    yy, xx = torch.meshgrid(
        torch.arange(height, dtype=torch.float32),
        torch.arange(width, dtype=torch.float32),
        indexing='ij',
    )
    return torch.stack([xx + 0.5, yy + 0.5])


def test_crop_without_resize_is_exact() -> None:
    image = coordinate_image()
    box = torch.tensor([10.0, 12.0, 4.0, 4.0])  # centre (12, 14), sqrt(wh) = 4
    crop, crop_box, window = crop_around_box(image, box, factor=2.0, output_size=8)
    # side 8, origin round(12 - 4) = 8, round(14 - 4) = 10
    assert window.tolist() == [8, 10, 16, 18]
    assert torch.equal(crop, image[:, 10:18, 8:16])
    assert crop_box.tolist() == [2, 2, 6, 6]


def test_crop_resized_box_and_centre() -> None:
    image = coordinate_image()
    box = torch.tensor([20.0, 10.0, 6.0, 6.0])
    crop, crop_box, window = crop_around_box(image, box, factor=4.0, output_size=12)
    # side 24 -> scale 0.5; origin (23 - 12, 13 - 12) = (11, 1)
    assert window.tolist() == [11, 1, 35, 25]
    assert crop_box.tolist() == pytest.approx([4.5, 4.5, 7.5, 7.5])
    # crop pixel (r, c) samples the frame around x = 11 + 2c + 1, y = 1 + 2r + 1
    for r, c in ((5, 7), (3, 6), (8, 2)):  # interior (antialias edge effects)
        assert crop[0, r, c].item() == pytest.approx(11 + 2 * c + 1)
        assert crop[1, r, c].item() == pytest.approx(1 + 2 * r + 1)
    # the box's centre maps to the crop's centre
    cx = (crop_box[0] + crop_box[2]) / 2
    assert cx.item() == pytest.approx(6.0)


def test_crop_pads_outside_frame() -> None:
    image = coordinate_image(10, 10)
    box = torch.tensor([0.0, 0.0, 2.0, 2.0])
    crop, crop_box, window = crop_around_box(image, box, factor=4.0, output_size=8)
    assert window.tolist() == [-3, -3, 5, 5]
    assert (crop[:, :3] == 0).all()
    assert (crop[:, :, :3] == 0).all()
    assert torch.equal(crop[:, 3:, 3:], image[:, :5, :5])
    assert crop_box.tolist() == [3, 3, 5, 5]


def test_crop_jitter_keeps_box_consistent() -> None:
    image = coordinate_image()
    box = torch.tensor([20.0, 15.0, 6.0, 4.0])
    gen = torch.Generator().manual_seed(0)
    for _ in range(20):
        crop, crop_box, window = crop_around_box(
            image, box, 4.0, 32, center_jitter=3.0, scale_jitter=0.25, generator=gen
        )
        assert crop.shape == (2, 32, 32)
        side = float(window[2] - window[0])
        scale = 32 / side
        expected = [
            (20 - window[0]) * scale,
            (15 - window[1]) * scale,
            (26 - window[0]) * scale,
            (19 - window[1]) * scale,
        ]
        assert crop_box.tolist() == pytest.approx(
            [float(v) for v in expected], abs=1e-4
        )
        # jitter moves the centre by at most sqrt(w' h') * 3 / 2 (+ rounding)
        centre = (window[:2] + window[2:]) / 2
        shift = torch.linalg.vector_norm(centre - torch.tensor([23.0, 17.0]))
        assert shift <= math.sqrt(2) * (side / 4 * 1.5 + 1)


@dataclass
class FakeSequence:
    boxes: Tensor

    def __len__(self) -> int:
        return len(self.boxes)


class FakeTracking:
    def __init__(self, lengths: list[int], invalid: dict[int, list[int]]) -> None:
        self.sequences = []
        for s, n in enumerate(lengths):
            boxes = torch.tensor([[10.0 + t, 10.0, 4.0, 4.0] for t in range(n)])
            for t in invalid.get(s, []):
                boxes[t] = torch.tensor([float('nan')] * 4)
            self.sequences.append(FakeSequence(boxes))

    def load_frame(self, sequence: int, frame: int) -> Tensor:
        image = coordinate_image()
        image[0] += 100 * sequence + frame  # identify the frame
        return image


def test_valid_frames() -> None:
    boxes = torch.tensor([[0.0, 0, 1, 1], [0, 0, 0, 1], [float('nan'), 0, 1, 1]])
    assert valid_frames(boxes).tolist() == [0]


def test_pair_sampler_gap_and_validity() -> None:
    data = FakeTracking([30, 5, 1], {0: [3, 4, 5], 1: [0, 1, 2, 3, 4]})
    sampler = TrackingPairSampler(
        data, max_gap=2, length=300, generator=torch.Generator().manual_seed(1)
    )
    assert len(sampler) == 300
    pairs = list(sampler)
    assert len(pairs) == 300
    seqs = {p[0] for p in pairs}
    assert seqs == {0, 2}  # sequence 1 has no valid box
    for seq, t, s in pairs:
        assert abs(t - s) <= 2
        assert t not in (3, 4, 5) or seq != 0
        assert s not in (3, 4, 5) or seq != 0
        if seq == 0:
            assert t != s  # another frame qualifies
        else:
            assert t == s == 0  # one-frame sequence
    gaps = {abs(t - s) for seq, t, s in pairs if seq == 0}
    assert gaps == {1, 2}


def test_pair_sampler_default_length_and_errors() -> None:
    data = FakeTracking([4, 3], {1: [0]})
    assert len(TrackingPairSampler(data)) == 6
    with pytest.raises(ValueError, match='max_gap'):
        TrackingPairSampler(data, max_gap=-1)
    with pytest.raises(ValueError, match='no sequence'):
        TrackingPairSampler(FakeTracking([2], {0: [0, 1]}))


def test_pair_dataset_geometry() -> None:
    data = FakeTracking([10], {})
    pairs = TrackingPairDataset(
        data,
        template_size=8,
        search_size=16,
        template_factor=2.0,
        search_factor=4.0,
        center_jitter=(0.0, 0.0),
        scale_jitter=(0.0, 0.0),
    )
    sample = pairs[0, 2, 5]
    assert sample['template'].shape == (2, 8, 8)
    assert sample['search'].shape == (2, 16, 16)
    # without jitter the target is centred, sqrt(wh) * factor -> crop size
    assert sample['template_bbox_xyxy'].tolist() == [[2, 2, 6, 6]]
    assert sample['search_bbox_xyxy'].tolist() == [[6, 6, 10, 10]]
    # template from frame 2 (box x = 12), search from frame 5 (box x = 15)
    assert sample['template_window'].tolist() == [10, 8, 18, 16]
    assert torch.equal(sample['template'], data.load_frame(0, 2)[:, 8:16, 10:18])
    assert torch.equal(sample['search'], data.load_frame(0, 5)[:, 4:20, 9:25])
    assert sample['search_frame'].item() == 5
    with pytest.raises(ValueError, match='no valid box'):
        TrackingPairDataset(FakeTracking([3], {0: [1]}))[0, 0, 1]


def test_pairs_from_hotc() -> None:
    ds = HOTC(ROOT / 'hotc2020')
    pairs = TrackingPairDataset(ds, template_size=8, search_size=16)
    sampler = TrackingPairSampler(
        ds, max_gap=2, generator=torch.Generator().manual_seed(0)
    )
    loader = DataLoader(pairs, sampler=sampler, batch_size=3)
    batch = next(iter(loader))
    assert batch['template'].shape == (3, 16, 8, 8)
    assert batch['search'].shape == (3, 16, 16, 16)
    assert batch['search_bbox_xyxy'].shape == (3, 1, 4)
    assert len(pairs) == len(ds)
    # the target (brightest, flat) sits inside the template box
    tpl = batch['template'][0, 0]
    x1, y1, x2, y2 = (round(float(v)) for v in batch['template_bbox_xyxy'][0, 0])
    assert tpl[y1:y2, x1:x2].mean() > tpl.mean()
