"""Reading a COG over HTTP (local server, added latency) against reading the local file.

Usage::

    .venv/bin/python benchmarks/remote.py [--size 2048] [--repeat 3] [--latency 0 0.005 0.02]

A 4-band uint8 Cloud-Optimized GeoTIFF (256 x 256 blocks) is made by tiling the
own-imagery fake scene. Two reads are timed, each through ``open_inputs`` (so
with ``CLOUD_READ_OPTIONS`` for the HTTP paths), best of ``--repeat``:

* a scan: the whole raster in 512 x 512 windows, row by row (what
  ``predict_raster`` does);
* random windows: 64 windows of 256 x 256 at random places (what a sampler does).

For each, the local file and the file served by
:class:`~torchgeo_ext.export.http_server.LocalRangeServer` from 127.0.0.1 with
0, 5 and 20 ms added to every request: megapixels per second, the ratio to
local, requests and bytes fetched. A last table reads with GDAL's defaults
instead of ``CLOUD_READ_OPTIONS`` at 20 ms, to show what the options save.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import rasterio.shutil
from rasterio.windows import Window

from torchgeo_ext.export.http_server import LocalRangeServer
from torchgeo_ext.export.raster import open_inputs
from torchgeo_ext.export.sources import CLOUD_READ_OPTIONS

OWN = Path(__file__).resolve().parents[1] / 'tests' / 'data' / 'own'


def make_cog(folder: Path, size: int) -> Path:
    """A size x size, 4-band uint8 COG of the fake scene (RGB + IR resampled)."""
    with rasterio.open(OWN / 'rgb.tif') as src:
        rgb, profile = src.read(), src.profile
    ir = rgb.mean(axis=0, keepdims=True).astype(np.uint8)
    reps = -(-size // 512)
    data = np.tile(np.concatenate([rgb, ir]), (1, reps, reps))[:, :size, :size]
    plain = folder / 'plain.tif'
    profile.update(
        count=4, width=size, height=size, tiled=True, blockxsize=256, blockysize=256
    )
    with rasterio.open(plain, 'w', **profile) as dst:
        dst.write(data)
    cog = folder / 'scene.tif'
    rasterio.shutil.copy(plain, cog, driver='COG', blocksize=256, compress='DEFLATE')
    plain.unlink()
    return cog


def scan(stack: Any) -> int:
    """Read the whole raster in 512 x 512 windows; return the pixels read."""
    pixels = 0
    for row in range(0, stack.height, 512):
        for col in range(0, stack.width, 512):
            data, _ = stack.read(Window(col, row, 512, 512))
            pixels += data.shape[1] * data.shape[2]
    return pixels


def random_windows(stack: Any) -> int:
    """Read 64 windows of 256 x 256 at fixed random places; return the pixels read."""
    rng = np.random.default_rng(0)
    for _ in range(64):
        row = int(rng.integers(0, stack.height - 256))
        col = int(rng.integers(0, stack.width - 256))
        stack.read(Window(col, row, 256, 256))
    return 64 * 256 * 256


def timed(path: str, read: Callable[[Any], int], repeat: int) -> tuple[float, int]:
    """Best seconds over *repeat* fresh opens.

    A URL gets another query string each time: GDAL keeps fetched ranges per
    URL for the life of the process, which would serve later repeats.
    """
    best, pixels = float('inf'), 0
    for k in range(repeat):
        target = f'{path}?repeat={k}' if '://' in path else path
        start = time.perf_counter()
        with open_inputs(target) as stack:
            pixels = read(stack)
        best = min(best, time.perf_counter() - start)
    return best, pixels


def measure(cog: Path, latencies: list[float], repeat: int) -> None:
    """Print the tables of the page."""
    size = cog.stat().st_size
    for name, read in (
        ('scan, 512 x 512 windows', scan),
        ('64 random 256 x 256 windows', random_windows),
    ):
        print(f'\n### {name}\n')
        print(
            f'| source | Mpx/s | vs local | requests | MB fetched (file {size / 1e6:.1f} MB) |'
        )
        print('| --- | --- | --- | --- | --- |')
        local, pixels = timed(os.fspath(cog), read, repeat)
        print(f'| local file | {pixels / local / 1e6:.1f} | 1.00 | - | - |')
        for latency in latencies:
            with LocalRangeServer(cog.parent, latency=latency) as server:
                seconds, _ = timed(server.url(cog.name), read, repeat)
                requests, fetched = server.requests / repeat, server.bytes_sent / repeat
            print(
                f'| HTTP, {latency * 1000:.0f} ms per request | {pixels / seconds / 1e6:.1f} | '
                f'{local / seconds:.2f} | {requests:.0f} | {fetched / 1e6:.2f} |'
            )


def defaults_against_options(cog: Path, latency: float) -> None:
    """Random windows at *latency*: GDAL's defaults against CLOUD_READ_OPTIONS."""
    print(
        f'\n### GDAL options, 64 random windows, {latency * 1000:.0f} ms per request\n'
    )
    print('| options | seconds | requests | MB fetched |')
    print('| --- | --- | --- | --- |')
    for label, options in (
        ('GDAL defaults', {}),
        ('CLOUD_READ_OPTIONS', CLOUD_READ_OPTIONS),
    ):
        with LocalRangeServer(cog.parent, latency=latency) as server:
            url = f'/vsicurl/{server.url(cog.name)}?options={bool(options)}'
            start = time.perf_counter()
            with rasterio.Env(**options), rasterio.open(url) as src:
                rng = np.random.default_rng(0)
                for _ in range(64):
                    row = int(rng.integers(0, src.height - 256))
                    col = int(rng.integers(0, src.width - 256))
                    src.read(window=Window(col, row, 256, 256))
            seconds = time.perf_counter() - start
            print(
                f'| {label} | {seconds:.2f} | {server.requests} | '
                f'{server.bytes_sent / 1e6:.2f} |'
            )


def main() -> None:
    """Run the benchmark."""
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--size', type=int, default=2048)
    parser.add_argument('--repeat', type=int, default=3)
    parser.add_argument('--latency', type=float, nargs='+', default=[0.0, 0.005, 0.02])
    args = parser.parse_args()
    print(f'load average {os.getloadavg()}')
    with tempfile.TemporaryDirectory() as tmp:
        cog = make_cog(Path(tmp), args.size)
        measure(cog, args.latency, args.repeat)
        defaults_against_options(cog, max(args.latency))


if __name__ == '__main__':
    main()
