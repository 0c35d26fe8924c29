#!/usr/bin/env python3
"""SuperYOLO size, CPU speed and a short training run; writes benchmarks/superyolo.md.

Part 1, size: parameters (BN fused, SR removed) and MACs at 512 x 512 of the
RGB+IR (MF) and RGB-only SuperYOLO next to the paper's numbers, the SR
branch's parameters, and the same for TorchGeo's ``ObjectDetectionTask``
Faster R-CNN ResNet-50 FPN (``weights=None``, 4 input bands, 9 classes
including background; TorchGeo disables torchvision's resize, so it sees the
same 512 x 512 input). MACs are counted by
:func:`torchgeo_ext.models.complexity.count_macs` (convolutions and linear
layers).

Part 2, CPU latency: eval-mode inference (``torch.inference_mode``) on random
4 x 512 x 512 input, batch 1 and 8, median of ``--repeats`` calls after one
warm-up, the two models timed in interleaved rounds so that load from other
processes affects both alike. SuperYOLO is timed fused, including decoding
and NMS (score threshold 0.25); Faster R-CNN including its RPN and box
post-processing.

Part 3, training: ``--steps`` optimiser steps of :class:`SuperYOLOTask` (RGB+IR
with the SR branch, the paper's loss gains; SGD Nesterov at a constant lr 0.01, EMA) on the
fake VEDAI data of ``tests/data/vedai`` (64 x 64 detector input, 128 x 128 SR
target), through the VEDAIDataModule's batches and augmentation. The loss
curve is saved as ``benchmarks/superyolo_loss.png``.

Part 1b: GHOST size in MB and BOPs of the quantised early-fusion model.

Usage: python benchmarks/superyolo.py [--repeats 3] [--steps 40] [--threads 2]
       [--skip size ghost latency train] [--output benchmarks/superyolo.md]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

from torchgeo_ext.models.complexity import count_macs, count_parameters
from torchgeo_ext.models.superyolo import (
    SuperYOLO,
    postprocess,
    superyolo_mf,
    superyolo_rgb,
)

PAPER = {'mf': (4.8451, 17.98), 'rgb': (4.8256, 16.61)}


def faster_rcnn() -> torch.nn.Module:
    """TorchGeo's ObjectDetectionTask model (Faster R-CNN R50-FPN, no weights)."""
    from torchgeo.trainers import ObjectDetectionTask

    task = ObjectDetectionTask(
        model='faster-rcnn',
        backbone='resnet50',
        weights=None,
        in_channels=4,
        num_classes=9,
    )
    model: torch.nn.Module = task.model
    return model.eval()


def superyolo_infer(model: SuperYOLO) -> Callable[[torch.Tensor], object]:
    """Fused SuperYOLO forward + decoding + NMS."""

    def run(x: torch.Tensor) -> object:
        return postprocess(model(x), 0.25, 0.45, 300)

    return run


def timed(fn: Callable[[torch.Tensor], object], x: torch.Tensor) -> float:
    """Seconds for one inference call."""
    start = time.perf_counter()
    with torch.inference_mode():
        fn(x)
    return time.perf_counter() - start


def size_table() -> list[str]:
    """Part 1."""
    rows = [
        (
            '| model | params (M), ours | params (M), paper | MACs at 512 (G), ours | '
            'MACs (G), paper |'
        ),
        '| --- | --- | --- | --- | --- |',
    ]
    for name, builder, bands in (('mf', superyolo_mf, 4), ('rgb', superyolo_rgb, 3)):
        model = builder(8)
        assert model.sr is not None
        sr = count_parameters(model.sr)
        model.fuse()
        macs = count_macs(model, input_shape=(1, bands, 512, 512))
        label = 'SuperYOLO RGB+IR (MF)' if name == 'mf' else 'SuperYOLO RGB only'
        rows.append(
            f'| {label} | {count_parameters(model) / 1e6:.4f} | {PAPER[name][0]:.4f} | '
            f'{macs.gmacs:.2f} | {PAPER[name][1]:.2f} |'
        )
        if name == 'mf':
            sr_row = (
                f'| SR branch (training only) | {sr / 1e6:.3f} | about 2.88 | - | - |'
            )
    rows.append(sr_row)
    rcnn = faster_rcnn()
    # Faster R-CNN takes a list of images: the inputs tuple holds that one list.
    macs = count_macs(rcnn, ([torch.zeros(4, 512, 512)],), device='cpu')
    rows.append(
        f'| TorchGeo Faster R-CNN R50-FPN (4 bands) | {count_parameters(rcnn) / 1e6:.2f} | '
        f'- | {macs.gmacs:.1f} | - |'
    )
    return rows


def ghost_table() -> list[str]:
    """Part 1b: GHOST size and BOPs of the early-fusion SuperYOLO at 512 x 512."""
    from torchgeo_ext.models.ghost import quantization_report, quantize_superyolo
    from torchgeo_ext.models.superyolo import superyolo_early

    rows = [
        '| model (4-band early fusion, 512 x 512) | weight bits | size (MB) | GBOPs |',
        '| --- | --- | --- | --- |',
    ]
    torch.manual_seed(0)
    fp = superyolo_early(8, 4, super_resolution=False)
    r = quantization_report(fp, (1, 4, 512, 512))
    rows.append(f'| full precision | 32 | {r.size_mb:.2f} | {r.gbops:.0f} |')
    for label, kwargs in (
        ('k-means allocation (random init)', {}),
        ('fixed 4 bits', {'fixed_bits': 4}),
    ):
        model = superyolo_early(8, 4, super_resolution=False)
        model.load_state_dict(fp.state_dict())
        bits = quantize_superyolo(model, **kwargs)  # type: ignore[arg-type]
        r = quantization_report(model, (1, 4, 512, 512))
        spread = f'{min(bits.values())}-{max(bits.values())}'
        rows.append(f'| {label} | {spread} | {r.size_mb:.2f} | {r.gbops:.0f} |')
    rows.append('| paper (GHOST, VEDAI) | hybrid | < 9.7 | < 2158 |')
    return rows


def latency_table(repeats: int) -> list[str]:
    """Part 2."""
    yolo = superyolo_mf(8).fuse()
    rcnn = faster_rcnn()
    models: dict[str, Callable[[torch.Tensor], object]] = {
        'SuperYOLO (fused, + NMS)': superyolo_infer(yolo),
        'Faster R-CNN R50-FPN': lambda x: rcnn(list(x)),
    }
    rows = [
        '| model | batch | median s / call | ms / image | ratio to SuperYOLO |',
        '| --- | --- | --- | --- | --- |',
    ]
    for batch in (1, 8):
        x = torch.rand(batch, 4, 512, 512)
        times: dict[str, list[float]] = {name: [] for name in models}
        for fn in models.values():
            timed(fn, x)  # warm-up
        for _ in range(repeats):
            for name, fn in models.items():
                times[name].append(timed(fn, x))
        base = statistics.median(times['SuperYOLO (fused, + NMS)'])
        for name, values in times.items():
            med = statistics.median(values)
            rows.append(
                f'| {name} | {batch} | {med:.3f} | {1000 * med / batch:.1f} | '
                f'{med / base:.2f} |'
            )
    return rows


def train_curve(steps: int) -> tuple[list[float], list[float]]:
    """Part 3: losses per step, and SR losses."""
    from torchgeo_ext.datamodules.vedai import VEDAIDataModule
    from torchgeo_ext.trainers.detection import SuperYOLOTask

    torch.manual_seed(0)
    dm = VEDAIDataModule(
        root=ROOT / 'tests' / 'data' / 'vedai', batch_size=4, super_resolution=True
    )
    dm.setup('fit')
    task = SuperYOLOTask(warmup_epochs=0, ema_tau=10)
    optimizer = torch.optim.SGD(
        task.model.parameters(), lr=0.01, momentum=0.937, nesterov=True
    )
    losses: list[float] = []
    sr_losses: list[float] = []
    task.train()
    while len(losses) < steps:
        for batch in dm.train_dataloader():
            assert dm.train_aug is not None
            batch = dm.train_aug(batch)
            parts, _ = task.compute_loss(batch, task.model)
            loss = parts['loss']
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            if task.ema_model is not None:
                task.ema_model.update_parameters(task.model)
            losses.append(loss.item())
            sr_losses.append(float(parts.get('loss_sr', float('nan'))))
            if len(losses) >= steps:
                break
    return losses, sr_losses


def plot(losses: list[float], sr_losses: list[float], path: Path) -> None:
    """Save the loss curve."""
    import matplotlib

    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(range(1, len(losses) + 1), losses, label='total (YOLOv5 + 0.1 SR)')
    ax.plot(range(1, len(sr_losses) + 1), sr_losses, label='SR L1')
    ax.set_xlabel('optimiser step')
    ax.set_ylabel('loss')
    ax.set_title('SuperYOLO on fake VEDAI (batch 4, 64 px input)')
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main() -> None:
    """Run all parts and write the markdown report."""
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--repeats', type=int, default=3)
    parser.add_argument('--steps', type=int, default=40)
    parser.add_argument('--threads', type=int, default=2)
    parser.add_argument('--output', type=Path, default=HERE / 'superyolo.md')
    parser.add_argument(
        '--skip', nargs='*', default=[], choices=['size', 'ghost', 'latency', 'train']
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    lines = [
        '# SuperYOLO benchmark',
        '',
        (
            'Generated by `python benchmarks/superyolo.py '
            + (f'--skip {" ".join(args.skip)} ' if args.skip else '')
            + f'--repeats {args.repeats} --steps {args.steps} --threads {args.threads}` '
            f'(torch {torch.__version__}, {args.threads} CPU threads, '
            f'{os.cpu_count()} cores visible, load average at start '
            f'{os.getloadavg()[0]:.1f}).'
        ),
        '',
    ]
    if 'size' not in args.skip:
        lines += ['## Size at 512 x 512 (8 classes)', '', *size_table(), '']
    if 'ghost' not in args.skip:
        lines += [
            '## GHOST quantisation (stem and head in full precision)',
            '',
            *ghost_table(),
            '',
            'The k-means allocation depends on the weights; on a random',
            'initialisation it is not the allocation of a trained model.',
            '',
        ]
    if 'latency' not in args.skip:
        lines += [
            '## CPU inference latency, 4 x 512 x 512',
            '',
            *latency_table(args.repeats),
            '',
            (
                'Absolute times depend on the machine and on its load; the ratio within '
                'one run is the comparable number.'
            ),
            '',
        ]
    if 'train' not in args.skip:
        losses, sr_losses = train_curve(args.steps)
        plot(losses, sr_losses, HERE / 'superyolo_loss.png')
        first = statistics.mean(losses[:5])
        last = statistics.mean(losses[-5:])
        lines += [
            '## Short training run on fake VEDAI',
            '',
            (
                f'{len(losses)} steps; mean loss of the first 5 steps {first:.3f}, of the '
                f'last 5 steps {last:.3f}; SR L1 {sr_losses[0]:.3f} -> {sr_losses[-1]:.3f}.'
            ),
            '',
            '![loss curve](superyolo_loss.png)',
            '',
        ]
    report = '\n'.join(lines)
    print(report)
    args.output.write_text(report)


if __name__ == '__main__':
    main()
