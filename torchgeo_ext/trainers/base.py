"""The base class of this library's Lightning tasks, and checkpoint loading by class.

Every task of :mod:`torchgeo_ext.trainers` derives from :class:`PluginTask`,
which records its own class path in each checkpoint. The command-line tools
(``detect``, ``segment``, ``anomaly``) can then rebuild the right task from a
checkpoint alone with :func:`load_task`.
"""

from __future__ import annotations

import importlib
import os
from typing import Any

import torch
from torchgeo.tasks import BaseTask

from ..errors import InvalidInputError, MissingInputError

#: Checkpoint key holding the task's import path.
TASK_CLASS_KEY = 'torchgeo_ext_task_class'


class PluginTask(BaseTask):
    """A TorchGeo task whose checkpoints know which class wrote them.

    Subclasses define ``configure_models`` etc. as for any TorchGeo task and
    may set ``class_names`` (an hparam) so outputs can name their classes.
    """

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Store this task's class path in the checkpoint.

        Args:
            checkpoint: The checkpoint dictionary Lightning is about to save.
        """
        cls = type(self)
        checkpoint[TASK_CLASS_KEY] = f'{cls.__module__}.{cls.__qualname__}'


def task_class_path(path: str | os.PathLike[str]) -> str:
    """Read the task class path recorded in a checkpoint.

    Args:
        path: A checkpoint written by a :class:`PluginTask`.

    Returns:
        The dotted import path of the task class.

    Raises:
        MissingInputError: If the file does not exist.
        InvalidInputError: If it is not a checkpoint of this library.
    """
    if not os.path.isfile(path):
        raise MissingInputError(path, 'checkpoint not found')
    try:
        checkpoint = torch.load(path, map_location='cpu', weights_only=False)
    except Exception as error:  # torch raises many types for corrupt files
        raise InvalidInputError(path, f'not a readable checkpoint ({error})') from error
    if not isinstance(checkpoint, dict) or TASK_CLASS_KEY not in checkpoint:
        raise InvalidInputError(
            path, 'not a torchgeo-ext task checkpoint (no task class recorded)'
        )
    return str(checkpoint[TASK_CLASS_KEY])


def load_task(path: str | os.PathLike[str], map_location: str = 'cpu') -> BaseTask:
    """Rebuild the task that wrote a checkpoint, in eval mode.

    Args:
        path: A checkpoint written by a :class:`PluginTask`.
        map_location: Device to load the weights onto.

    Returns:
        The task with its weights loaded.

    Raises:
        InvalidInputError: If the checkpoint names no importable task class.
    """
    class_path = task_class_path(path)
    module_name, _, class_name = class_path.rpartition('.')
    try:
        cls = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError) as error:
        raise InvalidInputError(path, f'task class {class_path} not found') from error
    task: BaseTask = cls.load_from_checkpoint(path, map_location=map_location)
    task.eval()
    return task
