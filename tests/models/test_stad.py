import numpy as np
import pytest
import torch

from torchgeo_ext.demos.scene import synthetic_anomaly_scene
from torchgeo_ext.losses.anomaly import stad_distillation_loss as distillation_loss
from torchgeo_ext.metrics.anomaly import auc_d_f
from torchgeo_ext.models.rx import rx_scores
from torchgeo_ext.models.stad import (
    STADStudent,
    STADTeacher,
    _grow_blob,
    bilateral_filter,
    saliency_scores,
    select_bands,
    small_target_filter,
    stad_scores,
    synthetic_blobs,
)


def test_teacher_paper_configuration() -> None:
    teacher = STADTeacher(10)
    assert len(teacher.stages) == 3
    layer = teacher.stages[0]
    assert isinstance(layer, torch.nn.TransformerEncoderLayer)
    assert layer.self_attn.num_heads == 2
    assert layer.linear1.out_features == 1000
    assert not layer.norm_first  # post-norm
    assert layer.dropout.p == 0.1  # the authors' (PyTorch default) dropout
    assert layer.activation_relu_or_gelu == 1  # ReLU
    outputs = teacher(torch.rand(2, 10, 8, 6))
    assert [o.shape for o in outputs] == [torch.Size([2, 10, 8, 6])] * 3
    with pytest.raises(ValueError, match='divisible'):
        STADTeacher(7)


def test_student_shapes_and_distillation_step() -> None:
    torch.manual_seed(0)
    teacher = STADTeacher(4, stages=2, ffn=16)
    student = STADStudent(4, stages=2, width=8)
    x = torch.rand(2, 4, 8, 8)
    with torch.no_grad():
        targets = teacher(x)
    outputs = student(x)
    assert [o.shape for o in outputs] == [t.shape for t in targets]
    # the authors' student: stages - 1 conv blocks with BatchNorm, then a per-pixel linear
    assert len(student.stages) == 1
    block = student.stages[0]
    assert isinstance(block, torch.nn.Sequential)
    kinds = [type(m) for m in block]
    assert kinds == [
        torch.nn.Conv2d,
        torch.nn.BatchNorm2d,
        torch.nn.ReLU,
        torch.nn.ConvTranspose2d,
        torch.nn.BatchNorm2d,
        torch.nn.ReLU,
    ]
    assert student.out.kernel_size == (1, 1)
    wide = STADStudent(10).stages[0]
    assert isinstance(wide, torch.nn.Sequential)
    conv = wide[0]
    assert isinstance(conv, torch.nn.Conv2d)
    assert conv.out_channels == 100
    optimizer = torch.optim.Adam(student.parameters(), lr=1e-2)
    with torch.no_grad():
        before = float(distillation_loss(student(x), targets))
    for _ in range(20):
        loss = distillation_loss(student(x), targets)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        assert float(distillation_loss(student(x), targets)) < before
    # the teacher receives no gradient from the distillation loss
    assert all(p.grad is None for p in teacher.parameters())


def test_synthetic_blobs() -> None:
    from scipy import ndimage

    gen = torch.Generator().manual_seed(0)
    for area in (3, 11, 20):
        shape = _grow_blob(area, gen)
        assert len(set(shape)) == area
        grid = np.zeros((41, 41))
        for r, c in shape:
            grid[20 + r, 20 + c] = 1
        _, components = ndimage.label(grid)  # 4-connected by default
        assert components == 1
    # the 81 x 81 canvas: blobs may only be cut at its far edges
    mask = synthetic_blobs(8, 81, 81, count=(1, 1), area=(5, 5), generator=gen)
    assert mask.shape == (8, 1, 81, 81)
    sums = mask.sum(dim=(1, 2, 3))
    assert bool((sums >= 1).all())
    assert bool((sums <= 5).all())
    assert int((sums == 5).sum()) >= 6
    many = synthetic_blobs(2, 64, 64, generator=gen)  # the authors' 64 x 64 crops
    assert many.shape == (2, 1, 64, 64)
    assert 1 <= int(many[0].sum()) <= 32 * 20


def test_bilateral_filter_is_opencv_style() -> None:
    gen = torch.Generator().manual_seed(0)
    image = torch.rand(1, 1, 5, 6, generator=gen) * 255
    out = bilateral_filter(image, radius=1, sigma_color=80.0, sigma_space=1.0)
    padded = torch.nn.functional.pad(image, (1, 1, 1, 1), mode='reflect')[0, 0]
    for r, c in ((0, 0), (2, 3), (4, 5)):
        centre = image[0, 0, r, c]
        num = den = torch.tensor(0.0)
        # circular support of radius 1: the centre and its 4 neighbours
        for dr, dc in ((0, 0), (-1, 0), (1, 0), (0, -1), (0, 1)):
            q = padded[r + 1 + dr, c + 1 + dc]
            weight = torch.exp(
                -(dr * dr + dc * dc) / 2.0 - (q - centre) ** 2 / (2 * 80.0**2)
            )
            num, den = num + weight * q, den + weight
        torch.testing.assert_close(out[0, 0, r, c], num / den)


def test_select_bands() -> None:
    x = torch.arange(12.0).view(1, 12, 1, 1).expand(1, 12, 2, 2)
    assert select_bands(x, 10)[0, :, 0, 0].tolist() == list(range(10))
    assert select_bands(x[:, :3], 5)[0, :, 0, 0].tolist() == [1, 0, 1, 2, 1]


def test_small_target_filter() -> None:
    rx_map = torch.zeros(16, 16) + 0.1 * torch.rand(16, 16)
    rx_map[8, 8] = 5.0
    stf = small_target_filter(rx_map)
    assert stf.shape == (16, 16)
    assert (stf >= 0).all()
    assert int(stf.argmax()) == 8 * 16 + 8
    # at least half of the pixels are suppressed to 0 (median subtracted)
    assert (stf == 0).float().mean() >= 0.5


def test_saliency_and_scores() -> None:
    torch.manual_seed(0)
    cube, truth = synthetic_anomaly_scene(24, 20, abundance=(0.3, 0.5), targets=4)
    teacher = STADTeacher(10, stages=2, ffn=32)
    x = torch.rand(1, 10, 8, 8)
    sal = saliency_scores(teacher, x, torch.ones(1, 1, 8, 8))
    assert sal.shape == (1, 8, 8)
    assert (sal >= 0).all()
    # untrained teacher, windows of 16 over a 24 x 24 scene (ragged), first 10 of 20 bands
    scores = stad_scores(cube, model=teacher, window=16)
    assert scores.shape == (24, 24)
    assert torch.isfinite(scores).all()
    # the small target filter gates the saliency to RX-salient pixels
    assert auc_d_f(scores, truth) > 0.8
    assert auc_d_f(rx_scores(cube), truth) > 0.8


def test_student_scores_whole_scene() -> None:
    torch.manual_seed(0)
    cube, _ = synthetic_anomaly_scene(20, 12, abundance=(0.3, 0.5), targets=3)
    student = STADStudent(10, width=8)
    scores = stad_scores(
        cube, model=student, window=4
    )  # window applies to the teacher only
    assert scores.shape == (20, 20)
    assert torch.isfinite(scores).all()
