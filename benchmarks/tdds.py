"""TDDS dataset pruning on a synthetic HSI + LiDAR task (results in benchmarks/tdds.md).

Per seed: a synthetic scene (``synthetic_hsi_lidar``: Voronoi regions of 6
classes, smooth class spectra, a LiDAR height band, mixed pixels at region
borders, a few flipped training labels), patches around 600 training and
3000 test pixels. A tiny MIViT (``PatchClassificationTask``) is trained on
all training patches for the TDDS trajectory with ``TDDSRecorder``; then
at each budget the same task is trained from scratch, same epochs, on the
top-k TDDS samples and on a random subset of the same size
(``TrainSubset``). Cells: test overall accuracy.

Run: ``.venv/bin/python benchmarks/tdds.py [--seeds N] [--budgets 0.1 0.3]``.
"""

from __future__ import annotations

import argparse
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from lightning.pytorch import LightningDataModule, Trainer
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from torchgeo_ext.samplers.subset import write_index_list
from torchgeo_ext.trainers.classification import PatchClassificationTask
from torchgeo_ext.trainers.tdds import TDDSRecorder, TrainSubset, tdds_scores

CLASSES, BANDS, PATCH, TRAIN = 6, 30, 8, 600


def synthetic_hsi_lidar(seed: int, size: int = 96) -> dict[str, np.ndarray]:
    """A ``(BANDS + 1) x size x size`` scene, its class map and purity map."""
    rng = np.random.default_rng(seed)
    sites = rng.uniform(0, size, (30, 2))
    site_class = np.arange(30) % CLASSES
    rows, cols = np.mgrid[0:size, 0:size]
    d = (rows[..., None] - sites[:, 0]) ** 2 + (cols[..., None] - sites[:, 1]) ** 2
    labels = site_class[d.argmin(axis=2)]
    onehot = np.eye(CLASSES)[labels].transpose(2, 0, 1)
    from scipy.ndimage import gaussian_filter

    weights = np.stack([gaussian_filter(o, 1.5) for o in onehot])
    weights /= weights.sum(axis=0, keepdims=True)
    # Smooth class spectra, close to each other (a hard spectral problem).
    base = gaussian_filter(rng.uniform(0.3, 0.7, BANDS), 3)
    spectra = np.stack(
        [
            base + 0.08 * gaussian_filter(rng.normal(size=BANDS), 2)
            for _ in range(CLASSES)
        ]
    )
    heights = rng.uniform(0, 1, CLASSES)
    hsi = np.einsum('khw,kb->bhw', weights, spectra)
    hsi += 0.03 * rng.normal(size=hsi.shape)
    lidar = np.einsum('khw,k->hw', weights, heights)[None]
    lidar += 0.1 * rng.normal(size=lidar.shape)
    image = np.concatenate([hsi, lidar]).astype(np.float32)
    return {'image': image, 'labels': labels, 'purity': weights.max(axis=0)}


class Patches(Dataset[dict[str, Tensor]]):
    """Patches around given pixels, with their (possibly flipped) labels."""

    def __init__(
        self, image: np.ndarray, pixels: np.ndarray, labels: np.ndarray
    ) -> None:
        pad = PATCH // 2
        self.image = torch.from_numpy(
            np.pad(image, ((0, 0), (pad, pad), (pad, pad)), mode='reflect')
        )
        self.pixels = pixels
        self.labels = torch.as_tensor(labels, dtype=torch.long)

    def __len__(self) -> int:
        return len(self.pixels)

    def __getitem__(self, i: int) -> dict[str, Tensor]:
        r, c = self.pixels[i]
        patch = self.image[:, r : r + PATCH, c : c + PATCH]
        return {'image': patch, 'label': self.labels[i]}


class PatchData(LightningDataModule):
    """Training/test patch sets; ``train_dataset`` as TorchGeo data modules have it."""

    def __init__(self, train: Dataset[Any], test: Dataset[Any], batch: int) -> None:
        super().__init__()
        self.train_dataset, self.test_dataset, self.batch = train, test, batch

    def train_dataloader(self) -> DataLoader[Any]:
        return DataLoader(self.train_dataset, batch_size=self.batch, shuffle=True)

    def test_dataloader(self) -> DataLoader[Any]:
        return DataLoader(self.test_dataset, batch_size=256)


def make_split(seed: int) -> dict[str, Any]:
    scene = synthetic_hsi_lidar(seed)
    rng = np.random.default_rng(seed + 1000)
    h, w = scene['labels'].shape
    order = rng.permutation(h * w)
    pixels = np.stack(np.unravel_index(order, (h, w)), axis=1)
    train, test = pixels[:TRAIN], pixels[TRAIN : TRAIN + 3000]
    labels = scene['labels'][train[:, 0], train[:, 1]].copy()
    flipped = rng.random(len(labels)) < 0.05
    labels[flipped] = (
        labels[flipped] + rng.integers(1, CLASSES, flipped.sum())
    ) % CLASSES
    return {
        'train': Patches(scene['image'], train, labels),
        'test': Patches(scene['image'], test, scene['labels'][test[:, 0], test[:, 1]]),
        'purity': scene['purity'][train[:, 0], train[:, 1]],
        'flipped': flipped,
    }


def fit(
    split: dict[str, Any], epochs: int, seed: int, callbacks: list[Any], batch: int
) -> float:
    """Train a tiny MIViT from scratch; test overall accuracy."""
    torch.manual_seed(seed)
    task = PatchClassificationTask(
        model='mivit_tiny',
        hsi_bands=BANDS,
        lidar_bands=1,
        num_classes=CLASSES,
        focal_gamma=0.0,
        lr=1e-3,
        scheduler='none',
    )
    data = PatchData(split['train'], split['test'], batch)
    trainer = Trainer(
        max_epochs=epochs,
        callbacks=callbacks,
        accelerator='cpu',
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        trainer.fit(task, datamodule=data)
        result = trainer.test(task, datamodule=data, verbose=False)
    return float(result[0]['test_OA'])


def run_seed(
    seed: int, budgets: list[float], epochs: int, subset_epochs: int, tmp: Path
) -> dict[str, float]:
    split = make_split(seed)
    recorder = TDDSRecorder(epochs=epochs, window=10, decay=0.9)
    out = {'full': fit(split, epochs, seed, [recorder], 64)}
    scores = tdds_scores(recorder.probabilities, 10, 0.9)
    ranking = scores.argsort(descending=True).tolist()
    pure = split['purity'] > 0.95
    out['score pure/clean'] = float(scores[pure & ~split['flipped']].mean())
    out['score mixed/clean'] = float(scores[~pure & ~split['flipped']].mean())
    out['score flipped'] = float(scores[split['flipped']].mean())
    rng = np.random.default_rng(seed + 2000)
    n = len(split['train'])
    for budget in budgets:
        k = round(budget * n)
        batch = 16 if k < 150 else 32
        lists = {'tdds': ranking[:k], 'random': rng.permutation(n)[:k].tolist()}
        for name, indices in lists.items():
            path = write_index_list(tmp / f'{name}_{seed}_{budget}.txt', indices)
            out[f'{name} {budget:.0%}'] = fit(
                split, subset_epochs, seed, [TrainSubset(str(path))], batch
            )
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument('--seeds', type=int, default=3)
    parser.add_argument('--first-seed', type=int, default=0)
    parser.add_argument('--budgets', type=float, nargs='*', default=[0.1, 0.3])
    parser.add_argument('--epochs', type=int, default=20)
    parser.add_argument('--subset-epochs', type=int, default=40)
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for seed in range(args.first_seed, args.first_seed + args.seeds):
            start = time.perf_counter()
            result = run_seed(
                seed, args.budgets, args.epochs, args.subset_epochs, Path(tmp)
            )
            for key, value in result.items():
                rows.setdefault(key, []).append(value)
            print(
                f'# seed {seed}: {time.perf_counter() - start:.0f} s '
                + ', '.join(f'{k} {v:.3f}' for k, v in result.items()),
                flush=True,
            )
    print(
        f'\n{args.seeds} seeds, trajectory {args.epochs} epochs, subsets {args.subset_epochs} epochs\n'
    )
    print('| run | mean +- std | per seed |\n| --- | --- | --- |')
    for key, values in rows.items():
        v = np.array(values)
        cells = ', '.join(f'{x:.3f}' for x in v)
        print(f'| {key} | {v.mean():.3f} +- {v.std():.3f} | {cells} |')


if __name__ == '__main__':
    main()
