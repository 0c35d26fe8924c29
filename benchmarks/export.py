"""Benchmark tiled prediction (torchgeo_ext.pipelines.tiling.predict_raster).

Measures, in one run:

(a) predict_raster throughput against the bare model forward on the same tiles
    (same tile grid, same batches, tiles already in memory): target >= 0.85;
(b) predict_raster against a plain TorchGeo loop (RasterDataset +
    GriddedPatchSampler + DataLoader) that stitches tile outputs into a full
    in-memory array and writes it at the end;
(c) peak memory (RSS high-water mark ``VmHWM`` of a fresh process, reset
    after the imports through ``/proc/self/clear_refs``) of predict_raster on
    a 2k x 2k, a 16k x 16k and a 64k x 4k raster, and of the plain loop on the
    2k raster (target: the 16k and 64k peaks at most 1.2x the 2k peak).

Usage::

    .venv/bin/python benchmarks/export.py            # everything (a few minutes)
    .venv/bin/python benchmarks/export.py --big 0    # skip the 16k raster
    .venv/bin/python benchmarks/export.py --memory-only --wide 0 0   # (c) without 64k x 4k
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rasterio.transform import from_origin
from rasterio.windows import Window
from torch import nn

from torchgeo_ext.export.raster import RasterWriter, open_inputs, write_raster
from torchgeo_ext.pipelines.tiling import predict_raster, tile_grid

CRS = 'EPSG:32633'


class Cheap(nn.Module):
    """A nearly free model: the memory runs measure the pipeline, not the network."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, :2] * 0.01 - 1.0


def bench_model(cheap: bool = False) -> nn.Module:
    torch.manual_seed(0)
    if cheap:
        return Cheap()
    return nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(16, 16, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(16, 2, 1),
    ).eval()


def make_raster(path: Path, size: int, height: int | None = None) -> Path:
    """Write a size (wide) x height x 3 uint8 GeoTIFF block by block (bounded memory)."""
    height = size if height is None else height
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 32, (3, 256, size), dtype=np.uint8)
    x = np.arange(size, dtype=np.int64)
    with RasterWriter(
        path,
        width=size,
        height=height,
        count=3,
        dtype='uint8',
        crs=CRS,
        transform=from_origin(500000, 5000000 + height, 1, 1),
        cog=False,
    ) as dst:
        for row in range(0, height, 256):
            h = min(256, height - row)
            y = np.arange(row, row + h, dtype=np.int64)[:, None]
            base = ((x[None] // 7 + y // 5) % 200).astype(np.uint8)
            block = base[None] + noise[:, :h]
            dst.write(Window(0, row, size, h), block)
    return path


def _status_mb(field: str) -> float:
    with open('/proc/self/status') as f:
        for line in f:
            if line.startswith(field + ':'):
                return int(line.split()[1]) / 1024  # kB
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def reset_peak_rss() -> None:
    """Reset the RSS high-water mark (Linux), so imports do not count."""
    try:
        with open('/proc/self/clear_refs', 'w') as f:
            f.write('5')
    except OSError:  # pragma: no cover - not Linux
        pass


def child(args: argparse.Namespace) -> None:
    """Run one measurement in this (fresh) process and print JSON."""
    torch.set_num_threads(args.threads)
    model = bench_model(cheap=args.cheap)
    reset_peak_rss()
    rss0 = _status_mb('VmRSS')
    t0 = time.perf_counter()
    if args.mode == 'predict':
        predict_raster(
            model,
            args.input,
            args.output,
            tile_size=args.tile,
            overlap=args.overlap,
            batch_size=args.batch,
            blend='cosine',
            output_kind=args.kind,
            progress=False,
            cog=False,
        )
    else:
        torchgeo_loop(model, Path(args.input), Path(args.output), args)
    seconds = time.perf_counter() - t0
    print(
        json.dumps(
            {
                'seconds': seconds,
                'rss_before_mb': rss0,
                'peak_rss_mb': _status_mb('VmHWM'),
            }
        )
    )


def torchgeo_loop(
    model: nn.Module, path: Path, output: Path, args: argparse.Namespace
) -> None:
    """The plain TorchGeo way: sampler + DataLoader, stitch into a full array."""
    from torch.utils.data import DataLoader
    from torchgeo.datasets import RasterDataset, stack_samples
    from torchgeo.samplers import GriddedPatchSampler

    dataset = RasterDataset(paths=[path])
    sampler = GriddedPatchSampler(
        dataset, size=args.tile, stride=args.tile - args.overlap
    )
    loader = DataLoader(
        dataset, sampler=sampler, batch_size=args.batch, collate_fn=stack_samples
    )
    with open_inputs(path) as stack:
        height, width, transform = stack.height, stack.width, stack.transform
    full: np.ndarray | None = None
    with torch.inference_mode():
        for batch in loader:
            out = model(batch['image']).numpy()
            if full is None:
                full = np.zeros((out.shape[1], height, width), dtype=np.float32)
            for tile, t in zip(out, batch['transform']):
                col = round((float(t[2]) - transform.c) / transform.a)
                row = round((float(t[5]) - transform.f) / transform.e)
                # the sampler's grid is centred on the raster: chips may stick out
                r0, c0 = max(row, 0), max(col, 0)
                r1 = min(row + tile.shape[1], height)
                c1 = min(col + tile.shape[2], width)
                if r1 > r0 and c1 > c0:
                    full[:, r0:r1, c0:c1] = tile[
                        :, r0 - row : r1 - row, c0 - col : c1 - col
                    ]
    assert full is not None
    write_raster(output, full, crs=CRS, transform=transform, cog=False)


def run_child(
    mode: str, input_path: Path, output: Path, a: argparse.Namespace, **kw: Any
) -> dict[str, float]:
    cmd = [
        sys.executable, __file__, '--child', mode, '--input', str(input_path),
        '--output', str(output), '--tile', str(a.tile), '--overlap', str(a.overlap),
        '--batch', str(a.batch), '--threads', str(a.threads),
    ]  # fmt: skip
    if kw.get('cheap'):
        cmd.append('--cheap')
    if kw.get('kind'):
        cmd += ['--kind', kw['kind']]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=True)
    result: dict[str, float] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def bare_forward(
    model: nn.Module, path: Path, a: argparse.Namespace
) -> tuple[float, int]:
    """Time the model alone on exactly the tiles and batches predict_raster uses."""
    with open_inputs(path) as stack:
        rows = tile_grid(stack.height, a.tile, a.overlap)
        cols = tile_grid(stack.width, a.tile, a.overlap)
        th, tw = min(a.tile, stack.height), min(a.tile, stack.width)
        tiles = [stack.read(Window(c, r, tw, th))[0] for r in rows for c in cols]
    batches = [
        torch.from_numpy(np.stack(tiles[i : i + a.batch]))
        for i in range(0, len(tiles), a.batch)
    ]
    t0 = time.perf_counter()
    with torch.inference_mode():
        for b in batches:
            model(b)
    return time.perf_counter() - t0, len(tiles)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        '--size', type=int, default=2048, help='raster size for (a), (b), (c)'
    )
    parser.add_argument(
        '--big', type=int, default=16384, help='large raster size for (c); 0 skips'
    )
    parser.add_argument(
        '--wide',
        type=int,
        nargs=2,
        default=(65536, 4096),
        metavar=('WIDTH', 'HEIGHT'),
        help='very wide raster for (c) (a flight line); 0 0 skips',
    )
    parser.add_argument('--tile', type=int, default=512)
    parser.add_argument('--overlap', type=int, default=64)
    parser.add_argument('--batch', type=int, default=4)
    parser.add_argument('--repeat', type=int, default=2)
    parser.add_argument('--threads', type=int, default=torch.get_num_threads())
    parser.add_argument('--workdir', type=Path, default=None)
    parser.add_argument('--memory-only', action='store_true', help='skip (a) and (b)')
    parser.add_argument(
        '--child', choices=['predict', 'torchgeo'], help=argparse.SUPPRESS
    )
    parser.add_argument('--input', help=argparse.SUPPRESS)
    parser.add_argument('--output', help=argparse.SUPPRESS)
    parser.add_argument('--cheap', action='store_true', help=argparse.SUPPRESS)
    parser.add_argument('--kind', default='scores', help=argparse.SUPPRESS)
    a = parser.parse_args()
    if a.child:
        a.mode = a.child
        child(a)
        return

    torch.set_num_threads(a.threads)
    with tempfile.TemporaryDirectory(dir=a.workdir) as tmp:
        work = Path(tmp)
        small = make_raster(work / 'small.tif', a.size)
        model = bench_model()
        rows: list[tuple[str, str]] = []

        if not a.memory_only:
            # (a) and (b): best of `repeat`, interleaved so that load drifts hit all alike
            bare, pred, tg = [], [], []
            n_tiles = 0
            with torch.inference_mode():  # warm-up (one-time kernel initialisation)
                model(torch.zeros(a.batch, 3, a.tile, a.tile))
            for _ in range(a.repeat):
                t, n_tiles = bare_forward(model, small, a)
                bare.append(t)
                t0 = time.perf_counter()
                predict_raster(model, small, work / 'pred.tif', tile_size=a.tile, overlap=a.overlap,
                               batch_size=a.batch, progress=False, cog=False)  # fmt: skip
                pred.append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                torchgeo_loop(model, small, work / 'tg.tif', a)
                tg.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            predict_raster(model, small, work / 'cog.tif', tile_size=a.tile, overlap=a.overlap,
                           batch_size=a.batch, progress=False, cog=True)  # fmt: skip
            pred_cog = time.perf_counter() - t0
            mpx = a.size * a.size / 1e6
            rows += [
                ('raster', f'{a.size} x {a.size} x 3 uint8, tile {a.tile}, overlap {a.overlap}, batch {a.batch}, {n_tiles} tiles'),
                ('bare model forward on the same tiles', f'{min(bare):.2f} s'),
                ('predict_raster (cosine blend, tiled GeoTIFF)', f'{min(pred):.2f} s ({mpx / min(pred):.2f} Mpx/s)'),
                ('predict_raster throughput / bare forward (a)', f'{min(bare) / min(pred):.3f} (target >= 0.85)'),
                ('predict_raster with COG conversion', f'{pred_cog:.2f} s'),
                ('TorchGeo GriddedPatchSampler + DataLoader + stitch (b)', f'{min(tg):.2f} s'),
                ('predict_raster speed-up over the TorchGeo loop', f'{min(tg) / min(pred):.2f}x'),
            ]  # fmt: skip

        # (c) peak memory in fresh processes (cheap model, class output)
        mem = run_child(
            'predict', small, work / 'm_small.tif', a, cheap=True, kind='classes'
        )
        mem_tg = run_child('torchgeo', small, work / 'm_tg.tif', a, cheap=True)
        rows += [
            (f'peak RSS, predict_raster {a.size}^2 (RSS before the run)', f'{mem["peak_rss_mb"]:.0f} MiB ({mem["rss_before_mb"]:.0f} MiB), {mem["seconds"]:.1f} s'),
            (f'peak RSS, TorchGeo loop {a.size}^2 (RSS before the run)', f'{mem_tg["peak_rss_mb"]:.0f} MiB ({mem_tg["rss_before_mb"]:.0f} MiB), {mem_tg["seconds"]:.1f} s'),
        ]  # fmt: skip
        if a.big:
            tall = make_raster(work / 'tall.tif', a.size, a.big)
            mem_tall = run_child(
                'predict', tall, work / 'm_tall.tif', a, cheap=True, kind='classes'
            )
            rows.append((
                f'peak RSS, predict_raster {a.size} wide x {a.big} tall (RSS before the run)',
                f'{mem_tall["peak_rss_mb"]:.0f} MiB ({mem_tall["rss_before_mb"]:.0f} MiB), {mem_tall["seconds"]:.1f} s',
            ))  # fmt: skip
            t0 = time.perf_counter()
            big = make_raster(work / 'big.tif', a.big)
            gen = time.perf_counter() - t0
            mem_big = run_child(
                'predict', big, work / 'm_big.tif', a, cheap=True, kind='classes'
            )
            full = 2 * a.big * a.big * 4 / 2**20
            rows += [
                (f'peak RSS, predict_raster {a.big}^2 (RSS before the run)', f'{mem_big["peak_rss_mb"]:.0f} MiB ({mem_big["rss_before_mb"]:.0f} MiB), {mem_big["seconds"]:.1f} s (input written in {gen:.1f} s)'),
                (f'growth {a.size}^2 -> {a.big}^2 ({(a.big / a.size) ** 2:.0f}x pixels)', f'{mem_big["peak_rss_mb"] - mem["peak_rss_mb"]:+.0f} MiB'),
                (f'peak RSS {a.big}^2 / peak RSS {a.size}^2', f'{mem_big["peak_rss_mb"] / mem["peak_rss_mb"]:.3f} (target <= 1.2)'),
                (f'TorchGeo loop {a.big}^2 (not run)', f'needs the full 2 x {a.big}^2 float32 output in memory: >= {full:.0f} MiB'),
            ]  # fmt: skip
        if a.wide[0]:
            width, height = a.wide
            t0 = time.perf_counter()
            wide = make_raster(work / 'wide.tif', width, height)
            gen = time.perf_counter() - t0
            mem_wide = run_child(
                'predict', wide, work / 'm_wide.tif', a, cheap=True, kind='classes'
            )
            rows += [
                (f'peak RSS, predict_raster {width} wide x {height} tall (RSS before the run)', f'{mem_wide["peak_rss_mb"]:.0f} MiB ({mem_wide["rss_before_mb"]:.0f} MiB), {mem_wide["seconds"]:.1f} s (input written in {gen:.1f} s)'),
                (f'peak RSS {width} x {height} / peak RSS {a.size}^2', f'{mem_wide["peak_rss_mb"] / mem["peak_rss_mb"]:.3f} (target <= 1.2)'),
            ]  # fmt: skip

    print('| measurement | result |')
    print('| --- | --- |')
    for k, v in rows:
        print(f'| {k} | {v} |')


if __name__ == '__main__':
    main()
