import pytest
import torch

from torchgeo_ext.losses.anomaly import stad_distillation_loss, stad_teacher_loss


def test_teacher_loss_sums_stages() -> None:
    clean = torch.zeros(1, 2, 3, 3)
    outputs = [torch.ones(1, 2, 3, 3), 2 * torch.ones(1, 2, 3, 3)]
    assert float(stad_teacher_loss(outputs, clean)) == pytest.approx(1 + 4)


def test_distillation_loss_detaches_the_teacher() -> None:
    teacher = [torch.ones(1, 2, 2, 2, requires_grad=True)]
    student = [torch.zeros(1, 2, 2, 2, requires_grad=True)]
    loss = stad_distillation_loss(student, teacher)
    assert float(loss.detach()) == pytest.approx(1.0)
    loss.backward()
    assert teacher[0].grad is None
    assert student[0].grad is not None
    with pytest.raises(ValueError, match='zip'):
        stad_distillation_loss(student, teacher * 2)
