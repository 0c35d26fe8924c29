#!/usr/bin/env python3
"""SuperYOLO inference speed on the CPU, against the convolution peak and Faster R-CNN.

Measures, in interleaved rounds on one intra-op thread (so that load from other
processes affects every candidate alike), batch 1, 4 x 512 x 512, eval mode under
``torch.inference_mode``:

* the 3 x 3 convolution peak: the best GMAC/s of plain bias-free 3 x 3 convolutions at
  SuperYOLO's own widths and resolutions (64 ch at 128^2, 128 ch at 64^2, 256 ch at
  32^2), in both memory formats;
* the fused SuperYOLO forward (backbone, neck, head and box decoding, no NMS) in
  contiguous (NCHW) and ``channels_last`` (NHWC) memory formats, as the torch
  engine runs it (``models.superyolo_engine.SuperYOLOEagerEngine``: NHWC, conv + SiLU as one
  oneDNN kernel, stem and first convolution composed into one) and, when it is
  installed, through ONNX Runtime
  (``models.superyolo_engine.SuperYOLOOnnxEngine``, what ``detect --engine onnxruntime`` runs);
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
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from torchgeo_ext.models.complexity import count_macs
from torchgeo_ext.models.superyolo import postprocess, superyolo_mf
from torchgeo_ext.models.superyolo_engine import (
    SuperYOLOEagerEngine,
    SuperYOLOOnnxEngine,
    onnxruntime_available,
)

sys.path.insert(0, str(ROOT / 'benchmarks'))
from superyolo import faster_rcnn  # the same Faster R-CNN as the latency table there

#: The issue's targets: forward share of the conv peak, forward / Faster R-CNN,
#: post-processing / forward.
TARGET_PEAK, TARGET_FRCNN, TARGET_POST = 0.60, 0.25, 0.10

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


def sparse_scores(decoded: torch.Tensor, passing: int = 100) -> torch.Tensor:
    """The decoded output with objectness zero except ``passing`` random anchors."""
    out = decoded.clone()
    out[..., 4] = 0
    index = torch.randperm(out.shape[1], generator=torch.Generator().manual_seed(0))
    out[0, index[:passing], 4] = 0.95
    out[0, index[:passing], 5:] = 0
    out[0, index[:passing], 5] = 0.9
    return out


def _verdict(met: bool) -> str:
    return 'met' if met else '**not met**'


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
    model_engine = SuperYOLOEagerEngine(model)
    x_cl = x.contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        decoded = sparse_scores(model(x))
    passing = int(((decoded[0, :, 5:] * decoded[0, :, 4:5]).amax(1) > 0.25).sum())

    frcnn_model = faster_rcnn()
    candidates: dict[str, Callable[[], object]] = {
        'SuperYOLO forward NCHW': lambda: model(x),
        'SuperYOLO forward NHWC': lambda: model_cl(x_cl),
        'SuperYOLO forward torch engine': lambda: model_engine(x),
        f'post-processing ({passing} boxes pass)': lambda: postprocess(decoded),
        'Faster R-CNN R50-FPN': lambda: frcnn_model(x),
    }
    with torch.inference_mode():
        expected = model(x)
        assert torch.allclose(model_engine(x), expected, rtol=1e-4, atol=1e-3)
    if onnxruntime_available():
        ort = SuperYOLOOnnxEngine(model, threads=1)
        assert torch.allclose(ort(x), expected, rtol=1e-4, atol=1e-3)
        candidates['SuperYOLO forward ONNX Runtime'] = lambda: ort(x)
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
    post = next(v for k, v in median.items() if k.startswith('post-processing'))
    # The torch engine composes the stem's 3 x 3 path convolutions and b1 into one
    # 5 x 5 stride-2 convolution: it executes fewer MACs than the model has.
    side = x.shape[-1]
    path_convs = [
        m
        for m in model.stem.modules()
        if isinstance(m, torch.nn.Conv2d) and m.kernel_size == (3, 3)
    ]
    stem_macs = sum(m.weight.numel() * side * side for m in path_convs)
    stem_macs += model.b1.conv.weight.numel() * (side // 2) ** 2
    composed = model.b1.conv.out_channels * len(model.bands) * 25 * (side // 2) ** 2
    executed = macs - stem_macs + composed
    engine = median['SuperYOLO forward torch engine']
    lines += [
        '',
        f'SuperYOLO: {macs / 1e9:.2f} GMACs; conv peak {peak / 1e9:.1f} GMAC/s.',
        (
            f'The torch engine executes {executed / 1e9:.2f} GMACs (MF stem and b1 '
            f'composed into one 5 x 5 stride-2 convolution): '
            f'{executed / engine / 1e9:.1f} GMAC/s, {executed / engine / peak:.0%} of '
            'the conv peak on the MACs it executes. The table and verdicts use the '
            "model's MACs for every row."
        ),
        '',
        (
            f'| forward | >= {TARGET_PEAK:.0%} of conv peak '
            f'| <= {TARGET_FRCNN}x Faster R-CNN '
            f'| post-processing <= {TARGET_POST:.0%} of forward |'
        ),
        '| --- | --- | --- | --- |',
    ]
    for name, seconds in median.items():
        if not name.startswith('SuperYOLO forward'):
            continue
        fraction = macs / seconds / peak
        vs_frcnn, post_share = seconds / frcnn, post / seconds
        lines.append(
            f'| {name.removeprefix("SuperYOLO forward ")} '
            f'| {fraction:.0%} {_verdict(fraction >= TARGET_PEAK)} '
            f'| {vs_frcnn:.2f} {_verdict(vs_frcnn <= TARGET_FRCNN)} '
            f'| {post_share:.2%} {_verdict(post_share <= TARGET_POST)} |'
        )
    lines.append('')
    text = '\n'.join(lines)
    print(text)
    args.output.write_text(text)


if __name__ == '__main__':
    main()
