from pathlib import Path
from types import SimpleNamespace
from typing import Any

import lightning
import pytest
import torch
from torch import nn

from torchgeo_ext.errors import InvalidInputError, MissingInputError
from torchgeo_ext.trainers.base import (
    PluginTask,
    datamodule_class_names,
    load_task,
    task_class_path,
)


class TinyTask(PluginTask):
    def __init__(self, channels: int = 3) -> None:
        super().__init__()

    def configure_models(self) -> None:
        self.model = nn.Conv2d(self.hparams['channels'], 2, 1)


def test_checkpoint_round_trip(tmp_path: Path) -> None:
    task = TinyTask(channels=4)
    trainer = lightning.Trainer(logger=False, enable_checkpointing=False)
    trainer.strategy.connect(task)
    path = tmp_path / 'tiny.ckpt'
    trainer.save_checkpoint(path)
    assert task_class_path(path) == f'{__name__}.TinyTask'
    loaded = load_task(path)
    assert isinstance(loaded, TinyTask)
    assert not loaded.training
    assert torch.equal(loaded.model.weight, task.model.weight)


def test_missing_and_foreign_checkpoints(tmp_path: Path) -> None:
    with pytest.raises(MissingInputError, match='checkpoint not found'):
        load_task(tmp_path / 'nope.ckpt')
    foreign = tmp_path / 'foreign.ckpt'
    torch.save({'state_dict': {}}, foreign)
    with pytest.raises(InvalidInputError, match='not a torchgeo-ext task checkpoint'):
        load_task(foreign)
    garbage = tmp_path / 'garbage.ckpt'
    garbage.write_text('not a checkpoint')
    with pytest.raises(InvalidInputError, match='not a readable checkpoint'):
        load_task(garbage)


class NamedTask(PluginTask):
    def __init__(
        self, num_classes: int = 2, class_names: list[str] | None = None
    ) -> None:
        super().__init__()

    def configure_models(self) -> None:
        self.model = nn.Identity()


def test_class_names_conventions() -> None:
    # Not guessed from the count: class_<i> without names.
    assert NamedTask().class_names == ['class_0', 'class_1']
    assert NamedTask(class_names=['a', 'b']).class_names == ['a', 'b']
    # From the data module's training dataset (a Subset unwrapped) at fit.
    dataset = SimpleNamespace(classes=['car', 'van'])
    datamodule: Any = SimpleNamespace(train_dataset=SimpleNamespace(dataset=dataset))
    assert datamodule_class_names(datamodule) == ['car', 'van']
    assert datamodule_class_names(SimpleNamespace(class_names=('x',))) == ['x']
    assert datamodule_class_names(SimpleNamespace()) is None
    assert datamodule_class_names(None) is None
    task = NamedTask()
    task.record_class_names(['car', 'van'])
    assert task.class_names == ['car', 'van']
    # Given names win; a wrong count is not recorded.
    given = NamedTask(class_names=['a', 'b'])
    given.record_class_names(['car', 'van'])
    assert given.class_names == ['a', 'b']
    other = NamedTask()
    other.record_class_names(['one', 'two', 'three'])
    assert other.class_names == ['class_0', 'class_1']
    # A task without a class_names argument records nothing.
    tiny = TinyTask()
    tiny.record_class_names(['car'])
    assert 'class_names' not in tiny.hparams


def test_passthrough_keys() -> None:
    task = TinyTask()
    batch = {'image': 1, 'crs': ['EPSG:4326'], 'frame': 3, 'other': 2}
    out = task.passthrough(batch, {'prediction': 0})
    assert out == {'prediction': 0, 'crs': ['EPSG:4326'], 'frame': 3}
