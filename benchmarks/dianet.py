#!/usr/bin/env python3
"""DIAnet size and CPU speed: per 100 x 100 tile, and tiled over a whole FYH scene.

Part 1, per tile: for each width (W48 = the paper, W18, W8 = the tiny test
variant), parameters, MACs of one 14 x 100 x 100 tile (convolutions by a
meta-device count; the non-local matrix products computed analytically) and
CPU inference time per tile (batch 1, eval mode, inference mode),
median of ``--repeats`` timed calls after one warm-up. Widths are timed in
interleaved rounds so that load from other processes hits all alike; the
ratio to W8 is reported per width.

Part 2, scene: ``torchgeo-ext segment``'s code path (:func:`segment_raster`:
tiled reading, batched inference, cosine blending, streaming COG writing)
over a synthetic 14-band 900 x 1000 EPSG:4326 scene on the FYH grid, with a
randomly initialised checkpoint of each ``--scene-models`` model; 100 x 100
tiles, overlap 25, batch 8. Reported: wall time, the time of the model
alone on as many tiles (batches of 8, no I/O), their ratio (the cost of
reading, blending and writing), tiles and megapixels per second; medians of
``--scene-rounds`` interleaved rounds (segment, then model alone).

Usage: python benchmarks/dianet.py [--widths 48 18 8] [--repeats 5]
       [--scene-models dianet_w8] [--scene-size 900 1000]
       [--scene-rounds 1] [--threads 1]
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..'))

from torchgeo_ext.models.complexity import count_macs
from torchgeo_ext.models.dianet import DIANet


def tile_model(width: int) -> torch.nn.Module:
    if width >= 16:
        return DIANet(width=width)
    return DIANet(width=width, layer1_planes=16, num_blocks=1, num_modules=(1, 1, 1))


def attention_macs(width: int, size: int = 100, splits: int = 2) -> int:
    """MACs of the quadrant non-local matrix products (not counted by count_macs)."""
    channels = 15 * width // 2  # inter channels of the 15 w fused channels
    n = (size // splits) ** 2
    return splits**2 * 2 * n * n * channels


def per_tile(widths: list[int], repeats: int) -> None:
    models = {w: tile_model(w).eval() for w in widths}
    print(
        '| model | params (M) | conv GMACs / tile | attention GMACs / tile '
        '| s / tile (batch 1) | ratio to smallest |'
    )
    print('| --- | ---: | ---: | ---: | ---: | ---: |')
    times: dict[int, list[float]] = {w: [] for w in widths}
    x = torch.rand(1, 14, 100, 100)
    with torch.inference_mode():
        for w in widths:  # warm-up
            models[w](x)
        for _ in range(repeats):
            for w in widths:
                start = time.perf_counter()
                models[w](x)
                times[w].append(time.perf_counter() - start)
    base = statistics.median(times[min(widths)])
    for w in widths:
        c = count_macs(models[w], input_shape=(1, 14, 100, 100))
        t = statistics.median(times[w])
        name = f'dianet_w{w}' if w >= 16 else f'dianet_w{w} (tiny)'
        print(
            f'| {name} | {c.mparams:.2f} | {c.gmacs:.2f} | {attention_macs(w) / 1e9:.2f} | '
            f'{t:.2f} | {t / base:.1f} |',
            flush=True,
        )


def scene(models: list[str], size: tuple[int, int], rounds: int) -> None:
    import lightning
    import rasterio

    from torchgeo_ext.datasets.fyh import grid_transform
    from torchgeo_ext.pipelines.segmentation import segment_raster
    from torchgeo_ext.trainers.segmentation import SegmentationTask

    height, width = size
    print()
    print(
        '| model | scene | tiles (100, overlap 25) | segment wall (s) | model alone (s) '
        '| ratio | tiles / s | Mpx / s |'
    )
    print('| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |')
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / 'scene.tif'
        data = np.random.default_rng(0).random((14, height, width), dtype=np.float32)
        with rasterio.open(
            path,
            'w',
            driver='GTiff',
            width=width,
            height=height,
            count=14,
            dtype='float32',
            crs='EPSG:4326',
            transform=grid_transform(),
        ) as dst:
            dst.write(data)
        stride = 75  # tiles start every 75 px, the last one flush with the edge
        tiles = (math.ceil((height - 100) / stride) + 1) * (
            math.ceil((width - 100) / stride) + 1
        )
        for name in models:
            task = SegmentationTask(model=name, tile_size=100)
            trainer = lightning.Trainer(logger=False, enable_checkpointing=False)
            trainer.strategy.connect(task)
            ckpt = Path(tmp) / f'{name}.ckpt'
            trainer.save_checkpoint(ckpt)
            task.eval()
            x = torch.rand(8, 14, 100, 100)
            walls, alone = [], []
            # Interleaved rounds: load from other processes hits both alike.
            for _ in range(rounds):
                start = time.perf_counter()
                segment_raster(
                    path, Path(tmp) / f'{name}.tif', ckpt, overlap=25, batch_size=8
                )
                walls.append(time.perf_counter() - start)
                # Baseline: the model alone on as many tiles (batches of 8, no I/O).
                start = time.perf_counter()
                with torch.inference_mode():
                    for done in range(0, tiles, 8):
                        task.predict_logits(x[: min(8, tiles - done)])
                alone.append(time.perf_counter() - start)
            wall = statistics.median(walls)
            model_only = statistics.median(alone)
            ratio = statistics.median(w / a for w, a in zip(walls, alone, strict=True))
            print(
                f'| {name} | {height} x {width} | {tiles} | {wall:.1f} | {model_only:.1f} | '
                f'{ratio:.2f} | {tiles / wall:.2f} | '
                f'{height * width / wall / 1e6:.4f} |',
                flush=True,
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--widths', type=int, nargs='+', default=[48, 18, 8])
    parser.add_argument('--repeats', type=int, default=5)
    parser.add_argument('--scene-models', nargs='*', default=['dianet_w8'])
    parser.add_argument('--scene-size', type=int, nargs=2, default=[900, 1000])
    parser.add_argument('--scene-rounds', type=int, default=1)
    parser.add_argument('--threads', type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    print(
        f'torch {torch.__version__}, {args.threads} thread(s), {os.cpu_count()} CPUs, '
        f'load average {os.getloadavg()[0]:.1f}'
    )
    print()
    per_tile(sorted(args.widths, reverse=True), args.repeats)
    if args.scene_models:
        scene(args.scene_models, tuple(args.scene_size), args.scene_rounds)  # type: ignore[arg-type]


if __name__ == '__main__':
    main()
