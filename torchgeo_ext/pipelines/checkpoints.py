"""Loading a task checkpoint for a pipeline, with the checks a user needs first."""

from __future__ import annotations

import os
from typing import Any

from ..errors import InvalidInputError

__all__ = ('TASK_KINDS', 'load_task_for', 'task_kind')

#: Kind of task by the trainers module that defines it.
TASK_KINDS = {
    'detection': 'detection',
    'oriented_detection': 'detection',
    'segmentation': 'segmentation',
    'fusionsam': 'segmentation',
    'anomaly': 'anomaly',
    'tracking': 'tracking',
}


def task_kind(class_path: str) -> str | None:
    """The kind of task a recorded class path is.

    Args:
        class_path: Dotted import path of the task class.

    Returns:
        ``'detection'``, ``'segmentation'``, ``'anomaly'``, ``'tracking'`` or
        None when unknown.
    """
    module = class_path.rpartition('.')[0]
    if not module.startswith('torchgeo_ext.trainers.'):
        return None
    return TASK_KINDS.get(module.rpartition('.')[2])


def load_task_for(
    checkpoint: str | os.PathLike[str], kind: str, device: str = 'cpu'
) -> Any:
    """Load a task checkpoint after checking that it is of the needed kind.

    The kind is checked before anything else looks at the model, so a
    segmentation checkpoint given to ``detect`` is named as such, not reported
    as a band-count mismatch; weights that do not fit the recorded model become
    one clear error naming the file.

    Args:
        checkpoint: A checkpoint written by a task of this library.
        kind: What the caller needs (see :data:`TASK_KINDS`).
        device: Where to load the weights.

    Returns:
        The task, in eval mode.

    Raises:
        MissingInputError: If the file does not exist.
        InvalidInputError: If it is not a task checkpoint, of another kind, or
            its weights do not fit the model it records.
    """
    from ..trainers.base import load_task, task_class_path

    class_path = task_class_path(checkpoint)
    found = task_kind(class_path)
    if found is not None and found != kind:
        name = class_path.rpartition('.')[2]
        raise InvalidInputError(
            checkpoint, f'a {found} checkpoint ({name}); this needs a {kind} checkpoint'
        )
    try:
        return load_task(checkpoint, map_location=device)
    except (RuntimeError, KeyError, TypeError, ValueError) as error:
        if isinstance(error, InvalidInputError):
            raise
        first = (str(error).strip().splitlines() or [type(error).__name__])[0]
        problem = (
            'its weights do not fit the model it records'
            if 'state_dict' in str(error)
            else 'the model it records cannot be rebuilt'
        )
        raise InvalidInputError(checkpoint, f'{problem} ({first.strip()})') from error
