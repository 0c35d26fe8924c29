"""Anomaly detection at scene scale (results in benchmarks/anomaly_scale.md).

1. ``--section scene`` (``--methods lrx crd`` for those two only):
   ``torchgeo-ext anomaly`` with rx, lrx and crd on a
   2048 x 1024 x 50 float32 tiled GeoTIFF (419 MB), each in a fresh process:
   wall and CPU time, peak RSS above the RSS of ``import torch, rasterio``,
   and the load average of the (shared) machine around the run.
2. ``--section large``: the same for rx on a larger scene (``--large-rows``
   rows of 2048 columns x 50 bands), to see how memory scales.
3. ``--section bsdm``: BSDM with the default settings on a 256 x 256 scene
   (time, peak RSS above the imports, AUC); then (also ``--section
   bsdm-batches``) the AUC of mini-batches against the authors' full batch on
   the 24 x 24 scenes of ``benchmarks/anomaly.py`` (mini-batch 256 of their
   576 pixels: the default's 4096 would be the full batch there).
4. ``--section fitted``: peak RSS of the streamed bsdm, stad and sap on
   square 50-band scenes of ``--fitted-sizes`` pixels a side, with reduced
   step counts (``FITTED_OPTIONS``; a one-step STAD checkpoint).
5. ``--section auc``: LRX and CRD AUC on the demo scene and the scenes of
   ``benchmarks/anomaly.py`` (the scores equal the previous implementation
   within float tolerance, ``tests/models/test_local_anomaly.py``).

Run: ``.venv/bin/python benchmarks/anomaly_scale.py [--section S]``. Scenes go
to a temporary folder (``--tmp``) that is removed afterwards.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Literal

import numpy as np

#: Child process: run the command line in-process, report peak RSS and times.
CHILD = """
import json, os, resource, sys, time
start, cpu = time.perf_counter(), time.process_time()
load = os.getloadavg()[0]
if sys.argv[1:]:
    from torchgeo_ext.cli import main
    status = main(sys.argv[1:])
else:
    import torch, rasterio
    status = 0
print(json.dumps({
    'status': status,
    'rss_mb': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    'wall_s': time.perf_counter() - start,
    'cpu_s': time.process_time() - cpu,
    'load_before': load,
    'load_after': os.getloadavg()[0],
}))
"""


def measure(*argv: str) -> dict[str, float]:
    """Run ``torchgeo-ext ARGV`` (or only the imports) in a fresh interpreter."""
    result = subprocess.run(
        [sys.executable, '-c', CHILD, *argv], check=True, capture_output=True, text=True
    )
    report: dict[str, float] = json.loads(result.stdout.strip().splitlines()[-1])
    if report['status'] != 0:
        raise RuntimeError(f'{" ".join(argv)} failed: {result.stderr[-2000:]}')
    return report


def write_scene(path: Path, rows: int, cols: int, bands: int = 50) -> float:
    """A tiled, uncompressed float32 GeoTIFF of synthetic 1024 x 1024 blocks; its MB."""
    import rasterio
    from rasterio.windows import Window

    from torchgeo_ext.demos.scene import synthetic_anomaly_scene

    block, _ = synthetic_anomaly_scene(1024, bands, seed=1)
    block = block.astype(np.float32)
    profile = {
        'driver': 'GTiff',
        'width': cols,
        'height': rows,
        'count': bands,
        'dtype': 'float32',
        'crs': 'EPSG:32633',
        'transform': rasterio.Affine(30, 0, 5e5, 0, -30, 5e6),
        'tiled': True,
        'blockxsize': 256,
        'blockysize': 256,
        'interleave': 'pixel',
        'bigtiff': 'YES',
    }
    with rasterio.open(path, 'w', **profile) as dst:
        for r in range(0, rows, 1024):
            for c in range(0, cols, 1024):
                h, w = min(1024, rows - r), min(1024, cols - c)
                dst.write(block[:, :h, :w], window=Window(c, r, w, h))
    return rows * cols * bands * 4 / 1e6


def report_runs(scene: Path, size_mb: float, methods: list[str], tmp: Path) -> None:
    """One markdown row per method: time, CPU, RSS above imports, target, load."""
    base = measure()['rss_mb']
    target = 150 + 0.25 * size_mb
    print(f'`import torch, rasterio`: {base:.0f} MB peak RSS')
    print(f'target: <= {target:.0f} MB above it (150 MB + 25 % of {size_mb:.0f} MB)\n')
    print(
        '| method | wall | CPU | peak RSS above imports | load average before / after |'
    )
    print('| --- | --- | --- | --- | --- |')
    for method in methods:
        out = tmp / f'{method}.tif'
        vec = tmp / f'{method}.gpkg'
        run = measure(
            *('anomaly', str(scene), '-o', str(out), '--method', method),
            *('--vector', str(vec)),
        )
        assert run['status'] == 0, run
        print(
            f'| {method} | {run["wall_s"]:.1f} s | {run["cpu_s"]:.1f} s | '
            f'{run["rss_mb"] - base:.0f} MB | '
            f'{run["load_before"]:.1f} / {run["load_after"]:.1f} |',
            flush=True,
        )


def bsdm_default_run(tmp: Path) -> None:
    """``anomaly --method bsdm`` with the defaults on a 256 x 256 x 50 scene."""
    import rasterio
    import torch

    from torchgeo_ext.demos.scene import synthetic_anomaly_scene
    from torchgeo_ext.export.raster import write_raster
    from torchgeo_ext.metrics.anomaly import auc_d_f
    from torchgeo_ext.models.rx import rx_scores

    cube, truth = synthetic_anomaly_scene(256, 50, seed=7, abundance=(0.02, 0.2))
    path = write_raster(
        tmp / 'bsdm.tif', cube, crs='EPSG:32633', transform=(30, 0, 5e5, 0, -30, 5e6)
    )
    base = measure()['rss_mb']
    run = measure('anomaly', str(path), '-o', str(tmp / 'b.tif'), '--method', 'bsdm')
    with rasterio.open(tmp / 'b.tif') as src:
        auc = auc_d_f(torch.from_numpy(src.read(1)), torch.from_numpy(truth))
    print('| scene | setting | wall | CPU | peak RSS above imports | AUC | RX AUC |')
    print('| --- | --- | --- | --- | --- | --- | --- |')
    print(
        f'| synthetic 256 x 256 x 50 | defaults (500 steps, mini-batch 4096) | '
        f'{run["wall_s"]:.0f} s | {run["cpu_s"]:.0f} s | {run["rss_mb"] - base:.0f} MB | '
        f'{auc:.3f} | {auc_d_f(rx_scores(cube), truth):.3f} |\n',
        flush=True,
    )


def bsdm_batches(size: int, minis: list[int], seeds: int) -> None:
    """Rank AUC of the full batch against mini-batches on the benchmark scenes."""
    import torch

    from torchgeo_ext.metrics.anomaly import auc_d_f
    from torchgeo_ext.models.bsdm import bsdm_scores
    from torchgeo_ext.models.rx import rx_scores

    sys.path.insert(0, str(Path(__file__).parent))
    from anomaly import semi_real_scenes

    torch.set_num_threads(1)
    print(
        f'{size} x {size} scenes, 500 steps, {seeds} seeds: rank AUC mean (min-max)\n'
    )
    heads = ''.join(f' BSDM mini-batch {mini} |' for mini in minis)
    print(f'| scene | RX | BSDM full batch (authors) |{heads}')
    print('| --- | --- | --- |' + ' --- |' * len(minis))
    for name, (scene, mask) in semi_real_scenes(size).items():
        x = torch.as_tensor(scene, dtype=torch.float32)
        cells = []
        batches: list[int | Literal['full']] = ['full', *minis]
        for batch in batches:
            values = [
                auc_d_f(bsdm_scores(x, seed=s, batch_size=batch), mask)
                for s in range(seeds)
            ]
            cells.append(f'{np.mean(values):.3f} ({min(values):.3f}-{max(values):.3f})')
        rx = auc_d_f(rx_scores(scene), mask)
        print(f'| {name} | {rx:.3f} | ' + ' | '.join(cells) + ' |', flush=True)


def stad_checkpoint(path: Path) -> Path:
    """A STAD checkpoint of the authors' sizes (10 bands), one training step: memory only."""
    import lightning
    import torch
    from torch.utils.data import DataLoader

    from torchgeo_ext.trainers.anomaly import STADTask

    task = STADTask(in_channels=10)
    data = [{'image': torch.rand(10, 64, 64)} for _ in range(2)]
    trainer = lightning.Trainer(
        max_steps=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        accelerator='cpu',
    )
    trainer.fit(task, DataLoader(data, batch_size=2))  # type: ignore[arg-type]
    trainer.save_checkpoint(path)
    return path


#: Reduced settings of the fitted methods for the memory runs (their memory
#: does not depend on the step counts; their time does).
FITTED_OPTIONS = {'bsdm': ['--iterations', '20'], 'stad': ['--align-bands'], 'sap': []}


def fitted_runs(tmp: Path, sizes: list[int], methods: list[str]) -> None:
    """Peak RSS of streamed bsdm, stad and sap on square scenes of growing size."""
    base = measure()['rss_mb']
    # In a child: a child's peak RSS starts at its parent's RSS when forked.
    checkpoint = str(tmp / 'stad.ckpt')
    code = f'from anomaly_scale import stad_checkpoint; stad_checkpoint({checkpoint!r})'
    subprocess.run([sys.executable, '-c', code], check=True, cwd=Path(__file__).parent)
    print(f'`import torch, rasterio`: {base:.0f} MB peak RSS\n')
    print('| method | options | scene | size | wall | CPU | peak RSS above imports |')
    print('| --- | --- | --- | --- | --- | --- | --- |')
    for size in sizes:
        scene = tmp / f'fitted{size}.tif'
        megabytes = write_scene(scene, size, size)
        for method in methods:
            extra = FITTED_OPTIONS[method]
            if method == 'stad':
                extra = [*extra, '--checkpoint', checkpoint]
            out = tmp / f'{method}{size}.tif'
            run = measure(
                *('anomaly', str(scene), '-o', str(out), '--method', method, *extra)
            )
            assert run['status'] == 0, run
            shown = ' '.join(FITTED_OPTIONS[method]) or 'defaults'
            print(
                f'| {method} | `{shown}` | {size} x {size} x 50 | {megabytes:.0f} MB | '
                f'{run["wall_s"]:.0f} s | {run["cpu_s"]:.0f} s | '
                f'{run["rss_mb"] - base:.0f} MB |',
                flush=True,
            )
        scene.unlink()


def bench_auc(size: int) -> None:
    """LRX and CRD AUC on the scenes of benchmarks/anomaly.py."""
    from torchgeo_ext.metrics.anomaly import auc_d_f
    from torchgeo_ext.models.local_anomaly import crd_scores, lrx_scores

    sys.path.insert(0, str(Path(__file__).parent))
    from anomaly import semi_real_scenes

    print('| scene | LRX (5/9) | CRD (5/9) |\n| --- | --- | --- |')
    for name, (cube, truth) in semi_real_scenes(size).items():
        lrx, crd = lrx_scores(cube), crd_scores(cube)
        print(f'| {name} | {auc_d_f(lrx, truth):.3f} | {auc_d_f(crd, truth):.3f} |')


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument(
        '--section',
        choices=('all', 'scene', 'large', 'bsdm', 'bsdm-batches', 'fitted', 'auc'),
        default='all',
    )
    parser.add_argument('--methods', nargs='+', default=['rx', 'lrx', 'crd'])
    parser.add_argument('--large-rows', type=int, default=8192)
    parser.add_argument('--bsdm-size', type=int, default=24)
    parser.add_argument('--bsdm-mini', type=int, nargs='+', default=[256])
    parser.add_argument('--seeds', type=int, default=2)
    parser.add_argument('--fitted-sizes', type=int, nargs='+', default=[256, 512])
    parser.add_argument('--fitted-methods', nargs='+', default=['bsdm', 'stad', 'sap'])
    parser.add_argument('--tmp', type=Path, default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.tmp) as folder:
        tmp = Path(folder)
        if args.section in ('all', 'scene'):
            print('## 2048 x 1024 x 50 float32 (tiled GeoTIFF)\n')
            size = write_scene(tmp / 'scene.tif', 2048, 1024)
            report_runs(tmp / 'scene.tif', size, args.methods, tmp)
            (tmp / 'scene.tif').unlink()
        if args.section in ('all', 'large'):
            rows = args.large_rows
            print(f'\n## {rows} x 2048 x 50 float32 (tiled GeoTIFF)\n')
            size = write_scene(tmp / 'large.tif', rows, 2048)
            report_runs(tmp / 'large.tif', size, ['rx'], tmp)
        if args.section in ('all', 'bsdm'):
            print('\n## BSDM\n')
            bsdm_default_run(tmp)
        if args.section in ('all', 'bsdm', 'bsdm-batches'):
            bsdm_batches(args.bsdm_size, args.bsdm_mini, args.seeds)
        if args.section in ('all', 'fitted'):
            print('\n## Streamed bsdm, stad and sap: memory as the scene grows\n')
            fitted_runs(tmp, args.fitted_sizes, args.fitted_methods)
        if args.section in ('all', 'auc'):
            print('\n## LRX and CRD AUC (24 x 24 scenes of benchmarks/anomaly.py)\n')
            bench_auc(24)
    print(
        f'\ntorch threads: default; cores: {os.cpu_count()}; {time.strftime("%Y-%m-%d %H:%M")}'
    )


if __name__ == '__main__':
    main()
