"""TDDS dataset pruning (Zhang et al., CVPR 2024): record training dynamics, score, prune."""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from torch import Tensor
from torch.utils.hooks import RemovableHandle

from ..errors import InvalidInputError, MissingInputError
from ..samplers.subset import IndexedDataset, read_index_list, write_index_list

__all__ = (
    'TDDSRecorder',
    'TrainSubset',
    'load_dynamics',
    'prune_indices',
    'sample_count',
    'save_dynamics',
    'tdds_scores',
    'write_pruned_indices',
)

#: Format tag of the dynamics files written by :func:`save_dynamics`.
DYNAMICS_FORMAT = 'torchgeo_ext.tdds.dynamics/1'


def tdds_scores(
    probabilities: Tensor, window: int = 10, decay: float = 0.9, eps: float = 1e-8
) -> Tensor:
    r"""TDDS importance of each sample from its per-epoch softmax outputs.

    Per epoch, each sample's contribution is
    :math:`\sum_k |p_{t+1,k} \log(p_{t+1,k}/p_{t,k})|`; per sliding window of
    ``window`` epochs, the spread of the contributions; windows are weighted
    ``decay * (1 - decay)^(distance from the last window)`` and summed (the
    authors' ``importance_evaluation.py``).

    Args:
        probabilities: ``T x N x K`` softmax outputs (epoch, sample, class).
        window: Sliding-window length in epochs (the paper's 10).
        decay: Window weighting factor (the paper's 0.9).
        eps: Added inside the logarithms (the authors' 1e-8).

    Returns:
        ``N`` float64 scores, higher is more important.

    Raises:
        ValueError: If there are fewer than ``window`` epochs, ``window < 3``,
            or ``decay`` is outside (0, 1].
    """
    if probabilities.ndim != 3:
        raise ValueError(
            f'expected T x N x K probabilities, got shape {tuple(probabilities.shape)}'
        )
    t = probabilities.shape[0]
    if window < 3 or t < window:
        raise ValueError(
            f'TDDS needs a window of at least 3 epochs and at least window epochs; '
            f'got window {window} and {t} epochs'
        )
    if not 0 < decay <= 1:
        raise ValueError(f'decay must be in (0, 1], got {decay}')
    p = probabilities.to(torch.float64)
    log_ratio = torch.log(p[1:] + eps) - torch.log(p[:-1] + eps)
    contributions = (p[1:] * log_ratio).abs().sum(dim=2)  # (T - 1) x N
    windows = contributions.unfold(0, window - 1, 1)  # (T - W + 1) x N x (W - 1)
    spread = (windows - windows.mean(dim=2, keepdim=True)).norm(dim=2)
    last = windows.shape[0] - 1
    distance = last - torch.arange(windows.shape[0], dtype=torch.float64)
    weights = decay * (1 - decay) ** distance
    return (weights[:, None] * spread).sum(dim=0)


def sample_count(amount: float, total: int) -> int:
    """A number of samples given as a count (>= 1) or as a fraction (< 1) of ``total``.

    Args:
        amount: A whole number >= 1 (a count), or a fraction in (0, 1).
        total: The number of samples a fraction refers to.

    Returns:
        The count (a fraction rounds to the nearest, at least 1).

    Raises:
        ValueError: If ``amount`` is not positive, or >= 1 but not whole.
    """
    if isinstance(amount, bool) or not amount > 0:
        raise ValueError(f'expected a count >= 1 or a fraction in (0, 1), got {amount}')
    if amount < 1:
        return max(1, round(amount * total))
    if amount != int(amount):
        raise ValueError(f'a count >= 1 must be a whole number, got {amount}')
    return int(amount)


def prune_indices(scores: Tensor, keep: float) -> Tensor:
    """The indices of the top-scoring samples, best first.

    Args:
        scores: ``N`` scores (:func:`tdds_scores`).
        keep: A count (>= 1) or a fraction of ``N`` in (0, 1)
            (:func:`sample_count`).

    Returns:
        The kept indices (int64), sorted by decreasing score (ties by index).
    """
    k = min(scores.shape[0], sample_count(keep, scores.shape[0]))
    order = torch.sort(-scores.to(torch.float64), stable=True).indices
    return order[:k]


def save_dynamics(path: str | os.PathLike[str], probabilities: Tensor) -> Path:
    """Write recorded ``T x N x K`` softmax outputs atomically (a torch file).

    Args:
        path: File to write.
        probabilities: The dynamics.

    Returns:
        The path written.
    """
    from ..export.atomic import atomic_output

    with atomic_output(path) as tmp:
        torch.save(
            {'format': DYNAMICS_FORMAT, 'probabilities': probabilities.cpu()}, tmp
        )
    return Path(path)


def load_dynamics(path: str | os.PathLike[str]) -> Tensor:
    """Read a dynamics file of :func:`save_dynamics`.

    Args:
        path: The file.

    Returns:
        ``T x N x K`` probabilities.

    Raises:
        MissingInputError: If the file does not exist.
        InvalidInputError: If it is not a TDDS dynamics file.
    """
    file = Path(path)
    if not file.is_file():
        raise MissingInputError(file, 'dynamics file not found')
    try:
        content = torch.load(file, map_location='cpu', weights_only=True)
    except Exception as error:
        raise InvalidInputError(file, f'not a torch file ({error})') from error
    if not isinstance(content, dict) or content.get('format') != DYNAMICS_FORMAT:
        raise InvalidInputError(
            file, 'not a TDDS dynamics file (write one with TDDSRecorder)'
        )
    probabilities: Tensor = content['probabilities']
    return probabilities


def write_pruned_indices(
    path: str | os.PathLike[str],
    probabilities: Tensor,
    keep: float,
    *,
    epochs: int | None = None,
    window: int = 10,
    decay: float = 0.9,
) -> Tensor:
    """Score dynamics with TDDS and write the kept sample indices, best first.

    Args:
        path: Index list to write (text, one index per line).
        probabilities: ``T x N x K`` recorded softmax outputs.
        keep: Samples to keep: a count or a fraction.
        epochs: Use the first ``epochs`` epochs (the paper's 30; all if None).
        window: Sliding-window length.
        decay: Window weighting factor.

    Returns:
        The kept indices.
    """
    trajectory = probabilities if epochs is None else probabilities[:epochs]
    scores = tdds_scores(trajectory, window, decay)
    kept = prune_indices(scores, keep)
    header = (
        f'TDDS: {len(kept)} of {probabilities.shape[1]} samples, best first\n'
        f'epochs {trajectory.shape[0]}, window {window}, decay {decay}'
    )
    write_index_list(path, kept.tolist(), header)
    return kept


def _logits(output: Any, key: str) -> Tensor:
    """The logits in a forward output: a tensor, a mapping or an object attribute."""
    if isinstance(output, Tensor):
        return output
    value = (
        output.get(key) if isinstance(output, Mapping) else getattr(output, key, None)
    )
    if not isinstance(value, Tensor):
        raise TypeError(
            f'TDDSRecorder: the task forward returned no {key!r} tensor '
            f'(got {type(output).__name__})'
        )
    return value


def _first_occurrence(index: Tensor) -> Tensor:
    """Mask of each index's first position (index_put with repeats is undefined)."""
    order = torch.sort(index, stable=True).indices
    ranked = index[order]
    head = torch.ones_like(ranked, dtype=torch.bool)
    head[1:] = ranked[1:] != ranked[:-1]
    mask = torch.zeros_like(index, dtype=torch.bool)
    mask[order[head]] = True
    return mask


def _index_train_dataset(trainer: Trainer) -> int | None:
    """Wrap the data module's training set in an IndexedDataset; its full size."""
    datamodule = getattr(trainer, 'datamodule', None)
    dataset = getattr(datamodule, 'train_dataset', None)
    if dataset is None:
        return None
    if not isinstance(dataset, IndexedDataset):
        dataset = IndexedDataset(dataset)
        datamodule.train_dataset = dataset  # type: ignore[union-attr]
    return len(dataset.dataset)  # type: ignore[arg-type]


class TDDSRecorder(Callback):
    """Record each training sample's softmax output every epoch; optionally prune.

    Works for any classification task whose forward returns logits (a tensor,
    or a dict/object with ``logits``):
    :class:`~torchgeo_ext.trainers.classification.PatchClassificationTask`,
    TorchGeo's ``ClassificationTask``. Batches need the sample indices
    (``index``): the callback wraps the data module's ``train_dataset`` in
    :class:`~torchgeo_ext.samplers.subset.IndexedDataset`. Scores come from
    :func:`tdds_scores`; :func:`prune_indices` keeps the top-k, and
    :func:`write_pruned_indices` (or ``torchgeo-ext tdds``) writes the index
    list that :class:`TrainSubset` trains on.

    The first forward call of each training step is captured (a forward
    hook), so the outputs are those the loss saw: training mode, augmented
    inputs, as the authors record them. A sample missing from an epoch (e.g.
    ``drop_last``) keeps its previous epoch's output (uniform before its
    first), and the count is warned about.
    """

    def __init__(
        self,
        dynamics: str | None = None,
        output: str | None = None,
        keep: float = 0.1,
        epochs: int = 30,
        window: int = 10,
        decay: float = 0.9,
        logits_key: str = 'logits',
    ) -> None:
        """Initialise a new TDDSRecorder.

        Args:
            dynamics: Optional file to save the ``T x N x K`` outputs to at the
                end of training (:func:`save_dynamics`).
            output: Optional index list to write at the end of training
                (:func:`write_pruned_indices`).
            keep: Samples to keep in ``output``: a count (>= 1) or a fraction (< 1).
            epochs: Epochs recorded (the paper's trajectory of 30).
            window: TDDS sliding window (epochs).
            decay: TDDS window weighting.
            logits_key: Key (or attribute) of the logits in dict outputs.
        """
        super().__init__()
        self.dynamics, self.output = dynamics, output
        self.keep, self.epochs = keep, epochs
        self.window, self.decay = window, decay
        self.logits_key = logits_key
        self.num_samples: int | None = None
        self.history: list[Tensor] = []
        self.missing = 0
        self._batches: list[tuple[Tensor, Tensor]] = []
        self._captured: Any = None
        self._handle: RemovableHandle | None = None

    @property
    def probabilities(self) -> Tensor:
        """The recorded ``T x N x K`` softmax outputs."""
        return torch.stack(self.history)

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        """Give the training batches their sample indices.

        Args:
            trainer: The trainer.
            pl_module: The task.
            stage: The stage.

        Raises:
            ValueError: If ``output`` is set and fewer epochs than ``window`` will run.
        """
        if stage != 'fit':
            return
        self.num_samples = _index_train_dataset(trainer)
        if getattr(trainer, 'fast_dev_run', False):
            return  # a smoke run: nothing is written
        runs = trainer.max_epochs if trainer.max_epochs not in (None, -1) else None
        recorded = self.epochs if runs is None else min(runs, self.epochs)
        if self.output is not None and recorded < self.window:
            raise ValueError(
                f'TDDSRecorder: {recorded} recorded epochs are fewer than the window '
                f'({self.window}); raise max_epochs/epochs or lower window'
            )

    def _capture(self, module: Any, args: Any, output: Any) -> None:
        if self._captured is None:
            self._captured = output

    def on_train_epoch_start(
        self, trainer: Trainer, pl_module: LightningModule
    ) -> None:
        """Start capturing this epoch's outputs.

        Args:
            trainer: The trainer.
            pl_module: The task.
        """
        self._batches = []
        if len(self.history) < self.epochs and self._handle is None:
            self._handle = pl_module.register_forward_hook(self._capture)

    def on_train_batch_start(
        self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int
    ) -> None:
        """Forget the previous step's output.

        Args:
            trainer: The trainer.
            pl_module: The task.
            batch: The batch.
            batch_idx: Its index.
        """
        self._captured = None

    def on_train_batch_end(
        self,
        trainer: Trainer,
        pl_module: LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        """Keep the step's softmax outputs with the samples' indices.

        Args:
            trainer: The trainer.
            pl_module: The task.
            outputs: The step's outputs.
            batch: The batch (with ``index``).
            batch_idx: Its index.

        Raises:
            KeyError: If the batch has no ``index``.
        """
        if self._handle is None or self._captured is None:
            return
        if not isinstance(batch, Mapping) or 'index' not in batch:
            raise KeyError(
                'TDDSRecorder needs sample indices in the batch (key "index"): use a '
                'data module with train_dataset or wrap the dataset in IndexedDataset'
            )
        index = batch['index'].reshape(-1)
        probs = _logits(self._captured, self.logits_key).detach().float().softmax(1)
        if trainer.world_size > 1:
            index = torch.as_tensor(pl_module.all_gather(index)).reshape(-1)
            gathered = torch.as_tensor(pl_module.all_gather(probs))
            probs = gathered.reshape(-1, probs.shape[-1])
        self._batches.append((index.cpu(), probs.cpu()))
        self._captured = None

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Assemble the epoch's ``N x K`` outputs.

        Args:
            trainer: The trainer.
            pl_module: The task.
        """
        if self._handle is None or not self._batches:
            return
        index = torch.cat([i for i, _ in self._batches])
        probs = torch.cat([p for _, p in self._batches])
        n = max(self.num_samples or 0, int(index.max()) + 1)
        k = probs.shape[1]
        previous = self.history[-1] if self.history else torch.full((n, k), 1 / k)
        if previous.shape[0] < n:  # more samples than seen so far
            extra = torch.full((n - previous.shape[0], k), 1 / k)
            previous = torch.cat([previous, extra])
            self.history = [torch.cat([h, extra]) for h in self.history]
        epoch = previous.clone()
        # DistributedSampler pads by repeating samples: keep each one's first output
        first = _first_occurrence(index)
        epoch[index[first]] = probs[first]
        seen = torch.zeros(n, dtype=torch.bool)
        seen[index] = True
        self.missing += int((~seen).sum())
        self.history.append(epoch)
        self._batches = []
        if len(self.history) >= self.epochs:
            self._handle.remove()
            self._handle = None

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Save the dynamics and write the pruned index list (rank zero).

        Args:
            trainer: The trainer.
            pl_module: The task.
        """
        if self._handle is not None:
            self._handle.remove()
            self._handle = None
        # Every rank holds the same gathered record: one warning, from rank 0.
        if self.missing and trainer.is_global_zero:
            warnings.warn(
                f'TDDSRecorder: {self.missing} sample-epochs were not seen (kept '
                'the previous output); drop_last or a sampler skipped samples',
                stacklevel=2,
            )
        if (
            not trainer.is_global_zero
            or not self.history
            or getattr(trainer, 'fast_dev_run', False)
        ):
            return
        if self.dynamics is not None:
            save_dynamics(self.dynamics, self.probabilities)
        if self.output is not None:
            write_pruned_indices(
                self.output,
                self.probabilities,
                self.keep,
                window=self.window,
                decay=self.decay,
            )


class TrainSubset(Callback):
    """Train on the samples of an index list (e.g. TDDS's), from a config.

    At fit set-up the data module's ``train_dataset`` becomes an
    :class:`~torchgeo_ext.samplers.subset.IndexedDataset` over the listed
    samples (the first ``budget`` of them: the list is best first).
    """

    def __init__(self, indices: str, budget: float | None = None) -> None:
        """Initialise a new TrainSubset.

        Args:
            indices: Index list (:func:`write_pruned_indices`, one index per line).
            budget: Samples to train on: a count (>= 1), a fraction (< 1) of
                the full training set, or None for every listed sample.
        """
        super().__init__()
        self.indices = indices
        self.budget = budget

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        """Restrict the training set.

        Args:
            trainer: The trainer.
            pl_module: The task.
            stage: The stage.

        Raises:
            InvalidInputError: If the list has an index outside the training
                set, or fewer indices than the budget.
            ValueError: If the data module has no ``train_dataset``.
        """
        if stage != 'fit':
            return
        datamodule = getattr(trainer, 'datamodule', None)
        dataset = getattr(datamodule, 'train_dataset', None)
        if dataset is None:
            raise ValueError('TrainSubset needs a data module with a train_dataset')
        base = dataset.dataset if isinstance(dataset, IndexedDataset) else dataset
        listed = read_index_list(self.indices)
        size = len(base)  # type: ignore[arg-type]
        count = len(listed)
        if self.budget is not None:
            count = sample_count(self.budget, size)
        if count > len(listed):
            raise InvalidInputError(
                self.indices,
                f'lists {len(listed)} samples, fewer than the budget {count}',
            )
        try:
            subset = IndexedDataset(base, listed[:count])
        except ValueError as error:
            raise InvalidInputError(self.indices, str(error)) from error
        datamodule.train_dataset = subset  # type: ignore[union-attr]
