"""Hyperspectral anomaly detection benchmarks (results in benchmarks/anomaly.md).

1. Global RX on a 512 x 512 x 200 cube: in memory, and streamed from a
   GeoTIFF (statistics pass + tiled scoring pass through predict_raster).
2. AUC(D,F) and runtime of every method on synthetic scenes with sub-pixel
   targets at several abundances, and on the fake HAD100 test split.
3. Runtime scaling of RX / LRX / CRD with scene size and band count.

Run: ``.venv/bin/python benchmarks/anomaly.py [--quick]``. Single-threaded
torch (``torch.set_num_threads(1)``): on a shared, loaded machine two threads
were several times slower than one.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from torchgeo_ext.demo_scene import synthetic_anomaly_scene
from torchgeo_ext.export.raster import write_raster
from torchgeo_ext.metrics.anomaly import auc_d_f
from torchgeo_ext.models.bsdm import bsdm_scores
from torchgeo_ext.models.local_anomaly import crd_scores, lrx_scores
from torchgeo_ext.models.rx import rx_scores
from torchgeo_ext.models.stad import (
    STADTeacher,
    stad_scores,
    synthetic_blobs,
    teacher_loss,
)
from torchgeo_ext.pipelines.anomaly import rx_raster


def timed(fn: Callable[..., Any], *args: Any) -> tuple[Any, float]:
    start = time.perf_counter()
    out = fn(*args)
    return out, time.perf_counter() - start


def bench_rx_large(size: int, bands: int) -> None:
    cube, _ = synthetic_anomaly_scene(size, bands, seed=1)
    _, t_mem = timed(lambda: rx_scores(cube))
    with tempfile.TemporaryDirectory() as tmp:
        path = write_raster(
            Path(tmp) / 'cube.tif',
            cube,
            crs='EPSG:32633',
            transform=(30, 0, 5e5, 0, -30, 5e6),
            cog=False,
        )
        _, t_stream = timed(
            lambda: rx_raster(path, Path(tmp) / 'rx.tif', tile_size=256)
        )
    print(f'| RX {size} x {size} x {bands} | in memory | {t_mem:.2f} s |')
    print(
        f'| RX {size} x {size} x {bands} | streamed GeoTIFF (2 passes, 256 px windows, COG output) | {t_stream:.2f} s |'
    )


def train_stad(bands: int, steps: int, seed: int = 0) -> STADTeacher:
    """Paper-size teacher trained on anomaly-free synthetic crops with blobs."""
    torch.manual_seed(seed)
    teacher = STADTeacher(10)
    optimizer = torch.optim.Adam(teacher.parameters(), lr=1e-3)
    gen = torch.Generator().manual_seed(seed)
    for step in range(steps):
        crops = []
        for b in range(4):
            clean, _ = synthetic_anomaly_scene(
                32, bands, seed=1000 + 4 * step + b, targets=0
            )
            x = torch.from_numpy(clean)
            x = (
                torch.nn.functional.interpolate(
                    x.permute(1, 2, 0).reshape(-1, 1, bands),
                    size=10,
                    mode='linear',
                    align_corners=True,
                )
                .reshape(32, 32, 10)
                .permute(2, 0, 1)
            )
            crops.append((x - x.min()) / (x.max() - x.min()))
        batch = torch.stack(crops)
        mask = synthetic_blobs(4, 32, 32, generator=gen)
        loss = teacher_loss(teacher(batch * (1 + mask)), batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    teacher.eval()
    return teacher


def methods(
    teacher: STADTeacher, bsdm_iterations: int
) -> dict[str, Callable[..., torch.Tensor]]:
    return {
        'RX': lambda c, v=None: rx_scores(c, v),
        'LRX (5/9)': lambda c, v=None: lrx_scores(c, valid_mask=v),
        'CRD (5/9)': lambda c, v=None: crd_scores(c, valid_mask=v),
        f'BSDM ({bsdm_iterations} it)': lambda c, v=None: bsdm_scores(
            c, valid_mask=v, iterations=bsdm_iterations
        ),
        'STAD (teacher)': lambda c, v=None: stad_scores(c, model=teacher, valid_mask=v),
    }


def bench_auc(
    size: int, bands: int, teacher: STADTeacher, bsdm_iterations: int
) -> None:
    abundances = [(0.02, 0.05), (0.05, 0.1), (0.1, 0.2), (0.2, 0.5)]
    scenes = [
        synthetic_anomaly_scene(size, bands, seed=7, abundance=a) for a in abundances
    ]
    print(
        '| method | ' + ' | '.join(f'a in {a}' for a in abundances) + ' | mean time |'
    )
    print('| --- |' + ' --- |' * (len(abundances) + 1))
    for name, fn in methods(teacher, bsdm_iterations).items():
        aucs, times = [], []
        for cube, truth in scenes:
            scores, t = timed(fn, cube)
            aucs.append(auc_d_f(scores, truth))
            times.append(t)
        cells = ' | '.join(f'{a:.4f}' for a in aucs)
        print(f'| {name} | {cells} | {np.mean(times):.2f} s |')


def bench_had100(teacher: STADTeacher, bsdm_iterations: int) -> None:
    from torchgeo_ext.datasets.had100 import HAD100

    root = Path(__file__).parents[1] / 'tests' / 'data' / 'had100'
    ds = HAD100(root, split='test', layout='mat')
    print(
        '| method | '
        + ' | '.join(f'scene {i}' for i in range(len(ds)))
        + ' | mean AUC | mean time |'
    )
    print('| --- |' + ' --- |' * (len(ds) + 2))
    for name, fn in methods(teacher, bsdm_iterations).items():
        aucs, times = [], []
        for i in range(len(ds)):
            s = ds[i]
            scores, t = timed(fn, s['image'], s['valid_mask'])
            aucs.append(auc_d_f(scores, s['mask'], s['valid_mask']))
            times.append(t)
        cells = ' | '.join(f'{a:.4f}' for a in aucs)
        print(f'| {name} | {cells} | {np.mean(aucs):.4f} | {np.mean(times):.3f} s |')


def bench_scaling(
    sizes: list[int], bands_list: list[int], fixed_bands: int, fixed_size: int
) -> None:
    fns: dict[str, Callable[..., torch.Tensor]] = {
        'RX': rx_scores,
        'LRX (5/9)': lrx_scores,
        'CRD (5/9)': crd_scores,
    }
    print('| scene | ' + ' | '.join(fns) + ' |')
    print('| --- |' + ' --- |' * len(fns))
    for size in sizes:
        cube, _ = synthetic_anomaly_scene(size, fixed_bands, seed=2)
        cells = ' | '.join(f'{timed(fn, cube)[1]:.2f} s' for fn in fns.values())
        print(f'| {size} x {size} x {fixed_bands} | {cells} |')
    for bands in bands_list:
        cube, _ = synthetic_anomaly_scene(fixed_size, bands, seed=2)
        cells = ' | '.join(f'{timed(fn, cube)[1]:.2f} s' for fn in fns.values())
        print(f'| {fixed_size} x {fixed_size} x {bands} | {cells} |')


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument(
        '--quick', action='store_true', help='smaller sizes (smoke test)'
    )
    args = parser.parse_args()
    torch.set_num_threads(1)
    quick = args.quick
    print('## RX on a large cube\n')
    print('| cube | mode | time |\n| --- | --- | --- |')
    bench_rx_large(128 if quick else 512, 200)
    teacher, t_train = timed(lambda: train_stad(50, 5 if quick else 100))
    iterations = 20 if quick else 200
    print(
        f'\n(STAD teacher trained {5 if quick else 100} steps on anomaly-free synthetic crops in {t_train:.1f} s)\n'
    )
    print('## Synthetic scenes (64 x 64 x 50), AUC(D,F)\n')
    bench_auc(32 if quick else 64, 50, teacher, iterations)
    print('\n## Fake HAD100 test split (mat layout), AUC(D,F)\n')
    bench_had100(teacher, iterations)
    print('\n## Scaling\n')
    if quick:
        bench_scaling([16, 32], [10, 20], 20, 16)
    else:
        bench_scaling([32, 64, 100, 128], [25, 50, 100, 200], 100, 64)


if __name__ == '__main__':
    main()
