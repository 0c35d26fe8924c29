"""Benchmarks of the oriented-detection area (results in benchmarks/oriented.md).

* FoRA/LMA vs the two-stream baseline (and a single-stream YOLOv8n-OBB on the
  stacked bands): parameters and CPU latency at 640 x 512, batch 1, eval mode.
* Rotated NMS (exact polygon IoU) on 10,000 boxes, with torchvision's
  axis-aligned NMS on the boxes' hulls as a reference in the same run.

Run: ``.venv/bin/python benchmarks/oriented.py [--threads N] [--repeats R]``.
"""

from __future__ import annotations

import argparse
import math
import platform
import statistics
import time

import torch
import torchvision
from torch import nn

from torchgeo_ext.models.e2emfd import e2emfd_yolov8n_obb
from torchgeo_ext.models.lma import (
    lma_yolov8n_obb,
    parameter_table,
    two_stream_yolov8n_obb,
)
from torchgeo_ext.models.obb_detector import OBBDetector
from torchgeo_ext.ops.obb import obb_to_poly, poly_to_xyxy, rotated_nms


def latencies(
    models: dict[str, nn.Module], x: torch.Tensor, repeats: int
) -> dict[str, float]:
    """Median forward time (ms) of each model, runs interleaved across models.

    Interleaving exposes every model to the same machine load over time.
    """
    times: dict[str, list[float]] = {name: [] for name in models}
    with torch.no_grad():
        for model in models.values():
            model.eval()
            model(x)  # warm-up
        for _ in range(repeats):
            for name, model in models.items():
                start = time.perf_counter()
                model(x)
                times[name].append((time.perf_counter() - start) * 1000)
    return {name: statistics.median(t) for name, t in times.items()}


def nms_boxes(n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Random oriented boxes, clustered like detector candidates."""
    g = torch.Generator().manual_seed(seed)
    objects = n // 10
    centres = torch.rand(objects, 2, generator=g) * 4000
    sizes = torch.rand(objects, 2, generator=g) * 50 + 10
    angles = (torch.rand(objects, 1, generator=g) - 0.5) * math.pi
    base = torch.cat((centres, sizes, angles), 1).repeat_interleave(10, 0)
    jitter = torch.randn(n, 5, generator=g) * torch.tensor([3.0, 3.0, 3.0, 3.0, 0.1])
    scores = torch.rand(n, generator=g)
    return obb_to_poly(base + jitter), scores


def main() -> None:
    """Run the benchmarks and print Markdown."""
    parser = argparse.ArgumentParser()
    parser.add_argument('--threads', type=int, default=1)
    parser.add_argument('--repeats', type=int, default=10)
    parser.add_argument(
        '--skip-e2emfd', action='store_true', help='leave out the slow E2E-MFD latency'
    )
    parser.add_argument('--skip-nms', action='store_true')
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(
        f'CPU: {platform.processor() or platform.machine()}, torch {torch.__version__}, '
        f'{args.threads} thread(s), median of {args.repeats} interleaved runs\n'
    )
    models = {
        'LMA (shared backbone + adaptors, r = 9)': lma_yolov8n_obb(5),
        'two-stream (separate backbones)': two_stream_yolov8n_obb(5),
        'single stream (4-band YOLOv8n-OBB)': OBBDetector(5, 4),
        'E2E-MFD (shared backbone + fusion net)': e2emfd_yolov8n_obb(5),
    }
    print(parameter_table(models))
    print()
    x = torch.rand(1, 4, 512, 640)
    print('| model | latency 640 x 512 (ms) | vs two-stream |')
    print('| --- | ---: | ---: |')
    timed = {
        name: m
        for name, m in models.items()
        if not (args.skip_e2emfd and name.startswith('E2E-MFD'))
    }
    results = latencies(timed, x, args.repeats)
    ref = results['two-stream (separate backbones)']
    for name, ms in results.items():
        print(f'| {name} | {ms:.1f} | {ms / ref:.2f} |')
    if args.skip_nms:
        return
    print()
    print('| NMS | boxes | kept | time (ms) |')
    print('| --- | ---: | ---: | ---: |')
    for n in (1000, 10000):
        polys, scores = nms_boxes(n)
        times, kept = [], 0
        for _ in range(3):
            start = time.perf_counter()
            keep = rotated_nms(polys, scores, 0.5)
            times.append((time.perf_counter() - start) * 1000)
            kept = keep.numel()
        print(
            f'| rotated (exact polygon IoU) | {n} | {kept} | {statistics.median(times):.1f} |'
        )
        hull = poly_to_xyxy(polys)
        times = []
        for _ in range(3):
            start = time.perf_counter()
            keep = torchvision.ops.nms(hull, scores, 0.5)
            times.append((time.perf_counter() - start) * 1000)
        print(
            f'| torchvision axis-aligned (hulls) | {n} | {keep.numel()} | '
            f'{statistics.median(times):.1f} |'
        )


if __name__ == '__main__':
    main()
