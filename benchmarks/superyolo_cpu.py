#!/usr/bin/env python3
"""SuperYOLO inference speed on the CPU, against the convolution peak and Faster R-CNN.

Measures, in interleaved rounds on one intra-op thread (so that load from other
processes affects every candidate alike), batch 1, 4 x 512 x 512, eval mode under
``torch.inference_mode``:

* the 3 x 3 convolution peak: the best GMAC/s of plain bias-free 3 x 3 convolutions at
  SuperYOLO's own widths and resolutions (64 ch at 128^2, 128 ch at 64^2, 256 ch at
  32^2), in both memory formats;
* the fused SuperYOLO forward (backbone, neck, head and box decoding, no NMS) in
  contiguous (NCHW) and ``channels_last`` (NHWC) memory formats, and through ONNX
  Runtime when it is installed;
* TorchGeo's Faster R-CNN R50-FPN (``ObjectDetectionTask``, ``weights=None``, 4 bands);
* the post-processing (score filter, class-wise NMS) on a realistic score
  distribution: the decoded output with every objectness set to zero except 100
  anchors, so that about 100 boxes pass the 0.25 threshold (random weights pass
  nearly all 49k anchors and make NMS dominate, which no trained model does).

Usage: python benchmarks/superyolo_cpu.py [--repeats 7] [--output benchmarks/superyolo_cpu.md]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from torchgeo_ext.models.complexity import count_macs
from torchgeo_ext.models.superyolo import export_onnx, postprocess, superyolo_mf

CONV_SHAPES = (
    (64, 128),
    (128, 64),
    (256, 32),
)  # (channels, side) of SuperYOLO's stages


def conv_candidates() -> dict[str, tuple[Callable[[], object], float]]:
    """3 x 3 convolutions at SuperYOLO's widths: name -> (call, MACs)."""
    out: dict[str, tuple[Callable[[], object], float]] = {}
    for channels, side in CONV_SHAPES:
        conv = torch.nn.Conv2d(channels, channels, 3, padding=1, bias=False).eval()
        x = torch.randn(1, channels, side, side)
        macs = channels * channels * 9 * side * side
        out[f'conv {channels}ch {side}^2 NCHW'] = (partial(conv, x), macs)
        conv_cl = torch.nn.Conv2d(channels, channels, 3, padding=1, bias=False).eval()
        conv_cl.load_state_dict(conv.state_dict())
        conv_cl = conv_cl.to(memory_format=torch.channels_last)
        x_cl = x.contiguous(memory_format=torch.channels_last)
        out[f'conv {channels}ch {side}^2 NHWC'] = (partial(conv_cl, x_cl), macs)
    return out


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


def sparse_scores(decoded: torch.Tensor, passing: int = 100) -> torch.Tensor:
    """The decoded output with objectness zero except ``passing`` random anchors."""
    out = decoded.clone()
    out[..., 4] = 0
    index = torch.randperm(out.shape[1], generator=torch.Generator().manual_seed(0))
    out[0, index[:passing], 4] = 0.95
    out[0, index[:passing], 5:] = 0
    out[0, index[:passing], 5] = 0.9
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--repeats', type=int, default=7)
    parser.add_argument(
        '--output', type=Path, default=ROOT / 'benchmarks' / 'superyolo_cpu.md'
    )
    args = parser.parse_args()
    torch.set_num_threads(1)
    load = os.getloadavg()[0]

    model = superyolo_mf(8).eval().fuse()
    x = torch.randn(1, 4, 512, 512)
    macs = count_macs(model, input_shape=(1, 4, 512, 512)).macs
    model_cl = superyolo_mf(8).eval().fuse()
    model_cl.load_state_dict(model.state_dict())
    model_cl = model_cl.to(memory_format=torch.channels_last)
    x_cl = x.contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        decoded = sparse_scores(model(x))
    passing = int(((decoded[0, :, 5:] * decoded[0, :, 4:5]).amax(1) > 0.25).sum())

    frcnn_model = faster_rcnn()
    candidates: dict[str, Callable[[], object]] = {
        'SuperYOLO forward NCHW': lambda: model(x),
        'SuperYOLO forward NHWC': lambda: model_cl(x_cl),
        f'post-processing ({passing} boxes pass)': lambda: postprocess(decoded),
        'Faster R-CNN R50-FPN': lambda: frcnn_model(x),
    }
    try:
        import onnxruntime

        onnx_path = Path(tempfile.mkdtemp()) / 'superyolo.onnx'
        export_onnx(model, onnx_path)
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = options.inter_op_num_threads = 1
        session = onnxruntime.InferenceSession(
            onnx_path, options, providers=['CPUExecutionProvider']
        )
        feed = {'image': x.numpy()}
        candidates['SuperYOLO forward ONNX Runtime'] = lambda: session.run(None, feed)
    except ImportError:
        pass
    convs = conv_candidates()
    for name, (call, _) in convs.items():
        candidates[name] = call

    times: dict[str, list[float]] = {name: [] for name in candidates}
    with torch.inference_mode():
        for name, call in candidates.items():  # warm-up
            call()
        for _ in range(args.repeats):
            for name, call in candidates.items():
                start = time.perf_counter()
                call()
                times[name].append(time.perf_counter() - start)
    median = {name: statistics.median(values) for name, values in times.items()}
    peak = max(m / median[name] for name, (_, m) in convs.items())

    lines = [
        '# SuperYOLO CPU inference',
        '',
        (
            f'Generated by `python benchmarks/superyolo_cpu.py --repeats {args.repeats}` '
            f'(torch {torch.__version__}, one intra-op thread, batch 1, 4 x 512 x 512, '
            f'load average {load:.1f} at start; median of {args.repeats} interleaved rounds).'
        ),
        '',
        '| what | ms | GMAC/s | of conv peak | vs Faster R-CNN |',
        '| --- | ---: | ---: | ---: | ---: |',
    ]
    frcnn = median['Faster R-CNN R50-FPN']
    for name, seconds in median.items():
        work: float | None = macs if name.startswith('SuperYOLO forward') else None
        if name in convs:
            work = convs[name][1]
        gmacs = f'{work / seconds / 1e9:.1f}' if work else '-'
        share = f'{work / seconds / peak:.0%}' if work else '-'
        ratio = f'{seconds / frcnn:.2f}' if name.startswith('SuperYOLO') else '-'
        lines.append(f'| {name} | {seconds * 1e3:.1f} | {gmacs} | {share} | {ratio} |')
    best = min(v for k, v in median.items() if k.startswith('SuperYOLO forward'))
    post = next(v for k, v in median.items() if k.startswith('post-processing'))
    lines += [
        '',
        (
            f'SuperYOLO: {macs / 1e9:.2f} GMACs; conv peak {peak / 1e9:.1f} GMAC/s. '
            f'Best forward {best * 1e3:.0f} ms = {macs / best / peak:.0%} of the peak, '
            f'{best / frcnn:.2f}x Faster R-CNN; post-processing {post / best:.1%} of it.'
        ),
        '',
    ]
    text = '\n'.join(lines)
    print(text)
    args.output.write_text(text)


if __name__ == '__main__':
    main()
