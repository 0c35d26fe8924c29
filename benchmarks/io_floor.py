#!/usr/bin/env python3
"""predict_raster against the I/O floor on the CPU (issue 23, part 2).

A near-free model (a 1 x 1 conv, 4 bands to 2) over a 4096 x 4096 x 4 uint8
raster, default output (float32 scores, Cloud-Optimized GeoTIFF), against the
I/O floor measured in the same run: reading the input with rasterio, plus
writing the same 2-band float32 output with GDAL's COG driver on all threads
(from memory, with the options predict_raster's writer uses: DEFLATE with the
floating-point predictor, 256 blocks, overviews). Target: at most 1.3x.

Floor and pipeline alternate within each run, so that load changes hit both.
Other output types are timed once per run for the record.

Usage: python benchmarks/io_floor.py [--size 4096] [--runs 3] [--variants]
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import rasterio.shutil
import torch
from rasterio.transform import from_origin

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from torchgeo_ext.export.raster import write_raster
from torchgeo_ext.pipelines.tiling import predict_raster

TRANSFORM = from_origin(500000, 5000000, 1, 1)
COG_OPTIONS = {
    'driver': 'COG',
    'compress': 'DEFLATE',
    'predictor': 'FLOATING_POINT',
    'blocksize': 256,
    'overviews': 'AUTO',
    'overview_resampling': 'AVERAGE',
    'bigtiff': 'IF_SAFER',
    'num_threads': 'ALL_CPUS',
}


def make_input(path: Path, size: int) -> Path:
    """A smooth 4-band uint8 scene (compresses like imagery, unlike noise)."""
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:size, 0:size].astype(np.float32) / size
    bands = [
        127
        + 60 * np.sin(2 * np.pi * (k + 1) * (x + y * k / 4))
        + rng.normal(0, 8, (size, size))
        for k in range(4)
    ]
    data = np.clip(np.stack(bands), 0, 255).astype(np.uint8)
    return write_raster(path, data, crs='EPSG:32633', transform=TRANSFORM, cog=False)


def model() -> torch.nn.Module:
    """The near-free model: a seeded 1 x 1 conv."""
    torch.manual_seed(0)
    return torch.nn.Conv2d(4, 2, 1).eval()


def floor(path: Path, out: Path, scores: np.ndarray) -> tuple[float, float]:
    """Seconds to read the input, and to write *scores* as a COG on all threads.

    Args:
        path: The input raster (read whole, as the floor's reading part).
        out: Where the COG goes.
        scores: The (K, H, W) float32 output to write, made beforehand.

    Returns:
        The reading and the writing seconds.
    """
    start = time.perf_counter()
    with rasterio.open(path) as src:
        src.read()
        profile = {
            'driver': 'MEM', 'width': src.width, 'height': src.height,
            'count': scores.shape[0], 'dtype': 'float32', 'crs': src.crs,
            'transform': src.transform, 'nodata': float('nan'),
        }  # fmt: skip
    read = time.perf_counter() - start
    start = time.perf_counter()
    with rasterio.MemoryFile() as mem, mem.open(**profile) as dst:
        dst.write(scores)
        rasterio.shutil.copy(dst, out, **COG_OPTIONS)
    return read, time.perf_counter() - start


def conv_scores(path: Path, conv: torch.nn.Module) -> np.ndarray:
    """The conv's output over the whole raster (what the floor writes)."""
    with rasterio.open(path) as src, torch.inference_mode():
        return conv(torch.from_numpy(src.read()).float()[None])[0].numpy()


def model_alone(conv: torch.nn.Module, size: int) -> float:
    """Seconds of the model alone on as many tiles as predict_raster feeds it (batch 4)."""
    from torchgeo_ext.pipelines.tiling import plan_tiles

    tiles = len(plan_tiles(size, size, 512, 64, 'cosine').windows)
    x = torch.rand(4, 4, 512, 512) * 255
    with torch.inference_mode():
        conv(x)
        start = time.perf_counter()
        for _ in range(math.ceil(tiles / 4)):
            conv(x)
    return time.perf_counter() - start


def timed(call: Callable[[], Any]) -> float:
    """Seconds of one call."""
    start = time.perf_counter()
    call()
    return time.perf_counter() - start


def is_cog(path: Path) -> bool:
    """Whether GDAL's COG driver wrote *path* (the layout tag it sets)."""
    with rasterio.open(path) as src:
        return src.tags(ns='IMAGE_STRUCTURE').get('LAYOUT') == 'COG'


VARIANTS: dict[str, dict[str, Any]] = {
    'classes (uint8)': {'output_kind': 'classes'},
    'probabilities uint8': {'output_kind': 'probabilities', 'dtype': 'uint8'},
    'probabilities float16': {'output_kind': 'probabilities', 'dtype': 'float16'},
    'scores, cog=False': {'cog': False},
}


def main() -> None:
    """Run the comparison and print Markdown."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--size', type=int, default=4096)
    parser.add_argument('--runs', type=int, default=3)
    parser.add_argument('--variants', action='store_true', help='time other outputs')
    parser.add_argument(
        '--torch-threads',
        type=int,
        default=None,
        help="torch's intra-op threads (default: torch's own choice)",
    )
    args = parser.parse_args()
    if args.torch_threads is not None:
        torch.set_num_threads(args.torch_threads)
    conv = model()
    print(f'torch {torch.__version__}, GDAL {rasterio.__gdal_version__}, '
          f'{torch.get_num_threads()} torch threads')  # fmt: skip
    print(f'\n{args.size} x {args.size} x 4 uint8, tile 512, overlap 64, batch 4\n')
    print('| run | read (s) | COG write (s) | floor (s) | predict_raster (s) | ratio '
          '| model alone (s) |')  # fmt: skip
    print('| ---: | ---: | ---: | ---: | ---: | ---: | ---: |')
    ratios = []
    with tempfile.TemporaryDirectory() as tmp:
        src = make_input(Path(tmp) / 'in.tif', args.size)
        scores = conv_scores(src, conv)
        for run in range(1, args.runs + 1):
            read, write = floor(src, Path(tmp) / 'floor.tif', scores)
            out = Path(tmp) / 'out.tif'
            seconds = timed(partial(predict_raster, conv, src, out, progress=False))
            assert is_cog(out), 'predict_raster did not write a COG'
            ratio = seconds / (read + write)
            ratios.append(ratio)
            alone = model_alone(conv, args.size)
            print(f'| {run} | {read:.2f} | {write:.2f} | {read + write:.2f} '
                  f'| {seconds:.2f} | {ratio:.2f} | {alone:.2f} |')  # fmt: skip
            if args.variants:
                for name, options in VARIANTS.items():
                    path = Path(tmp) / 'variant.tif'
                    call = partial(predict_raster, conv, src, path, progress=False)
                    t = timed(partial(call, **options))
                    print(f'|  | {name} | | | {t:.2f} | {t / (read + write):.2f} | |')
    print(f'\nmedian ratio {statistics.median(ratios):.2f} (target <= 1.3)')


if __name__ == '__main__':
    main()
