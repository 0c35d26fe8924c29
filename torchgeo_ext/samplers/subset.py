"""Index-carrying datasets and sample-index lists (dataset pruning, e.g. TDDS)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset

from ..errors import InvalidInputError, MissingInputError

__all__ = ('IndexedDataset', 'read_index_list', 'write_index_list')


class IndexedDataset(Dataset[dict[str, Any]]):
    """A map-style dataset whose samples carry their index, optionally a subset.

    Sample ``i`` is ``dataset[indices[i]]`` (``dataset[i]`` without
    ``indices``) with ``index`` set to that original index as an int64
    scalar tensor, so a batch carries the original sample indices. Other
    attributes are read from the wrapped dataset; ``labels``, when the
    wrapped dataset has one per sample, is restricted to the subset.
    """

    def __init__(
        self, dataset: Dataset[dict[str, Any]], indices: Sequence[int] | None = None
    ) -> None:
        """Initialise a new IndexedDataset.

        Args:
            dataset: A map-style dataset of sample dicts (with ``__len__``).
            indices: Indices of the subset to keep, in order (all if None).

        Raises:
            ValueError: If an index is outside the dataset.
        """
        self.dataset = dataset
        size = len(dataset)  # type: ignore[arg-type]
        self.indices = (
            list(range(size)) if indices is None else [int(i) for i in indices]
        )
        bad = [i for i in self.indices if not 0 <= i < size]
        if bad:
            raise ValueError(
                f'{len(bad)} indices outside a dataset of {size} samples, e.g. {bad[0]}'
            )

    def __len__(self) -> int:
        """Number of samples.

        Returns:
            The subset's length.
        """
        return len(self.indices)

    def __getitem__(self, item: int) -> dict[str, Any]:
        """One sample with its original index.

        Args:
            item: Position in this (sub)set.

        Returns:
            The wrapped dataset's sample plus ``index``.
        """
        index = self.indices[item]
        sample = dict(self.dataset[index])
        sample['index'] = torch.tensor(index, dtype=torch.int64)
        return sample

    @property
    def labels(self) -> Any:
        """The wrapped dataset's per-sample ``labels``, restricted to the subset.

        Raises:
            AttributeError: If the wrapped dataset has no ``labels``.
        """
        labels = self.dataset.labels  # type: ignore[attr-defined]
        return torch.as_tensor(labels)[torch.tensor(self.indices, dtype=torch.long)]

    def __getattr__(self, name: str) -> Any:
        """Other attributes come from the wrapped dataset (``plot``, ``modalities``, ...)."""
        if name == 'dataset':  # not set yet (e.g. while unpickling)
            raise AttributeError(name)
        return getattr(self.dataset, name)


def read_index_list(path: str | os.PathLike[str]) -> list[int]:
    """Read a sample-index list: one non-negative integer per line, ``#`` comments.

    Args:
        path: The text file.

    Returns:
        The indices, in file order.

    Raises:
        MissingInputError: If the file does not exist.
        InvalidInputError: If a line is not a non-negative integer, an index
            repeats, or the file lists none.
    """
    file = Path(path)
    if not file.is_file():
        raise MissingInputError(file, 'index list not found')
    indices: list[int] = []
    seen: set[int] = set()
    for number, line in enumerate(file.read_text().splitlines(), start=1):
        text = line.split('#', 1)[0].strip()
        if not text:
            continue
        if not text.isdigit():
            raise InvalidInputError(
                file, f'line {number}: {text!r} is not a sample index'
            )
        value = int(text)
        if value in seen:
            raise InvalidInputError(file, f'line {number}: index {value} repeats')
        seen.add(value)
        indices.append(value)
    if not indices:
        raise InvalidInputError(file, 'lists no sample index')
    return indices


def write_index_list(
    path: str | os.PathLike[str], indices: Sequence[int], header: str = ''
) -> Path:
    """Write a sample-index list atomically (one index per line).

    Args:
        path: The text file to write.
        indices: The indices, in order.
        header: Optional comment lines written first (each prefixed ``#``).

    Returns:
        The path written.
    """
    from ..export.atomic import atomic_output

    lines = [f'# {line}' for line in header.splitlines()]
    lines += [str(int(i)) for i in indices]
    with atomic_output(path) as tmp:
        Path(tmp).write_text('\n'.join(lines) + '\n')
    return Path(path)
