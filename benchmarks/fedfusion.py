"""FedFusion on Flower against centralised training at the same budget (results in benchmarks/fedfusion.md).

Per fake HSI + LiDAR scene of ``tests/data`` (Houston2013, Trento, MUUFL; 20 x 30 pixels, the real
band counts), with the same training pixels and the same number of passes over them (``--rounds``):

* ``fedfusion`` federated (Flower simulation on Ray, 2 clients: HSI and LiDAR): every round the
  partners exchange their encoders' features of all training pixels as rank-4 SVD factors
  (``rank 0``: raw features), train one local epoch, and the server averages the shared layers;
* ``fedfusion`` centralised: the same model, both modalities on one machine, no compression;
* ``mivit_base`` centralised: ``PatchClassificationTask`` with the recipe of
  ``configs/mivit_houston2013.yaml`` (24 x 24 patches, Adam 1e-4, focal loss and its auxiliary terms).

Cells: test overall accuracy (OA), and the bytes a client sends and receives per round.

Run: ``PYTHONPATH=. .venv/bin/python benchmarks/fedfusion.py [--rounds 30] [--seeds 0 1 2]``.
"""

from __future__ import annotations

import argparse
import time
import warnings
from pathlib import Path
from typing import Any

import torch

from torchgeo_ext.federated.client import build_model
from torchgeo_ext.federated.config import FederationConfig
from torchgeo_ext.federated.data import dataset_class, load_dataset
from torchgeo_ext.federated.simulation import simulate
from torchgeo_ext.losses.fedfusion import fedfusion_loss

ROOT = Path(__file__).resolve().parents[1]
SCENES = {
    'houston2013': ROOT / 'tests/data/houston2013/mat',
    'trento': ROOT / 'tests/data/trento/split',
    'muufl': ROOT / 'tests/data/muufl/mat',
}


def federation(dataset: str, rounds: int, rank: int, seed: int = 0) -> FederationConfig:
    """The federation of one scene (the config files' recipe, batch 32 for ~120 pixels)."""
    config = FederationConfig(
        dataset=dataset,
        dataset_kwargs={'root': str(SCENES[dataset])},
        model='fedfusion',
        rounds=rounds,
        sample_size=0,
        eval_size=0,
        batch_size=32,
        rank=rank,
        lr_step=max(1, rounds * 30 // 200),
        seed=seed,
    )
    config.check()
    return config


def federated(config: FederationConfig) -> dict[str, Any]:
    """OA and per-round bytes of a simulated federation."""
    start = time.perf_counter()
    run = simulate(config)
    seconds = time.perf_counter() - start
    final = run.result.evaluate_metrics_clientapp[config.rounds]
    train = [t for t in run.traffic if t['stage'] == 'train' and t['round'] == 1]
    client0 = [t for t in train if t['client'] == 0]
    features = sum(t['bytes'] for t in client0 if t['kind'] == 'features')
    raw = sum(t['raw_bytes'] for t in client0 if t['kind'] == 'features')
    weights = sum(t['bytes'] for t in client0 if t['kind'] == 'weights')
    return {
        'OA': float(final['accuracy']),
        'AA': float(final['average-accuracy']),
        'features': features,
        'raw': raw,
        'weights': weights,
        'seconds': seconds,
    }


def centralised_fedfusion(config: FederationConfig) -> float:
    """Test OA of FedFusion trained on one machine (both modalities, no exchange)."""
    train, test = load_dataset(config, 'train'), load_dataset(config, 'test')
    bands = train.modalities
    model = build_model(config, len(bands['hsi']), len(bands['lidar']))
    optimiser = torch.optim.Adam(
        model.parameters(), lr=config.lr, weight_decay=config.weight_decay
    )
    schedule = torch.optim.lr_scheduler.StepLR(
        optimiser, config.lr_step, config.lr_gamma
    )
    x = torch.stack([train[i]['image'] for i in range(len(train))])
    y = torch.from_numpy(train.labels)
    generator = torch.Generator().manual_seed(config.seed)
    for _ in range(config.rounds):
        model.train()
        for batch in torch.randperm(len(y), generator=generator).split(
            config.batch_size
        ):
            loss = fedfusion_loss(model(x[batch]), y[batch])['loss']
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
        schedule.step()
    model.eval()
    with torch.no_grad():
        x_test = torch.stack([test[i]['image'] for i in range(len(test))])
        predicted = model(x_test)['logits'].argmax(1)
    return float((predicted == torch.from_numpy(test.labels)).float().mean())


def centralised_mivit(dataset: str, epochs: int, seed: int = 0) -> float:
    """Test OA of MIViT (base) trained for ``epochs`` with its config's recipe."""
    from lightning.pytorch import Trainer

    from torchgeo_ext.datamodules.houston2013 import Houston2013DataModule
    from torchgeo_ext.datamodules.muufl import MUUFLDataModule
    from torchgeo_ext.datamodules.trento import TrentoDataModule
    from torchgeo_ext.trainers.classification import PatchClassificationTask

    modules = {
        'houston2013': Houston2013DataModule,
        'trento': TrentoDataModule,
        'muufl': MUUFLDataModule,
    }
    cls = dataset_class(FederationConfig(dataset=dataset))
    data = modules[dataset](batch_size=32, patch_size=24, root=str(SCENES[dataset]))
    probe = cls(root=str(SCENES[dataset]), split='train', patch_size=1)
    torch.manual_seed(seed)
    task = PatchClassificationTask(
        model='mivit_base',
        hsi_bands=len(probe.modalities['hsi']),
        lidar_bands=len(probe.modalities['lidar']),
        num_classes=len(cls.classes),
        focal_gamma=2.0,
        class_weighting='mivit',
        reconstruction_weight=5.0,
        mi_weight=0.1,
        aux_weight=0.3,
        distillation_weight=1.0,
        optimizer='adam',
        lr=1e-4,
        weight_decay=1e-3,
    )
    trainer = Trainer(
        max_epochs=epochs,
        accelerator='cpu',
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        limit_val_batches=0,
    )
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        trainer.fit(task, datamodule=data)
        result = trainer.test(task, datamodule=data, verbose=False)
    return float(result[0]['test_OA'])


def real_scene_bytes(
    pixels: int = 2832, channels: int = 64, side: int = 4
) -> dict[str, int]:
    """Bytes per client per round on the real Houston2013 training split (computed, not run)."""
    raw = 4 * pixels * channels * side * side
    factors = 4 * (pixels * channels * 4 + 4 + side * side * 4)
    model = build_model(FederationConfig(), 144, 1)
    shared = 4 * sum(
        v.numel() for k, v in model.state_dict().items() if model.is_shared(k)
    )
    return {'raw': raw, 'factors': factors, 'shared': shared}


def mb(n: float) -> str:
    """Bytes as MB (10^6), 3 significant digits."""
    return f'{n / 1e6:.3g}'


def run_scene(dataset: str, rounds: int, seed: int, with_raw: bool) -> dict[str, Any]:
    """Every method on one scene with one seed."""
    low = federated(federation(dataset, rounds, 4, seed))
    raw = federated(federation(dataset, rounds, 0, seed)) if with_raw else None
    return {
        'low': low,
        'raw': raw,
        'central': centralised_fedfusion(federation(dataset, rounds, 4, seed)),
        'mivit': centralised_mivit(dataset, rounds, seed),
    }


def main() -> None:
    """Run the comparison and print the markdown tables."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--rounds', type=int, default=30)
    parser.add_argument('--seeds', type=int, nargs='+', default=[0])
    parser.add_argument(
        '--datasets', nargs='+', default=list(SCENES), choices=list(SCENES)
    )
    parser.add_argument(
        '--no-raw', action='store_true', help='skip the rank-0 federations'
    )
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(f'rounds = epochs = {args.rounds}; test OA')
    print(
        '| scene | seed | FedFusion federated, rank 4 | FedFusion federated, raw features '
        '| FedFusion centralised | MIViT centralised |'
    )
    print('| --- | --- | --- | --- | --- | --- |')
    runs = {}
    for dataset in args.datasets:
        for seed in args.seeds:
            out = runs[dataset, seed] = run_scene(
                dataset, args.rounds, seed, not args.no_raw
            )
            raw_oa = '-' if out['raw'] is None else f'{out["raw"]["OA"]:.3f}'
            print(
                f'| {dataset} | {seed} | {out["low"]["OA"]:.3f} | {raw_oa} '
                f'| {out["central"]:.3f} | {out["mivit"]:.3f} |',
                flush=True,
            )
    print(
        '\nper round, one client (sent + received, train stage): features, raw, shared (MB)'
    )
    for (dataset, seed), out in runs.items():
        low, raw = out['low'], out['raw']
        ratio = low['raw'] / low['features']
        line = (
            f'{dataset} seed {seed}: {mb(low["features"])} | {mb(low["raw"])} '
            f'({ratio:.2f}x) | {mb(low["weights"])}; {low["seconds"]:.0f} s'
        )
        if raw is not None:
            line += f'; rank 0 sent {mb(raw["features"])}, {raw["seconds"]:.0f} s'
        print(line)
    real = real_scene_bytes()
    print(
        f'real Houston2013 (2832 training pixels), per direction: raw {mb(real["raw"])}, '
        f'rank-4 factors {mb(real["factors"])} ({real["raw"] / real["factors"]:.2f}x), '
        f'shared layers {mb(real["shared"])}'
    )


if __name__ == '__main__':
    main()
