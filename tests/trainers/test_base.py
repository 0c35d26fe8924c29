from pathlib import Path

import lightning
import pytest
import torch
from torch import nn

from torchgeo_ext.errors import InvalidInputError, MissingInputError
from torchgeo_ext.trainers.base import PluginTask, load_task, task_class_path


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
