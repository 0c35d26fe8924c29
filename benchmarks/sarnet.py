"""SAR-Net against its plain YOLOv8 baseline (no UCM, no DAM) on synthetic SAR chips.

* Size: parameters and multiply-accumulates at 640 x 640 (one band, one class).
* Accuracy: mAP@0.5 after the same training budget (SGD, batch 8, from scratch) on
  synthetic Sentinel-1-like chips: Rayleigh speckle, elongated bright ships of random
  length and heading, and unlabelled bright point scatterers; over several seeds.

Results in benchmarks/sarnet.md. Run: ``.venv/bin/python benchmarks/sarnet.py
[--steps S] [--seeds N] [--size P] [--threads T]``.
"""

from __future__ import annotations

import argparse
import math
import platform
import statistics
import time
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torchmetrics.detection import MeanAveragePrecision

from torchgeo_ext.models.complexity import count_macs
from torchgeo_ext.models.superyolo import postprocess
from torchgeo_ext.trainers.detection import SuperYOLOTask

#: The compared models: SAR-Net n and the same network without its two modules.
VARIANTS: dict[str, dict[str, bool]] = {
    'SAR-Net n': {'ucm': True, 'dam': True},
    'baseline (no UCM, no DAM)': {'ucm': False, 'dam': False},
}


def build(variant: str) -> SuperYOLOTask:
    """The axis-aligned SAR-Net task of one variant (YOLOv5 gains at three levels)."""
    return SuperYOLOTask(
        model='sarnet_n',
        num_classes=1,
        in_channels=1,
        ema=False,
        box_gain=0.05,
        obj_gain=1.0,
        model_kwargs=VARIANTS[variant],
    )


def size_table() -> list[str]:
    """Parameters and GMACs at 640 x 640."""
    rows = ['| model | parameters (M) | GMACs at 640 x 640 |', '| --- | ---: | ---: |']
    for name in VARIANTS:
        c = count_macs(build(name).model, input_shape=(1, 1, 640, 640))
        rows.append(f'| {name} | {c.mparams:.2f} | {c.gmacs:.2f} |')
    return rows


def chip(seed: int, size: int) -> tuple[Tensor, Tensor]:
    """One synthetic amplitude chip in [0, 1] (DN / 2000, clipped) and its ship boxes."""
    rng = np.random.default_rng(seed)
    image = rng.rayleigh(50.0, (size, size))
    yy, xx = np.mgrid[0:size, 0:size]
    boxes = []
    for _ in range(rng.integers(1, 5)):
        length, width = rng.uniform(4, 16), rng.uniform(1.5, 3.0)
        angle = rng.uniform(0, math.pi)
        cx, cy = rng.uniform(length, size - length, 2)
        u = (xx - cx) * math.cos(angle) + (yy - cy) * math.sin(angle)
        v = -(xx - cx) * math.sin(angle) + (yy - cy) * math.cos(angle)
        image += rng.uniform(800, 3000) * np.exp(
            -2 * ((u / length) ** 2 + (v / width) ** 2)
        )
        ex = math.hypot(length * math.cos(angle), width * math.sin(angle))
        ey = math.hypot(length * math.sin(angle), width * math.cos(angle))
        boxes.append([cx - ex, cy - ey, cx + ex, cy + ey])
    for _ in range(rng.integers(2, 8)):  # unlabelled point scatterers
        y, x = rng.integers(0, size, 2)
        image[y, x] += rng.uniform(800, 3000)
    pixels = torch.tensor(np.clip(image / 2000, 0, 1), dtype=torch.float32)[None]
    return pixels, torch.tensor(boxes, dtype=torch.float32).clamp(0, size)


def chips(first_seed: int, count: int, size: int) -> tuple[Tensor, list[Tensor]]:
    """``count`` chips and their boxes."""
    made = [chip(first_seed + k, size) for k in range(count)]
    return torch.stack([m[0] for m in made]), [m[1] for m in made]


def train_and_score(variant: str, seed: int, steps: int, data: Any) -> float:
    """Train one variant from scratch for ``steps`` steps; mAP@0.5 on the test chips."""
    (x_train, b_train), (x_test, b_test) = data
    torch.manual_seed(seed)
    task = build(variant)
    model = task.model.train()
    optimizer = torch.optim.SGD(
        model.parameters(), lr=0.01, momentum=0.937, nesterov=True, weight_decay=5e-4
    )
    generator = torch.Generator().manual_seed(seed)
    warmup = max(steps // 10, 1)
    for step in range(steps):
        for group in optimizer.param_groups:
            group['lr'] = 0.01 * min(1.0, (step + 1) / warmup)
        idx = torch.randperm(len(x_train), generator=generator)[:8].tolist()
        batch = {
            'image': x_train[idx],
            'bbox_xyxy': [b_train[i] for i in idx],
            'label': [torch.zeros(len(b_train[i]), dtype=torch.long) for i in idx],
        }
        terms, _ = task.compute_loss(batch, model)
        optimizer.zero_grad()
        terms['loss'].backward()
        optimizer.step()
    return score(model, x_test, b_test)


def score(model: nn.Module, images: Tensor, boxes: list[Tensor]) -> float:
    """mAP@0.5 of a model on chips."""
    model.eval()
    metric = MeanAveragePrecision(box_format='xyxy', iou_thresholds=[0.5])
    with torch.no_grad():
        for start in range(0, len(images), 16):
            preds = postprocess(model(images[start : start + 16]), 0.001, 0.6, 100)
            metric.update(
                preds,
                [
                    {'boxes': b, 'labels': torch.zeros(len(b), dtype=torch.long)}
                    for b in boxes[start : start + 16]
                ],
            )
    return float(metric.compute()['map_50'])


def main() -> None:
    """Print the size table and the accuracy table."""
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--steps', type=int, default=150)
    parser.add_argument('--seeds', type=int, default=2)
    parser.add_argument('--size', type=int, default=96)
    parser.add_argument('--train-chips', type=int, default=96)
    parser.add_argument('--test-chips', type=int, default=48)
    parser.add_argument('--threads', type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(
        f'torch {torch.__version__}, {platform.machine()}, {torch.get_num_threads()} threads'
    )
    print('\n'.join(size_table()))
    data = (
        chips(1000, args.train_chips, args.size),
        chips(50000, args.test_chips, args.size),
    )
    print(
        f'\nmAP@0.5 on {args.test_chips} synthetic {args.size} x {args.size} test chips '
        f'after {args.steps} steps of batch 8 on {args.train_chips} chips:'
    )
    print(
        '| model | ' + ' | '.join(f'seed {s}' for s in range(args.seeds)) + ' | mean |'
    )
    print('| --- |' + ' ---: |' * (args.seeds + 1))
    for name in VARIANTS:
        start = time.perf_counter()
        scores = [train_and_score(name, s, args.steps, data) for s in range(args.seeds)]
        cells = ' | '.join(f'{v:.3f}' for v in scores)
        print(
            f'| {name} | {cells} | {statistics.mean(scores):.3f} |'
            f'  ({time.perf_counter() - start:.0f} s)',
            flush=True,
        )


if __name__ == '__main__':
    main()
