"""SeaDATE against SuperYOLO and the plain two-stream baseline (results in benchmarks/seadate.md).

* Size: parameters and multiply-accumulates of the inference models at 640 x 640 (RGB + IR,
  one class; attention products counted as well).
* Accuracy: mAP@0.5 after the same training budget (the detection demo's: 200 SGD steps of
  8 tiles of 64 x 64, width 0.25) on synthetic paired tiles (the demo's vehicle scenes; half
  of the tiles at night: the RGB bands dark and noisy, the IR band intact), over seeds.

Run: ``.venv/bin/python benchmarks/seadate.py [--steps S] [--seeds N] [--first-seed K] [--threads T]``.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torchmetrics.detection import MeanAveragePrecision

from torchgeo_ext.demos.detection import CLASSES, synthetic_vehicle_scene
from torchgeo_ext.models.complexity import DEFAULT_RULES, count_macs
from torchgeo_ext.models.seadate import SelfAttention
from torchgeo_ext.models.superyolo import postprocess
from torchgeo_ext.trainers.detection import SuperYOLOTask

#: Compared models: registry name and builder arguments.
MODELS: dict[str, tuple[str, dict[str, Any]]] = {
    'SeaDATE': ('seadate_yolov5s', {}),
    'two-stream baseline': ('two_stream_yolov5s', {}),
    'SuperYOLO (MF)': ('superyolo_mf', {}),
}
#: Ablations of SeaDATE, trained in the accuracy runs only.
ABLATIONS: dict[str, tuple[str, dict[str, Any]]] = {
    'SeaDATE, DTF only (no CL)': ('seadate_yolov5s', {'contrast_weight': 0.0}),
    'SeaDATE, CL only (no DTF)': ('seadate_yolov5s', {'dual_attention': False}),
}


def _attention_macs(module: nn.Module, inputs: tuple[Any, ...], output: Tensor) -> int:
    # q k^T and (softmax) v: 2 N^2 D per image; the projections are nn.Linear layers.
    b, n, d = output.shape
    return int(2 * b * n * n * d)


def task_for(name: str, width: float, num_classes: int) -> SuperYOLOTask:
    """The detection task of one entry (SuperYOLO without its SR branch)."""
    model, kwargs = {**MODELS, **ABLATIONS}[name]
    return SuperYOLOTask(
        model=model,
        num_classes=num_classes,
        width=width,
        super_resolution=False,
        ema=False,
        model_kwargs=kwargs,
    )


def size_table() -> list[str]:
    """Parameters and GMACs at 640 x 640, one class."""
    rules = {**DEFAULT_RULES, SelfAttention: _attention_macs}
    rows = ['| model | parameters (M) | GMACs at 640 x 640 |', '| --- | ---: | ---: |']
    for name in MODELS:
        model = task_for(name, 1.0, 1).model
        c = count_macs(model, input_shape=(1, 4, 640, 640), rules=rules)
        rows.append(f'| {name} | {c.mparams:.2f} | {c.gmacs:.1f} |')
    return rows


def tiles(
    first_seed: int, count: int, size: int = 64
) -> tuple[Tensor, list[Tensor], list[Tensor]]:
    """Synthetic RGB + IR tiles with 3 vehicles each (boxes: their envelopes); odd tiles at night.

    Returns:
        Images (N, 4, size, size) in [0, 1], per-tile boxes (xyxy) and labels.
    """
    names = list(CLASSES)
    images, boxes, labels = [], [], []
    for k in range(count):
        seed = first_seed + k
        scene = synthetic_vehicle_scene(size=size, vehicles=3, seed=seed)
        rgb = scene.rgb.astype(np.float64)
        if k % 2:  # night: a tenth of the light, sensor noise
            rng = np.random.default_rng(seed)
            rgb = np.clip(rgb * 0.1 + rng.normal(0, 6, rgb.shape), 0, 255)
        image = np.concatenate([rgb, scene.ir.astype(np.float64)]) / 255
        images.append(torch.tensor(image, dtype=torch.float32))
        corners = torch.tensor(scene.corners, dtype=torch.float32)
        xyxy = torch.cat([corners.min(1).values, corners.max(1).values], 1)
        boxes.append(xyxy.clamp(0, size))
        labels.append(torch.tensor([names.index(c) for c in scene.classes]))
    return torch.stack(images), boxes, labels


def train_and_score(
    name: str, seed: int, steps: int, data: Any, batch_size: int = 8
) -> tuple[float, float, float, float]:
    """Train one model from scratch for ``steps`` SGD steps and score it.

    Returns:
        mAP@0.5 on all test tiles, on the day and on the night tiles, and the
        mean seconds per training step.
    """
    (x_train, b_train, l_train), test = data
    torch.manual_seed(seed)
    task = task_for(name, 0.25, len(CLASSES))
    model = task.model.train()
    optimizer = torch.optim.SGD(
        model.parameters(), lr=0.01, momentum=0.937, nesterov=True, weight_decay=5e-4
    )
    generator = torch.Generator().manual_seed(seed)
    warmup = max(steps // 10, 1)
    start = time.perf_counter()
    for step in range(steps):
        for group in optimizer.param_groups:
            group['lr'] = 0.01 * min(1.0, (step + 1) / warmup)
        idx = torch.randperm(len(x_train), generator=generator)[:batch_size].tolist()
        batch = {
            'image': x_train[idx],
            'bbox_xyxy': [b_train[i] for i in idx],
            'label': [l_train[i] for i in idx],
        }
        terms, _ = task.compute_loss(batch, model)
        optimizer.zero_grad()
        terms['loss'].backward()
        optimizer.step()
    step_seconds = (time.perf_counter() - start) / steps
    model.eval()
    scores = [map50(model, test, subset) for subset in ('all', 'day', 'night')]
    return scores[0], scores[1], scores[2], step_seconds


def map50(model: nn.Module, test: Any, subset: str) -> float:
    """mAP@0.5 on the test tiles of ``subset``: all, day (even tiles) or night (odd)."""
    x_test, b_test, l_test = test
    keep = [
        i
        for i in range(len(x_test))
        if subset == 'all' or (i % 2 == 1) == (subset == 'night')
    ]
    metric = MeanAveragePrecision(box_format='xyxy', iou_thresholds=[0.5])
    with torch.no_grad():
        for start in range(0, len(keep), 16):
            idx = keep[start : start + 16]
            preds = postprocess(model(x_test[idx]), 0.001, 0.6, 100)
            metric.update(
                preds, [{'boxes': b_test[i], 'labels': l_test[i]} for i in idx]
            )
    return float(metric.compute()['map_50'])


def main() -> None:
    """Print the size table and the accuracy table."""
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--steps', type=int, default=200)
    parser.add_argument('--seeds', type=int, default=3)
    parser.add_argument('--first-seed', type=int, default=0)
    parser.add_argument('--train-tiles', type=int, default=64)
    parser.add_argument('--test-tiles', type=int, default=32)
    parser.add_argument('--threads', type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(
        f'torch {torch.__version__}, {platform.machine()}, {torch.get_num_threads()} threads'
    )
    print('\n'.join(size_table()))
    data = (tiles(1000, args.train_tiles), tiles(5000, args.test_tiles))
    print(
        f'\nmAP@0.5 on {args.test_tiles} synthetic 64 x 64 test tiles (half at night) '
        f'after {args.steps} steps of batch 8 on {args.train_tiles} tiles, width 0.25:'
    )
    seed_list = range(args.first_seed, args.first_seed + args.seeds)
    seeds = ' | '.join(f'seed {s}' for s in seed_list)
    print(f'| model | {seeds} | mean | day | night | s / step |')
    print('| --- |' + ' ---: |' * (args.seeds + 4))
    for name in {**MODELS, **ABLATIONS}:
        runs = [train_and_score(name, s, args.steps, data) for s in seed_list]
        cells = ' | '.join(f'{r[0]:.3f}' for r in runs)
        mean = [statistics.mean(r[k] for r in runs) for k in range(4)]
        print(
            f'| {name} | {cells} | {mean[0]:.3f} | {mean[1]:.3f} | {mean[2]:.3f} '
            f'| {mean[3]:.2f} |',
            flush=True,
        )


if __name__ == '__main__':
    main()
