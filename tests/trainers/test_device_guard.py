"""CPU-side guards for tensors created on the wrong device (GPU users).

On a GPU, a tensor made inside a step without ``device=`` lands on the CPU and
fails to combine with the model's CUDA tensors. Here every step of every task
runs with ``meta`` as the default device while the model and batch stay on the
CPU: a tensor made without ``device=`` is then a meta tensor, and combining it
with the CPU model fails the same way, on the CPU.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import pkgutil
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from lightning.pytorch import LightningModule
from torch.overrides import TorchFunctionMode
from torch.utils._device import _device_constructors

import torchgeo_ext
import torchgeo_ext.trainers
from torchgeo_ext.cli import main

CONF = Path(__file__).parents[1] / 'conf'
CONFIGS = sorted(CONF.glob('*.yaml'))
STEPS = ('training_step', 'validation_step', 'test_step', 'predict_step')


def _modules() -> Iterator[Any]:
    for info in pkgutil.walk_packages(torchgeo_ext.__path__, 'torchgeo_ext.'):
        yield importlib.import_module(info.name)


def _allowed(cls: type, attr: str) -> bool:
    # TorchGeo's data-module convention: Kornia's Normalize moves them.
    return attr in ('mean', 'std') and cls.__name__.endswith('DataModule')


def test_no_module_level_tensors() -> None:
    # A tensor made at import time stays on the CPU whatever the model's device.
    found = []
    for module in _modules():
        for name, value in vars(module).items():
            if isinstance(value, torch.Tensor):
                found.append(f'{module.__name__}.{name}')
            elif inspect.isclass(value) and value.__module__ == module.__name__:
                found += [
                    f'{module.__name__}.{name}.{attr}'
                    for attr, item in vars(value).items()
                    if isinstance(item, torch.Tensor) and not _allowed(value, attr)
                ]
    assert found == []


class _MetaByDefault(TorchFunctionMode):
    """``torch.device('meta')`` as a context, for this library's code only.

    Other libraries' (Kornia's, torchmetrics') deliberate host-side tensors
    keep the CPU default, and ``as_tensor`` of a tensor keeps its device. This
    module is in scope too, for the guard's own test.
    """

    def __torch_function__(
        self,
        func: Callable[..., Any],
        types: Any,
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
    ) -> Any:
        kwargs = kwargs or {}
        keeps = func in (torch.as_tensor, torch.asarray) and isinstance(
            args[0], torch.Tensor
        )
        caller = sys._getframe(1).f_globals.get('__name__', '')
        ours = caller.startswith(('torchgeo_ext.', __name__))
        if (
            ours
            and func in _device_constructors()
            and kwargs.get('device') is None
            and not keeps
        ):
            kwargs['device'] = 'meta'
        return func(*args, **kwargs)


def _on_meta_by_default(step: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(step)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        with _MetaByDefault():
            return step(*args, **kwargs)

    return guarded


def _on_cpu_by_default(method: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(method)
    def unguarded(*args: Any, **kwargs: Any) -> Any:
        with torch.device('cpu'):
            return method(*args, **kwargs)

    return unguarded


@pytest.fixture
def guarded_steps(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every step of every task runs with ``meta`` as the default device.

    Lightning's ``log`` keeps the CPU default: its result collection makes its
    own tensors and moves them where they belong.
    """
    for method in ('log', 'log_dict'):
        original = getattr(LightningModule, method)
        monkeypatch.setattr(LightningModule, method, _on_cpu_by_default(original))
    for name in torchgeo_ext.trainers.__all__:
        task = getattr(torchgeo_ext.trainers, name)
        if not inspect.isclass(task):
            continue
        for step in STEPS:
            if step in vars(task):
                monkeypatch.setattr(task, step, _on_meta_by_default(vars(task)[step]))


def test_guard_catches_a_tensor_made_without_device(guarded_steps: None) -> None:
    # The guard itself: a step that forgets device= fails on the CPU.
    step = _on_meta_by_default(lambda x: x + torch.arange(x.shape[0]))
    with pytest.raises(RuntimeError, match='meta'):
        step(torch.ones(3))
    step = _on_meta_by_default(lambda x: x + torch.arange(x.shape[0], device=x.device))
    assert step(torch.ones(3)).tolist() == [1.0, 2.0, 3.0]


@pytest.mark.slow
@pytest.mark.parametrize('config', CONFIGS, ids=[path.stem for path in CONFIGS])
def test_steps_create_tensors_on_the_data_device(
    config: Path, tmp_path: Path, guarded_steps: None
) -> None:
    common = [
        '--config',
        str(config),
        '--trainer.fast_dev_run=1',
        # the configs' callbacks (TDDS recording and subsets) need full runs
        '--trainer.callbacks=[]',
        f'--trainer.default_root_dir={tmp_path}',
    ]
    for command in ('fit', 'test', 'predict'):
        assert main([command, *common]) == 0


def test_scene_scoring_creates_tensors_on_the_cube_device() -> None:
    # The scoring functions steps and pipelines call, on a CPU cube, guarded.
    from torchgeo_ext.metrics.anomaly import anomaly_metrics
    from torchgeo_ext.models.bsdm import BSDM, bsdm_scores
    from torchgeo_ext.models.local_anomaly import crd_scores, lrx_scores
    from torchgeo_ext.models.rx import rx_scores
    from torchgeo_ext.models.stad import STADTeacher, stad_scores

    torch.manual_seed(0)
    cube = torch.rand(6, 9, 9)
    target = torch.zeros(9, 9, dtype=torch.bool)
    target[4, 4] = True
    bsdm = BSDM(
        4, embed_dim=8, time_dim=8, time_hidden=8, stats_hidden=8, blocks=[(8, 8, 8)]
    )
    scorers = {
        'rx': lambda: rx_scores(cube),
        'lrx': lambda: lrx_scores(cube, inner=3, outer=5),
        'crd': lambda: crd_scores(cube, inner=3, outer=5),
        'bsdm': lambda: bsdm_scores(cube, model=bsdm, iterations=1, repeats=1),
        'stad': lambda: stad_scores(
            cube, model=STADTeacher(4, stages=1, ffn=8), window=4
        ),
    }
    for name, score in scorers.items():
        scores = _on_meta_by_default(score)()
        assert scores.shape == (9, 9), name
        assert scores.device.type == 'cpu', name
        metrics = _on_meta_by_default(anomaly_metrics)(scores, target)
        assert 0 <= metrics['auc_df'] <= 1, name


def test_tracking_metrics_create_tensors_on_the_boxes_device() -> None:
    from torchgeo_ext.metrics.tracking import OTBMetric, precision_at, success_auc

    pred = torch.tensor([[0.0, 0.0, 10.0, 10.0], [1.0, 1.0, 10.0, 10.0]])
    target = torch.tensor([[0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 10.0, 10.0]])
    assert _on_meta_by_default(success_auc)(pred, target) > 0
    assert _on_meta_by_default(precision_at)(pred, target) == 1.0
    metric = OTBMetric()
    _on_meta_by_default(metric.update)(pred, target)
    assert float(metric.compute()['precision_20']) == 1.0
