#!/usr/bin/env python3
"""The GPU check of issue 15: device placement, pipeline throughput, SuperYOLO latency.

Meant for a machine with a CUDA GPU (``--device cuda``); ``--device cpu --quick`` is a
dry run of the same code on small sizes, so that the script is known to work before
device time is spent on it. Three parts, each skippable with ``--skip``:

1. ``configs``: every tiny test config (``tests/conf/*.yaml``) through ``fit`` and
   ``predict`` on the device (``--trainer.accelerator gpu``), in subprocesses; a
   failure (a tensor created on the CPU inside ``forward``, metrics on the wrong device,
   a numpy round trip) is printed with its last lines.
2. ``pipelines``: ``predict_raster`` with an smp UNet-ResNet18 (fp16 on CUDA) and
   ``detect_raster`` with SuperYOLO on a generated 4-band raster (8k x 8k, or 1k x 1k
   with ``--quick``), each against the bare model forward on the same tiles, as a ratio
   (target 0.85: reading, blending and writing must keep up with the model).
3. ``latency``: SuperYOLO (fused) at batch 1 and 16, fp32 and fp16 (fp16 only on CUDA),
   against torchvision's Faster R-CNN R50-FPN (TorchGeo's ``ObjectDetectionTask`` model).

Results go to stdout as Markdown; record them in ``benchmarks/gpu.md`` with the device.

Usage: python benchmarks/gpu.py [--device cuda] [--quick] [--skip configs pipelines latency]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def synchronise(device: torch.device) -> None:
    """Wait for the device (timings of asynchronous CUDA work)."""
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


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


def check_configs(device: torch.device, pattern: str = '*') -> None:
    """Part 1: fit and predict every tiny config on the device."""
    accelerator = 'gpu' if device.type == 'cuda' else 'cpu'
    print('| config | fit | predict |\n| --- | --- | --- |')
    for config in sorted((ROOT / 'tests' / 'conf').glob(f'{pattern}.yaml')):
        cells = []
        with tempfile.TemporaryDirectory() as folder:
            for sub in ('fit', 'predict'):
                argv = [
                    sys.executable,
                    '-m',
                    'torchgeo_ext.cli',
                    sub,
                    '--config',
                    str(config),
                    '--trainer.accelerator',
                    accelerator,
                    '--trainer.default_root_dir',
                    folder,
                ]
                run = subprocess.run(
                    argv, check=False, cwd=ROOT, capture_output=True, text=True
                )
                ok = run.returncode == 0
                cells.append('ok' if ok else 'FAILED')
                if not ok:
                    tail = (run.stderr or run.stdout).strip().splitlines()[-3:]
                    print(f'<!-- {config.name} {sub}: {" / ".join(tail)} -->')
        print(f'| {config.stem} | {cells[0]} | {cells[1]} |', flush=True)


def make_raster(path: Path, size: int) -> Path:
    """A 4-band uint8 GeoTIFF of *size* x *size* pixels in UTM."""
    from rasterio.transform import from_origin

    from torchgeo_ext.export.raster import write_raster

    rng = np.random.default_rng(0)
    array = rng.integers(0, 255, (4, size, size), dtype=np.uint8)
    transform = from_origin(500_000.0, 4_000_000.0, 0.1, 0.1)
    return write_raster(path, array, crs='EPSG:32633', transform=transform, cog=False)


def pipelines(device: torch.device, size: int, repeats: int) -> None:
    """Part 2: pipelines against the bare forward on the same tiles."""
    import segmentation_models_pytorch as smp

    from torchgeo_ext.models.superyolo import superyolo_mf
    from torchgeo_ext.pipelines.detection import detect_raster
    from torchgeo_ext.pipelines.tiling import predict_raster

    half = device.type == 'cuda'
    dtype = torch.float16 if half else torch.float32
    unet = smp.Unet('resnet18', encoder_weights=None, in_channels=4, classes=2)
    unet = unet.eval().to(device, dtype)

    def segment(x: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return unet(x.to(dtype)).float()

    detector = superyolo_mf(8).eval().fuse().to(device)

    def detect(x: torch.Tensor) -> list[dict[str, torch.Tensor]]:
        with torch.inference_mode():
            out = detector.predict(x / 255)
        return [
            {
                'prediction_bbox_xyxy': r['boxes'],
                'prediction_score': r['scores'],
                'prediction_label': r['labels'],
            }
            for r in out
        ]

    tile, batch = 512, 8
    tiles = (size // (tile - 64)) ** 2  # about as many tiles as the pipeline reads
    x = torch.rand(batch, 4, tile, tile, device=device) * 255
    with tempfile.TemporaryDirectory() as folder:
        raster = make_raster(Path(folder) / 'in.tif', size)
        print('| pipeline | pipeline (s) | bare forward on as many tiles (s) | ratio |')
        print('| --- | ---: | ---: | ---: |')
        for name, model, run in (
            (
                'predict_raster, UNet-ResNet18',
                segment,
                lambda: predict_raster(
                    segment,
                    raster,
                    Path(folder) / 'out.tif',
                    tile_size=tile,
                    overlap=64,
                    batch_size=batch,
                    device=device,
                    progress=False,
                ),
            ),
            (
                'detect_raster, SuperYOLO',
                detect,
                lambda: detect_raster(
                    detect,
                    raster,
                    tile_size=tile,
                    overlap=64,
                    batch_size=batch,
                    device=device,
                    progress=False,
                ),
            ),
        ):
            bare = timed(partial(model, x), device, repeats) * tiles / batch
            whole = timed(run, device, 1)
            print(
                f'| {name} | {whole:.2f} | {bare:.2f} | {bare / whole:.2f} |',
                flush=True,
            )


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--device', default='cuda')
    parser.add_argument('--quick', action='store_true', help='small sizes (dry run)')
    parser.add_argument('--repeats', type=int, default=5)
    parser.add_argument('--configs', default='*', help='glob of tests/conf names')
    parser.add_argument(
        '--skip', nargs='*', default=[], choices=['configs', 'pipelines', 'latency']
    )
    args = parser.parse_args()
    device = torch.device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == 'cuda' else 'CPU'
    print(f'# GPU check on {name} (torch {torch.__version__})\n')
    if 'configs' not in args.skip:
        check_configs(device, args.configs)
        print()
    if 'pipelines' not in args.skip:
        pipelines(
            device, 1024 if args.quick else 8192, 1 if args.quick else args.repeats
        )
        print()
    if 'latency' not in args.skip:
        latency(device, 1 if args.quick else args.repeats)


if __name__ == '__main__':
    main()
