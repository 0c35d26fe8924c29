"""Reading user-given weight files (state dicts or checkpoints) for the models."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from ..errors import InvalidInputError, MissingInputError

__all__ = ['read_state_dict']


def read_state_dict(
    path: str | os.PathLike[str],
    nested: Sequence[str] = ('state_dict', 'model', 'net'),
    prefixes: Sequence[str] = (),
    weights_only: bool = True,
) -> dict[str, Tensor]:
    """Read the tensors of a weights file.

    A plain state dict, or one nested under a ``state_dict`` / ``model`` /
    ``net`` key (Lightning, timm and research-code checkpoints); anything else
    is a clear error naming the file.

    Args:
        path: The file.
        nested: Keys under which checkpoints nest their state dict, unwrapped
            in turn.
        prefixes: Key prefixes to select, in order of preference: the first
            one some keys start with is kept and stripped (e.g. a task
            checkpoint's ``'model.'``); no prefix matching keeps every key.
        weights_only: Load with ``torch.load(weights_only=True)`` (no
            arbitrary objects); ``False`` for checkpoints holding other Python
            objects (Lightning hyperparameters).

    Returns:
        Name to tensor (non-tensor entries dropped).

    Raises:
        MissingInputError: If the file does not exist.
        InvalidInputError: If it is unreadable or holds no state dict.
    """
    if not os.path.isfile(path):
        raise MissingInputError(path, 'weights file not found')
    try:
        state: Any = torch.load(path, map_location='cpu', weights_only=weights_only)
    except Exception as error:  # torch raises many types for corrupt files
        raise InvalidInputError(path, f'unreadable weights ({error})') from error
    for key in nested:
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict):
        raise InvalidInputError(path, 'not a state dict or checkpoint')
    tensors = {str(k): v for k, v in state.items() if isinstance(v, Tensor)}
    for prefix in prefixes:
        sub = {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
        if sub:
            return sub
    return tensors
