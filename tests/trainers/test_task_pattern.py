"""Every task follows the one pattern of docs/architecture.md ("Writing a task")."""

from __future__ import annotations

import inspect
import re
import warnings
from pathlib import Path
from typing import Any

import lightning
import pytest
import torch
import yaml
from torch.utils.data import DataLoader
from torchmetrics import Metric, MetricCollection

import torchgeo_ext.trainers
from torchgeo_ext.models.api import list_models
from torchgeo_ext.trainers.base import PluginTask

ROOT = Path(__file__).parents[2]
#: The Lightning configs (federation configs, which have no task, are in conf/federated/).
CONFIGS = sorted((ROOT / 'tests' / 'conf').glob('*.yaml'))
PREFIXES = ('train_', 'val_', 'test_')


def _tasks() -> list[type[Any]]:
    tasks = []
    for name in torchgeo_ext.trainers.__all__:
        value = getattr(torchgeo_ext.trainers, name)
        if (
            inspect.isclass(value)
            and issubclass(value, PluginTask)
            and value is not PluginTask
        ):
            tasks.append(value)
    return tasks


TASKS = _tasks()


def _parameters(task: type[PluginTask]) -> dict[str, inspect.Parameter]:
    return dict(inspect.signature(task.__init__).parameters)


@pytest.mark.parametrize('task', TASKS, ids=[t.__name__ for t in TASKS])
def test_model_argument_names_registry_models(task: type[PluginTask]) -> None:
    parameters = _parameters(task)
    assert task.models, 'a task lists the registry models it trains'
    assert set(task.models) <= set(list_models())
    assert parameters['model'].default in task.models
    # one name for the model argument, one source for the schedule length
    assert 'method' not in parameters
    assert 'max_epochs' not in parameters
    if 'variant' in parameters:  # SuperYOLOTask's deprecated alias of `model`
        assert parameters['variant'].default is None


@pytest.mark.parametrize('task', TASKS, ids=[t.__name__ for t in TASKS])
def test_model_checked_once_against_the_registry(task: type[Any]) -> None:
    with pytest.raises(ValueError, match="unknown model 'nope'; choose one of"):
        task(model='nope')
    other = next(name for name in list_models() if name not in task.models)
    with pytest.raises(
        ValueError, match=f"unknown model '{other}' for {task.__name__}"
    ):
        task(model=other)


@pytest.mark.parametrize(
    'task',
    [t for t in TASKS if {'class_names', 'num_classes'} <= set(_parameters(t))],
    ids=lambda t: t.__name__,
)
def test_class_names_checked_once(task: type[Any]) -> None:
    with pytest.raises(ValueError, match='class_names has 1 names for 3 classes'):
        task(num_classes=3, class_names=['a'])


def test_every_task_has_a_tiny_config() -> None:
    paths = {yaml.safe_load(c.read_text())['model']['class_path'] for c in CONFIGS}
    assert {f'{t.__module__}.{t.__name__}' for t in TASKS} <= paths


class _Recorder(lightning.Callback):
    """Every metric name logged during a run."""

    def __init__(self) -> None:
        self.names: set[str] = set()

    def _record(self, trainer: lightning.Trainer) -> None:
        self.names |= set(trainer.callback_metrics)

    def on_train_batch_end(self, trainer: lightning.Trainer, *args: Any) -> None:
        self._record(trainer)

    def on_validation_end(self, trainer: lightning.Trainer, *args: Any) -> None:
        self._record(trainer)

    def on_train_end(self, trainer: lightning.Trainer, *args: Any) -> None:
        self._record(trainer)

    def on_test_end(self, trainer: lightning.Trainer, *args: Any) -> None:
        self._record(trainer)


def _cli(config: Path, tmp_path: Path) -> Any:
    from lightning.pytorch.cli import LightningCLI
    from torchgeo.datamodules import BaseDataModule
    from torchgeo.tasks import BaseTask

    import torchgeo_ext.datamodules

    for package in (torchgeo_ext.datamodules, torchgeo_ext.trainers):
        for name in package.__all__:
            getattr(package, name)
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        return LightningCLI(
            model_class=BaseTask,
            datamodule_class=BaseDataModule,
            subclass_mode_model=True,
            subclass_mode_data=True,
            seed_everything_default=0,
            save_config_callback=None,
            run=False,
            args=[
                '--config',
                str(config),
                '--trainer.fast_dev_run=1',
                # the configs' callbacks (TDDS recording and subsets) need full runs
                '--trainer.callbacks=[]',
                f'--trainer.default_root_dir={tmp_path}',
            ],
        )


def _check_structure(task: PluginTask) -> None:
    hparams = task.hparams
    ignored = {task.ignore} if isinstance(task.ignore, str) else set(task.ignore or ())
    for name, parameter in _parameters(type(task)).items():
        if name == 'self' or name in ignored or parameter.kind is parameter.VAR_KEYWORD:
            continue
        assert name in hparams, f'{name} is not a saved hyperparameter'
    collections = {}
    for stage in ('train', 'val', 'test'):
        metrics = task.stage_metrics(stage)
        assert isinstance(metrics, MetricCollection)
        assert metrics.prefix == f'{stage}_'
        collections[stage] = metrics
    # no metric lives outside the three collections
    inside = {
        id(m)
        for c in collections.values()
        for m in c.modules()
        if isinstance(m, Metric)
    }
    stray = [
        name
        for name, module in task.named_modules()
        if isinstance(module, Metric) and id(module) not in inside
    ]
    assert stray == []


@pytest.mark.slow
@pytest.mark.parametrize('config', CONFIGS, ids=[path.stem for path in CONFIGS])
def test_task_follows_the_pattern(config: Path, tmp_path: Path) -> None:
    cli = _cli(config, tmp_path)
    task = cli.model
    assert isinstance(task, PluginTask)
    _check_structure(task)
    recorder = _Recorder()
    cli.trainer.callbacks.append(recorder)
    cli.trainer.fit(task, cli.datamodule)
    cli.trainer.test(task, cli.datamodule)
    assert recorder.names, 'nothing was logged'
    for name in recorder.names:
        assert name.startswith(PREFIXES), f'{name} has no train_/val_/test_ prefix'
    assert 'train_loss' in recorder.names
    assert any(name.startswith('test_') for name in recorder.names)
    monitored = [task.monitor]
    if task.monitor != 'val_loss':  # evaluated from the metric collection
        monitored.append(re.sub('^val_', 'test_', task.monitor))
    for name in monitored:
        assert name in recorder.names, f'{name} (monitored) was not logged'


def test_architecture_example_is_a_working_task(tmp_path: Path) -> None:
    text = (ROOT / 'docs' / 'architecture.md').read_text()
    section = text.split('## Writing a task', 1)[1]
    code = section.split('```python\n', 1)[1].split('```', 1)[0]
    namespace: dict[str, Any] = {'__name__': 'architecture_example'}
    exec(compile(code, 'docs/architecture.md', 'exec'), namespace)  # noqa: S102
    task = namespace['MinimalSegmentationTask'](class_names=['land', 'water'])
    _check_structure(task)
    with pytest.raises(ValueError, match="unknown model 'dianet_w48'"):
        namespace['MinimalSegmentationTask'](model='dianet_w48')
    generator = torch.Generator().manual_seed(0)
    data = [
        {
            'image': torch.rand(3, 16, 16, generator=generator),
            'mask': torch.randint(0, 2, (16, 16), generator=generator),
        }
        for _ in range(4)
    ]
    loader: DataLoader[dict[str, torch.Tensor]] = DataLoader(data, batch_size=2)  # type: ignore[arg-type]
    recorder = _Recorder()
    trainer = lightning.Trainer(
        max_epochs=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        accelerator='cpu',
        callbacks=[recorder],
        default_root_dir=tmp_path,
    )
    trainer.fit(task, loader, loader)
    trainer.test(task, loader)
    for stage in PREFIXES:
        assert {f'{stage}loss', f'{stage}accuracy', f'{stage}IoU_water'} <= (
            recorder.names
        )
