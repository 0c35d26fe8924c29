import copy
import math

import pytest
import torch
from torch import nn
from torch.optim import SGD, Adam, AdamW

from torchgeo_ext.trainers.optimization import (
    ExponentialMovingAverage,
    build_optimizer,
    decay_groups,
    poly,
    schedule_steps,
    warmup_cosine,
)


def _yolov5_factor(step: int, warmup: int, total: int, final: float) -> float:
    """The hand-written SuperYOLO schedule this module replaced."""
    cosine = ((1 - math.cos(min(step, total) * math.pi / max(total, 1))) / 2) * (
        final - 1
    ) + 1
    if warmup > 0 and step < warmup:
        return cosine * (step + 1) / warmup
    return cosine


def _sequential_factor(step: int, warmup: int, total: int, final: float) -> float:
    """The hand-written oriented-detection schedule this module replaced."""
    if step < warmup:
        return (step + 1) / warmup
    progress = min((step - warmup) / max(total - warmup, 1), 1.0)
    return final + (1 - final) * 0.5 * (1 + math.cos(math.pi * progress))


def _factors(scheduler_fn: object, steps: int, lr: float = 0.5) -> list[float]:
    param = nn.Parameter(torch.zeros(1))
    optimizer = SGD([param], lr=lr)
    scheduler = scheduler_fn(optimizer)  # type: ignore[operator]
    out = []
    for _ in range(steps):
        out.append(optimizer.param_groups[0]['lr'] / lr)
        optimizer.step()
        scheduler.step()
    return out


@pytest.mark.parametrize(
    ('warmup', 'total', 'final'), [(10, 100, 0.01), (1, 50, 0.2), (0, 100, 0.2)]
)
def test_warmup_cosine_sequential_equals_old(
    warmup: int, total: int, final: float
) -> None:
    got = _factors(lambda o: warmup_cosine(o, warmup, total, final), total + 1)
    want = [_sequential_factor(s, warmup, total, final) for s in range(total + 1)]
    assert got == pytest.approx(want, abs=1e-12)
    if warmup == 10:
        # Key steps of the old test: start of warm-up, its end, the end.
        assert got[0] == pytest.approx(0.1)
        assert got[10] == pytest.approx(1.0)
        assert got[100] == pytest.approx(0.01)


def test_warmup_cosine_from_start_equals_old() -> None:
    # A realistic length: the chained composition equals the product to 1e-4.
    warmup, total, final = 30, 3000, 0.2
    got = _factors(
        lambda o: warmup_cosine(o, warmup, total, final, cosine_from='start'), total + 1
    )
    want = [_yolov5_factor(s, warmup, total, final) for s in range(total + 1)]
    assert got == pytest.approx(want, abs=1e-4)
    assert got[0] == pytest.approx(1 / 30)
    assert got[1500] == pytest.approx(0.6, abs=1e-4)
    assert got[3000] == pytest.approx(0.2, abs=1e-4)
    # Short runs: the ramp and the end are exact, the middle close.
    got = _factors(lambda o: warmup_cosine(o, 10, 100, 0.2, cosine_from='start'), 101)
    assert got[0] == pytest.approx(0.1)
    assert got[50] == pytest.approx(0.6, abs=3e-3)
    assert got[100] == pytest.approx(0.2, abs=3e-3)
    no_warmup = _factors(
        lambda o: warmup_cosine(o, 0, 100, 0.2, cosine_from='start'), 101
    )
    assert no_warmup[0] == 1.0
    assert no_warmup == pytest.approx(
        [_yolov5_factor(s, 0, 100, 0.2) for s in range(101)], abs=1e-12
    )


def test_warmup_cosine_needs_one_lr() -> None:
    a, b = nn.Parameter(torch.zeros(1)), nn.Parameter(torch.zeros(1))
    optimizer = SGD([{'params': [a], 'lr': 0.1}, {'params': [b], 'lr': 0.2}])
    with pytest.raises(ValueError, match='one learning rate'):
        warmup_cosine(optimizer, 1, 10, 0.1)


def test_poly_equals_old() -> None:
    got = _factors(lambda o: poly(o, 20, 0.9), 25)
    want = [max(0.0, 1 - s / 20) ** 0.9 for s in range(25)]
    assert got == pytest.approx(want, abs=1e-12)


def test_build_optimizer_and_groups() -> None:
    model = nn.Sequential(nn.Conv2d(2, 3, 3), nn.BatchNorm2d(3))
    model[1].weight.requires_grad_(False)
    groups = decay_groups(model, 5e-4)
    assert [len(g['params']) for g in groups] == [1, 2]  # kernel; bias, BN bias
    assert [g['weight_decay'] for g in groups] == [5e-4, 0.0]
    sgd = build_optimizer(groups, 'sgd', lr=0.1, momentum=0.8, nesterov=True)
    assert isinstance(sgd, SGD)
    assert sgd.defaults['nesterov'] is True
    assert sgd.param_groups[0]['weight_decay'] == 5e-4
    assert sgd.param_groups[1]['weight_decay'] == 0.0
    adamw = build_optimizer(model.parameters(), 'AdamW', lr=1e-3, momentum=0.85)
    assert isinstance(adamw, AdamW)
    assert adamw.defaults['betas'] == (0.85, 0.999)
    assert isinstance(build_optimizer(model.parameters(), 'adam'), Adam)
    with pytest.raises(ValueError, match='unknown optimizer'):
        build_optimizer(model.parameters(), 'lion')


def test_schedule_steps() -> None:
    assert schedule_steps(None, 3.0) == (1, 0)

    class Trainer:
        estimated_stepping_batches = 100
        max_epochs = 10

    assert schedule_steps(Trainer(), 3.0) == (100, 30)
    assert schedule_steps(Trainer(), 0.25) == (100, 2)


def _old_ema_update(
    ema: nn.Module, model: nn.Module, updates: int, decay: float, tau: float
) -> None:
    """The hand-written YOLOv5 EMA this module replaced."""
    d = decay * (1 - math.exp(-updates / tau))
    source = model.state_dict()
    for name, value in ema.state_dict().items():
        if value.dtype.is_floating_point:
            value.mul_(d).add_(source[name].detach(), alpha=1 - d)


def test_ema_equals_old_and_averages_batchnorm() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(2, 4, 3), nn.BatchNorm2d(4), nn.ReLU())
    ema = ExponentialMovingAverage(model, decay=0.9, tau=3.0)
    old = copy.deepcopy(model)
    optimizer = SGD(model.parameters(), lr=0.1)
    for step in range(1, 6):
        model(torch.randn(4, 2, 8, 8)).square().mean().backward()
        optimizer.step()
        optimizer.zero_grad()
        ema.update_parameters(model)
        _old_ema_update(old, model, step, 0.9, 3.0)
    assert int(ema.n_averaged) == 6
    averaged = ema.module.state_dict()
    for name, value in old.state_dict().items():
        if value.dtype.is_floating_point:
            torch.testing.assert_close(averaged[name], value, rtol=0, atol=1e-7)
    # BatchNorm running statistics are averaged, not copied from the model.
    bn_mean = averaged['1.running_mean']
    bn = model[1]
    assert isinstance(bn, nn.BatchNorm2d)
    assert bn.running_mean is not None
    assert not torch.allclose(bn_mean, bn.running_mean)
    assert not torch.allclose(bn_mean, torch.zeros(4))
    # Integer buffers follow the model.
    assert int(averaged['1.num_batches_tracked']) == 5
    assert not any(p.requires_grad for p in ema.parameters())
    # The average is a module: forward runs the averaged copy.
    x = torch.randn(1, 2, 5, 5)
    ema.eval()
    torch.testing.assert_close(ema(x), ema.module(x))


def test_ema_ramp_and_constant_decay() -> None:
    ramp = ExponentialMovingAverage(nn.Linear(1, 1), decay=0.5, tau=1.0)
    assert ramp.current_decay(1) == pytest.approx(0.5 * (1 - math.exp(-1)))
    model = nn.Linear(1, 1, bias=False)
    nn.init.zeros_(model.weight)
    constant = ExponentialMovingAverage(model, decay=0.75, tau=None)
    nn.init.ones_(model.weight)
    averaged = constant.module
    assert isinstance(averaged, nn.Linear)
    constant.update_parameters(model)
    assert averaged.weight.item() == pytest.approx(0.25)
    constant.update_parameters(model)
    assert averaged.weight.item() == pytest.approx(1 - 0.75**2)
    # The update count is a buffer: it is saved and restored with the state.
    state = constant.state_dict()
    assert int(state['n_averaged']) == 3
    fresh = ExponentialMovingAverage(nn.Linear(1, 1, bias=False), decay=0.75)
    fresh.load_state_dict(state)
    assert int(fresh.n_averaged) == 3
