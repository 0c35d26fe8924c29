"""Tests for TDDS: the score, the recorder callback, subset training, the command."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import torch
from lightning.pytorch import LightningModule, Trainer
from torch import Tensor, nn
from torch.utils.data import DataLoader

from torchgeo_ext.cli import main
from torchgeo_ext.datamodules.houston2013 import Houston2013DataModule
from torchgeo_ext.errors import InvalidInputError
from torchgeo_ext.samplers.subset import IndexedDataset, read_index_list
from torchgeo_ext.trainers.classification import PatchClassificationTask
from torchgeo_ext.trainers.tdds import (
    TDDSRecorder,
    TrainSubset,
    load_dynamics,
    prune_indices,
    save_dynamics,
    tdds_scores,
    write_pruned_indices,
)

HOUSTON = 'tests/data/houston2013/mat'


def reference_scores(p: Tensor, window: int, decay: float) -> Tensor:
    """The authors' importance_evaluation.py, written as plain loops."""
    t, n, _ = p.shape
    total = torch.zeros(n, dtype=torch.float64)
    for k in range(t - window + 1):
        kd = []
        for j in range(k, k + window - 1):
            log = torch.log(p[j + 1] + 1e-8) - torch.log(p[j] + 1e-8)
            kd.append((p[j + 1] * log).abs().sum(dim=1))
        stack = torch.stack(kd)
        spread = (stack - stack.sum(0) / (window - 1)).norm(dim=0)
        total += spread * decay * (1 - decay) ** (t - window - k)
    return total


def test_scores_match_the_authors_formula() -> None:
    gen = torch.Generator().manual_seed(0)
    p = torch.randn(12, 7, 4, generator=gen, dtype=torch.float64).softmax(dim=2)
    torch.testing.assert_close(tdds_scores(p, 5, 0.9), reference_scores(p, 5, 0.9))
    torch.testing.assert_close(tdds_scores(p, 10, 0.5), reference_scores(p, 10, 0.5))


def planted_trajectories(epochs: int = 30) -> Tensor:
    """Easy, learned-late (hard but learnable) and oscillating samples, 3 classes."""
    t = torch.arange(epochs, dtype=torch.float64)
    easy = torch.tensor([0.98, 0.01, 0.01]).expand(epochs, 3)
    # p(true class) rises from 1/3 to ~1 around epoch 24 (in the last windows)
    rise = torch.sigmoid(t - 24)
    late = torch.stack([1 / 3 + (2 / 3) * rise, (1 - rise) / 3, 2 * (1 - rise) / 3], 1)
    a, b = torch.tensor([0.6, 0.3, 0.1]), torch.tensor([0.3, 0.6, 0.1])
    oscillating = torch.stack([a if i % 2 else b for i in range(epochs)])
    return torch.stack([easy, late, oscillating], dim=1)


def test_score_ranks_planted_samples_as_the_paper_predicts() -> None:
    p = planted_trajectories()
    scores = tdds_scores(p, window=10, decay=0.9)
    easy, late, oscillating = scores.tolist()
    # Easy samples contribute nothing after being learned: pruned first.
    assert easy == pytest.approx(0.0, abs=1e-9)
    # A constant (however large) contribution has no variability ...
    assert oscillating == pytest.approx(0.0, abs=1e-9)
    # ... while a sample learned during the run varies: kept.
    assert late > 1e-3
    assert prune_indices(scores, 1).tolist() == [1]
    # An averaging criterion (mean contribution) ranks the oscillating one first.
    log_ratio = torch.log(p[1:] + 1e-8) - torch.log(p[:-1] + 1e-8)
    mean_contribution = (p[1:] * log_ratio).abs().sum(2).mean(0)
    assert int(mean_contribution.argmax()) == 2


def test_windows_are_weighted_towards_the_end() -> None:
    p = planted_trajectories()
    early = p.flip(0)  # the same transition, now in the first windows
    late_score = float(tdds_scores(p)[1])
    early_score = float(tdds_scores(early)[1])
    assert early_score < 0.01 * late_score


def test_score_arguments_are_checked() -> None:
    p = planted_trajectories(8)
    with pytest.raises(ValueError, match='at least window epochs'):
        tdds_scores(p, window=10)
    with pytest.raises(ValueError, match='decay'):
        tdds_scores(p, window=5, decay=0)
    with pytest.raises(ValueError, match='T x N x K'):
        tdds_scores(p[0])


def test_prune_indices() -> None:
    scores = torch.tensor([0.1, 0.5, 0.3, 0.5])
    assert prune_indices(scores, 2).tolist() == [1, 3]
    assert prune_indices(scores, 0.75).tolist() == [1, 3, 2]
    assert prune_indices(scores, 10).tolist() == [1, 3, 2, 0]
    assert prune_indices(scores, 1.0).tolist() == [1]  # a count of one
    for bad in (0, 1.5, -0.1, True):
        with pytest.raises(ValueError, match='count'):
            prune_indices(scores, bad)


class Points(torch.utils.data.Dataset[dict[str, Tensor]]):
    def __init__(self, n: int = 10) -> None:
        gen = torch.Generator().manual_seed(0)
        self.x = torch.randn(n, 4, generator=gen)

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> dict[str, Tensor]:
        return {'image': self.x[i], 'label': torch.tensor(i % 3)}


class Linear(LightningModule):
    """A deterministic classifier returning a dict with logits, as our tasks do."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Linear(4, 3)

    def forward(self, x: Tensor) -> dict[str, Any]:
        return {'logits': self.net(x)}

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        out = self(batch['image'])['logits']
        return nn.functional.cross_entropy(out, batch['label'])

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.0)


def test_recorder_stores_each_samples_softmax_by_index(tmp_path: Path) -> None:
    torch.manual_seed(0)
    module = Linear()
    recorder = TDDSRecorder(
        dynamics=str(tmp_path / 'dyn.pt'),
        output=str(tmp_path / 'keep.txt'),
        keep=4,
        epochs=3,
        window=3,
    )
    loader = DataLoader(IndexedDataset(Points()), batch_size=3, shuffle=True)
    trainer = Trainer(
        max_epochs=4,
        callbacks=[recorder],
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(module, train_dataloaders=loader)
    probs = recorder.probabilities
    assert probs.shape == (3, 10, 3)  # only the first `epochs` epochs
    with torch.no_grad():
        expected = module.net(Points().x).softmax(1)
    for epoch in range(3):  # lr 0: every epoch sees the same outputs, shuffled
        torch.testing.assert_close(probs[epoch], expected)
    torch.testing.assert_close(load_dynamics(tmp_path / 'dyn.pt'), probs)
    assert len(read_index_list(tmp_path / 'keep.txt')) == 4


def test_recorder_needs_indices_and_enough_epochs() -> None:
    loader = DataLoader(Points(), batch_size=5)
    trainer = Trainer(
        max_epochs=1,
        callbacks=[TDDSRecorder()],
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
    )
    with pytest.raises(KeyError, match='sample indices'):
        trainer.fit(Linear(), train_dataloaders=loader)
    trainer = Trainer(
        max_epochs=2,
        callbacks=[TDDSRecorder(output='x.txt')],
        logger=False,
        enable_checkpointing=False,
    )
    with pytest.raises(ValueError, match='fewer than the window'):
        trainer.fit(Linear(), train_dataloaders=loader)


def _trainer(*callbacks: Any, epochs: int) -> Trainer:
    return Trainer(
        max_epochs=epochs,
        callbacks=list(callbacks),
        accelerator='cpu',
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
    )


def test_patch_classification_prune_then_train_on_the_subset(tmp_path: Path) -> None:
    torch.manual_seed(0)
    dm = Houston2013DataModule(batch_size=32, patch_size=8, root=HOUSTON)
    task = PatchClassificationTask(model='mivit_tiny', hsi_bands=144, num_classes=15)
    keep = tmp_path / 'keep.txt'
    recorder = TDDSRecorder(output=str(keep), keep=0.25, epochs=3, window=3)
    _trainer(recorder, epochs=3).fit(task, datamodule=dm)
    assert isinstance(dm.train_dataset, IndexedDataset)
    n = len(dm.train_dataset)
    assert recorder.probabilities.shape == (3, n, 15)
    torch.testing.assert_close(
        recorder.probabilities.sum(2), torch.ones(3, n), rtol=0, atol=1e-5
    )
    # TorchGeo's training loaders drop the last incomplete batch: those
    # samples keep their previous output, and are counted.
    assert recorder.missing == 3 * (n % 32)
    listed = read_index_list(keep)
    assert len(listed) == round(0.25 * n)

    # Train on the first 12 listed samples (3 full batches): only they reach the model.
    dm = Houston2013DataModule(batch_size=4, patch_size=8, root=HOUSTON)
    task = PatchClassificationTask(model='mivit_tiny', hsi_bands=144, num_classes=15)
    seen = TDDSRecorder(epochs=1)
    _trainer(TrainSubset(str(keep), budget=12), seen, epochs=1).fit(task, datamodule=dm)
    assert isinstance(dm.train_dataset, IndexedDataset)
    assert dm.train_dataset.indices == listed[:12]
    assert len(dm.train_dataset.labels) == 12  # MIViT's class weights see the subset
    touched = (seen.probabilities[0] != 1 / 15).any(dim=1).nonzero().flatten()
    assert sorted(touched.tolist()) == sorted(listed[:12])
    assert seen.missing == n - 12


def test_train_subset_rejects_a_short_or_foreign_list(tmp_path: Path) -> None:
    dm = Houston2013DataModule(batch_size=4, patch_size=8, root=HOUSTON)
    task = PatchClassificationTask(model='mivit_tiny', hsi_bands=144, num_classes=15)
    short = tmp_path / 'short.txt'
    short.write_text('0\n1\n')
    with pytest.raises(InvalidInputError, match='fewer than the budget 3'):
        _trainer(TrainSubset(str(short), budget=3), epochs=1).fit(task, datamodule=dm)
    foreign = tmp_path / 'foreign.txt'
    foreign.write_text('0\n100000\n')
    with pytest.raises(InvalidInputError, match='outside a dataset'):
        _trainer(TrainSubset(str(foreign)), epochs=1).fit(task, datamodule=dm)


def test_tdds_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    p = planted_trajectories()
    save_dynamics(tmp_path / 'dyn.pt', p)
    out = tmp_path / 'keep.txt'
    assert main(['tdds', str(tmp_path / 'dyn.pt'), '-o', str(out), '--keep', '1']) == 0
    assert read_index_list(out) == [1]
    assert 'kept 1 of 3 samples' in capsys.readouterr().out
    kept = write_pruned_indices(out, p, 2, epochs=20, window=5)
    assert kept.tolist() == read_index_list(out)
    # Too few epochs for the window: one line, status 2.
    assert (
        main(['tdds', str(tmp_path / 'dyn.pt'), '-o', str(out), '--epochs', '5']) == 2
    )
    assert 'at least window epochs' in capsys.readouterr().err
    torch.save({'x': 1}, tmp_path / 'other.pt')
    assert main(['tdds', str(tmp_path / 'other.pt'), '-o', str(out)]) == 2
    assert 'not a TDDS dynamics file' in capsys.readouterr().err
    assert math.isfinite(float(tdds_scores(p).sum()))


def test_configs_record_prune_and_train_on_the_subset(tmp_path: Path) -> None:
    conf = Path('tests/conf')
    record = tmp_path / 'record.yaml'
    text = (conf / 'tdds_mivit_houston2013.yaml').read_text()
    record.write_text(
        text.replace('tdds_dynamics.pt', str(tmp_path / 'dyn.pt')).replace(
            'tdds_keep.txt', str(tmp_path / 'keep.txt')
        )
    )
    root = f'--trainer.default_root_dir={tmp_path}'
    assert main(['fit', '--config', str(record), root]) == 0
    assert load_dynamics(tmp_path / 'dyn.pt').shape[:2] == (3, 127)
    listed = read_index_list(tmp_path / 'keep.txt')
    assert len(listed) == 64  # keep 0.5 of 127, rounded
    subset = tmp_path / 'subset.yaml'
    text = (conf / 'tdds_subset_mivit_houston2013.yaml').read_text()
    subset.write_text(
        text.replace('tests/conf/tdds_keep.txt', str(tmp_path / 'keep.txt'))
    )
    assert main(['fit', '--config', str(subset), root]) == 0


class Scenes(torch.utils.data.Dataset[dict[str, Tensor]]):
    """Tiny RGB scene-classification data (TorchGeo's sample keys)."""

    def __init__(self, split: str = 'train') -> None:
        gen = torch.Generator().manual_seed(0 if split == 'train' else 1)
        self.images = torch.rand(12, 3, 16, 16, generator=gen) * 255
        self.labels = torch.arange(12) % 2

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> dict[str, Tensor]:
        return {'image': self.images[i], 'label': self.labels[i]}


def test_recorder_on_torchgeo_scene_classification(tmp_path: Path) -> None:
    # TorchGeo's ClassificationTask returns the logits tensor; its data
    # modules normalise with Kornia, which passes the index key through.
    from torchgeo.datamodules import NonGeoDataModule
    from torchgeo.trainers import ClassificationTask

    torch.manual_seed(0)
    dm = NonGeoDataModule(Scenes, batch_size=4, num_workers=0)  # type: ignore[arg-type]
    task = ClassificationTask(
        model='resnet18', weights=None, in_channels=3, num_classes=2
    )
    recorder = TDDSRecorder(
        output=str(tmp_path / 'keep.txt'), keep=6, epochs=3, window=3
    )
    trainer = Trainer(
        max_epochs=3,
        callbacks=[recorder],
        accelerator='cpu',
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(task, datamodule=dm)
    assert recorder.probabilities.shape == (3, 12, 2)
    assert recorder.missing == 0
    assert len(read_index_list(tmp_path / 'keep.txt')) == 6
