import pytest
import torch

from torchgeo_ext.demo_scene import synthetic_anomaly_scene
from torchgeo_ext.metrics.anomaly import auc_d_f
from torchgeo_ext.models.rx import rx_scores
from torchgeo_ext.models.stad import (
    STADStudent,
    STADTeacher,
    distillation_loss,
    saliency_scores,
    small_target_filter,
    stad_scores,
    synthetic_blobs,
    teacher_loss,
)


def test_teacher_paper_configuration() -> None:
    teacher = STADTeacher(10)
    assert len(teacher.stages) == 3
    layer = teacher.stages[0]
    assert isinstance(layer, torch.nn.TransformerEncoderLayer)
    assert layer.self_attn.num_heads == 2
    assert layer.linear1.out_features == 1000
    assert not layer.norm_first  # post-norm
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


def test_teacher_loss_sums_stages() -> None:
    clean = torch.zeros(1, 2, 3, 3)
    outputs = [torch.ones(1, 2, 3, 3), 2 * torch.ones(1, 2, 3, 3)]
    assert float(teacher_loss(outputs, clean)) == pytest.approx(1 + 4)


def test_synthetic_blobs() -> None:
    gen = torch.Generator().manual_seed(0)
    mask = synthetic_blobs(3, 32, 32, count=(1, 1), area=(5, 5), generator=gen)
    assert mask.shape == (3, 1, 32, 32)
    assert mask.sum(dim=(1, 2, 3)).tolist() == [5.0, 5.0, 5.0]
    many = synthetic_blobs(2, 64, 64, generator=gen)
    assert 3 <= int(many[0].sum()) <= 32 * 20


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
    # untrained teacher, windows of 16 over a 24 x 24 scene (ragged), 20 -> 10 bands
    scores = stad_scores(cube, model=teacher, window=16)
    assert scores.shape == (24, 24)
    assert torch.isfinite(scores).all()
    # the small target filter gates the saliency to RX-salient pixels
    assert auc_d_f(scores, truth) > 0.8
    assert auc_d_f(rx_scores(cube), truth) > 0.8
