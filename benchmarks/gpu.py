#!/usr/bin/env python3
"""The GPU check (issue 23): every config on the device, pipelines against the model and the I/O floor.

Meant for a machine with a CUDA GPU (``--device cuda``); ``--device cpu --quick`` is
a dry run of the same code on small sizes, so that the script is known to work
before device time is spent on it. Four parts, each skippable with ``--skip``:

1. ``configs``: every tiny test config (``tests/conf/*.yaml``) through ``fit`` on the
   device, then ``predict`` from the checkpoint that fit wrote, in ``--jobs``
   parallel subprocesses; a failure is printed with its last lines.
2. ``pipelines``: on a generated 4-band uint8 raster (8k x 8k; 1k with ``--quick``),
   tile 512, batch 8, each pipeline beside the bare model forward on as many tiles
   and the I/O floor (reading the input with rasterio plus writing the pipeline's
   own float32 output with GDAL's COG driver on all threads), with the targets:
   ``predict_raster`` classes >= 0.5 of the bare forward, float32 scores <= 1.3x
   the I/O floor, ``detect_raster`` >= 0.7 of the bare forward.
3. ``latency``: SuperYOLO (fused) at batch 1 and 16, fp32 and fp16 (CUDA only),
   against torchvision's Faster R-CNN R50-FPN.
4. ``graphs`` (CUDA only): small-batch SuperYOLO eager, as a captured CUDA graph,
   and under ``torch.compile(mode='reduce-overhead')``, fp16, batch 1 and 4.

Results go to stdout as Markdown; record them in ``benchmarks/gpu.md`` with the device.

Usage: python benchmarks/gpu.py [--device cuda] [--quick] [--jobs 8]
    [--skip configs pipelines latency graphs]
"""

from __future__ import annotations

import argparse
import concurrent.futures
import inspect
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from io_floor import floor  # benchmarks/ is the script's folder


def synchronise(device: torch.device) -> None:
    """Wait for the device (timings of asynchronous CUDA work)."""
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


def once(call: Callable[[], object], device: torch.device) -> float:
    """Seconds of one call (the models are warm: the bare forwards ran first)."""
    synchronise(device)
    start = time.perf_counter()
    call()
    synchronise(device)
    return time.perf_counter() - start


def timed(call: Callable[[], object], device: torch.device, repeats: int) -> float:
    """Median seconds of *call* after one warm-up."""
    call()
    synchronise(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        synchronise(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


# ---------------------------------------------------------------- 1. configs


def fit_and_predict(config: Path, accelerator: str, env: dict[str, str]) -> list[str]:
    """Fit one config, then predict from the checkpoint fit wrote; one table row's cells."""
    cells, start = [], time.perf_counter()
    with tempfile.TemporaryDirectory() as folder:
        common = ['--config', str(config), '--trainer.accelerator', accelerator]
        common += ['--trainer.devices', '1', '--trainer.default_root_dir', folder]
        for sub in ('fit', 'predict'):
            argv = [sys.executable, '-m', 'torchgeo_ext.cli', sub, *common]
            if sub == 'predict':
                checkpoints = sorted(
                    Path(folder).rglob('*.ckpt'), key=lambda p: p.stat().st_mtime
                )
                if not checkpoints:
                    cells.append('no checkpoint')
                    break
                argv += ['--ckpt_path', str(checkpoints[-1])]
            run = subprocess.run(
                argv, check=False, cwd=ROOT, capture_output=True, text=True, env=env
            )
            if run.returncode != 0:
                tail = (run.stderr or run.stdout).strip().splitlines()[-3:]
                cells.append('FAILED: ' + ' / '.join(tail).replace('|', '/'))
                break
            cells.append('ok')
    cells += [''] * (2 - len(cells))
    return [*cells, f'{time.perf_counter() - start:.0f}']


def check_configs(device: torch.device, pattern: str, jobs: int) -> None:
    """Part 1: every tiny config, fit then predict, *jobs* at a time."""
    accelerator = 'gpu' if device.type == 'cuda' else 'cpu'
    env = dict(os.environ)
    if device.type == 'cpu':  # parallel runs: one thread each, no oversubscription
        env['OMP_NUM_THREADS'] = '1'
    configs = sorted((ROOT / 'tests' / 'conf').glob(f'{pattern}.yaml'))
    start = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(jobs) as pool:
        rows = dict(
            zip(
                configs,
                pool.map(
                    partial(fit_and_predict, accelerator=accelerator, env=env), configs
                ),
                strict=True,
            )
        )
    wall = time.perf_counter() - start
    print("| config | fit | predict (from fit's checkpoint) | s |")
    print('| --- | --- | --- | ---: |')
    for config, (fit, predict, seconds) in rows.items():
        print(f'| {config.stem} | {fit} | {predict} | {seconds} |')
    passed = sum(row[:2] == ['ok', 'ok'] for row in rows.values())
    print(f'\n{passed} of {len(rows)} passed, {jobs} at a time, {wall:.0f} s in all')


# -------------------------------------------------------------- 2. pipelines


def make_raster(path: Path, size: int) -> Path:
    """A 4-band uint8 GeoTIFF of *size* x *size* pixels in UTM."""
    from rasterio.transform import from_origin

    from torchgeo_ext.export.raster import write_raster

    rng = np.random.default_rng(0)
    array = rng.integers(0, 255, (4, size, size), dtype=np.uint8)
    transform = from_origin(500_000.0, 4_000_000.0, 0.1, 0.1)
    return write_raster(path, array, crs='EPSG:32633', transform=transform, cog=False)


def models(device: torch.device) -> tuple[torch.nn.Module, Callable[..., Any]]:
    """The UNet-ResNet18 segmenter and the SuperYOLO detector (as detect_raster wants it)."""
    import segmentation_models_pytorch as smp

    from torchgeo_ext.models.superyolo import superyolo_mf

    unet = smp.Unet('resnet18', encoder_weights=None, in_channels=4, classes=2)
    detector = superyolo_mf(8).eval().fuse().to(device)

    def detect(x: torch.Tensor) -> list[dict[str, torch.Tensor]]:
        out = detector.predict(x / 255)
        return [
            {
                'prediction_bbox_xyxy': r['boxes'],
                'prediction_score': r['scores'],
                'prediction_label': r['labels'],
            }
            for r in out
        ]

    return unet.eval().to(device), detect


def bare_forward(
    model: Callable[..., Any],
    device: torch.device,
    precision: str,
    tiles: int,
    repeats: int,
) -> float:
    """Seconds of the model alone on *tiles* tiles, batch 8, already on the device."""
    from torchgeo_ext.pipelines.tiling import autocast

    x = torch.rand(8, 4, 512, 512, device=device) * 255

    def call() -> None:
        with torch.inference_mode(), autocast(device, precision):  # type: ignore[arg-type]
            model(x)

    return timed(call, device, repeats) * tiles / 8


def pipelines(device: torch.device, size: int, repeats: int) -> None:
    """Part 2: each pipeline against its bare forward and the I/O floor."""
    import rasterio

    from torchgeo_ext.pipelines.detection import detect_raster
    from torchgeo_ext.pipelines.tiling import plan_tiles, predict_raster

    precision = '16-mixed' if device.type == 'cuda' else '32'
    unet, detect = models(device)
    seg: dict[str, Any] = {
        'tile_size': 512,
        'overlap': 64,
        'batch_size': 8,
        'device': device,
    }
    seg |= {'precision': precision, 'progress': False}
    det: dict[str, Any] = {
        'tile_size': 512,
        'overlap': 64,
        'batch_size': 8,
        'device': device,
    }
    det |= {'progress': False}
    if 'precision' in inspect.signature(detect_raster).parameters:
        det['precision'] = precision
    print(f'{size} x {size} x 4 uint8, tile 512, overlap 64, batch 8, {precision}\n')
    print(
        '| pipeline | pipeline (s) | bare forward (s) | I/O floor (s) | measured | target |'
    )
    print('| --- | ---: | ---: | ---: | ---: | --- |')
    with tempfile.TemporaryDirectory() as folder:
        raster = make_raster(Path(folder) / 'in.tif', size)
        seg_tiles = len(plan_tiles(size, size, 512, 64, 'cosine').windows)
        det_tiles = len(plan_tiles(size, size, 512, 64, 'crop').windows)
        unet_s = bare_forward(unet, device, precision, seg_tiles, repeats)
        yolo_s = bare_forward(detect, device, precision, det_tiles, repeats)
        out = Path(folder) / 'out.tif'
        run = partial(predict_raster, unet, raster, out, **seg)
        classes = once(partial(run, output_kind='classes'), device)
        scores = once(run, device)
        with rasterio.open(out) as src:
            written = src.read()
        read, write = floor(raster, Path(folder) / 'floor.tif', written)
        detected = once(partial(detect_raster, detect, raster, **det), device)
    rows = (
        ('predict_raster classes (uint8)', classes, unet_s, unet_s / classes, '>= 0.5 of bare forward', unet_s / classes >= 0.5),
        ('predict_raster scores (float32 COG)', scores, unet_s, scores / (read + write), '<= 1.3x I/O floor', scores / (read + write) <= 1.3),
        ('detect_raster, SuperYOLO', detected, yolo_s, yolo_s / detected, '>= 0.7 of bare forward', yolo_s / detected >= 0.7),
    )  # fmt: skip
    floor_s = f'{read + write:.2f}'
    for name, seconds, bare, measured, target, met in rows:
        print(f'| {name} | {seconds:.2f} | {bare:.2f} | {floor_s} | {measured:.2f} '
              f'| {target}: {"met" if met else "NOT met"} |')  # fmt: skip
    print(f'\nI/O floor: read {read:.2f} s + COG write {write:.2f} s (all threads)')


# ------------------------------------------------------- 3. latency, 4. graphs


def latency(device: torch.device, repeats: int) -> None:
    """Part 3: SuperYOLO latency against Faster R-CNN."""
    from torchvision.models.detection import fasterrcnn_resnet50_fpn

    from torchgeo_ext.models.superyolo import superyolo_mf

    yolo = superyolo_mf(8).eval().fuse().to(device)
    frcnn = fasterrcnn_resnet50_fpn(weights=None, weights_backbone=None, num_classes=9)
    frcnn = frcnn.eval().to(device)
    precisions = [torch.float32] + ([torch.float16] if device.type == 'cuda' else [])
    print('| model | batch | precision | ms / image |\n| --- | ---: | --- | ---: |')
    for batch in (1, 16):
        for dtype in precisions:
            x4 = torch.rand(batch, 4, 512, 512, device=device, dtype=dtype)
            x3 = torch.rand(batch, 3, 512, 512, device=device, dtype=dtype)
            with torch.inference_mode():
                for name, model, x in (
                    ('SuperYOLO (fused)', yolo.to(dtype), x4),
                    ('Faster R-CNN R50-FPN', frcnn.to(dtype), x3),
                ):
                    seconds = timed(partial(model, x), device, repeats)
                    precision = str(dtype).removeprefix('torch.')
                    ms = seconds / batch * 1e3
                    print(f'| {name} | {batch} | {precision} | {ms:.1f} |', flush=True)


def cuda_graph(model: torch.nn.Module, x: torch.Tensor) -> Callable[[], Any]:
    """Capture one forward of *model* on the static input *x* as a CUDA graph."""
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream), torch.inference_mode():
        for _ in range(3):  # warm-up on a side stream, as capture requires
            model(x)
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph), torch.inference_mode():
        model(x)
    return graph.replay


def graphs(device: torch.device, repeats: int) -> None:
    """Part 4: does a CUDA graph or torch.compile pay for small-batch detection?"""
    if device.type != 'cuda':
        print('graphs: CUDA only, skipped')
        return
    from torchgeo_ext.models.superyolo import superyolo_mf

    yolo = superyolo_mf(8).eval().fuse().to(device, torch.float16)
    compiled = torch.compile(yolo, mode='reduce-overhead')
    print(
        '| batch | eager fp16 (ms / image) | CUDA graph | torch.compile reduce-overhead |'
    )
    print('| ---: | ---: | ---: | ---: |')
    for batch in (1, 4):
        x = torch.rand(batch, 4, 512, 512, device=device, dtype=torch.float16)
        with torch.inference_mode():
            eager = timed(partial(yolo, x), device, repeats)
            replay = timed(cuda_graph(yolo, x), device, repeats)
            for _ in range(3):  # compilation and its graph capture
                compiled(x)
            fast = timed(partial(compiled, x), device, repeats)
        cells = [f'{s / batch * 1e3:.2f}' for s in (eager, replay, fast)]
        print(f'| {batch} | {" | ".join(cells)} |', flush=True)


def main() -> None:
    """Run the parts asked for and print Markdown."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--device', default='cuda')
    parser.add_argument('--quick', action='store_true', help='small sizes (dry run)')
    parser.add_argument('--repeats', type=int, default=5)
    parser.add_argument(
        '--configs',
        default=None,
        help="glob of tests/conf names (default: all; with --quick 'dianet_fyh')",
    )
    parser.add_argument(
        '--jobs', type=int, default=None, help='configs at a time (default: 8, CPU 2)'
    )
    parser.add_argument(
        '--skip',
        nargs='*',
        default=[],
        choices=['configs', 'pipelines', 'latency', 'graphs'],
    )
    args = parser.parse_args()
    device = torch.device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == 'cuda' else 'CPU'
    print(f'# GPU check on {name} (torch {torch.__version__})\n')
    repeats = 1 if args.quick else args.repeats
    if 'configs' not in args.skip:
        pattern = args.configs or ('dianet_fyh' if args.quick else '*')
        jobs = args.jobs or (8 if device.type == 'cuda' else 2)
        check_configs(device, pattern, jobs)
        print()
    if 'pipelines' not in args.skip:
        pipelines(device, 1024 if args.quick else 8192, repeats)
        print()
    if 'latency' not in args.skip:
        latency(device, repeats)
        print()
    if 'graphs' not in args.skip:
        graphs(device, repeats)


if __name__ == '__main__':
    main()
