#!/usr/bin/env python3
"""Selective scan speed: the chunked parallel scan against the step-by-step recurrence.

For each sequence length, times :func:`selective_scan` (plain torch, chunked
parallel scan) and :func:`selective_scan_reference` (the recurrence, one step
per token) on the same random inputs (batch ``--batch``, ``--channels``
channels, ``--states`` states, decays typical of a freshly initialised Mamba
block), forward only and forward + backward. Each measurement is the median of
``--repeats`` calls after one warm-up; the two implementations are timed in
interleaved rounds so that load from other processes hits both alike. Also
reports the largest absolute difference between the two outputs and the
load average before and after.

Usage: python benchmarks/mamba.py [--lengths 1024 2048 4096 8192 16384]
       [--batch 1] [--channels 64] [--states 16] [--chunk 32] [--repeats 3]
       [--threads 1] [--device cpu] [--backward] [--reference-max 16384]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..'))

from torchgeo_ext.models.mamba import selective_scan, selective_scan_reference


def inputs(
    length: int, batch: int, channels: int, states: int, device: str
) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(batch, length, channels, generator=g)
    # Step sizes as after Mamba's initialisation: softplus(bias) in [1e-3, 0.1].
    delta = F.softplus(torch.randn(batch, length, channels, generator=g) - 4.0)
    A = -torch.arange(1, states + 1, dtype=torch.float32).repeat(channels, 1)
    B = torch.randn(batch, length, states, generator=g)
    C = torch.randn(batch, length, states, generator=g)
    D = torch.ones(channels)
    return [t.to(device) for t in (x, delta, A, B, C, D)]


def timed(fn: Callable[[], object], device: str) -> float:
    if device.startswith('cuda'):
        torch.cuda.synchronize()
    start = time.perf_counter()
    fn()
    if device.startswith('cuda'):
        torch.cuda.synchronize()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        '--lengths', type=int, nargs='+', default=[1024, 2048, 4096, 8192, 16384]
    )
    parser.add_argument('--batch', type=int, default=1)
    parser.add_argument('--channels', type=int, default=64)
    parser.add_argument('--states', type=int, default=16)
    parser.add_argument('--chunk', type=int, default=32)
    parser.add_argument('--repeats', type=int, default=3)
    parser.add_argument('--threads', type=int, default=1)
    parser.add_argument('--device', default='cpu')
    parser.add_argument('--backward', action='store_true', help='also time backward')
    parser.add_argument(
        '--reference-max',
        type=int,
        default=16384,
        help='longest sequence the recurrence is timed on',
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    dev = args.device
    print(f'load average before: {os.getloadavg()}')
    print(
        f'device {dev}, threads {args.threads}, batch {args.batch}, '
        f'channels {args.channels}, states {args.states}, chunk {args.chunk}'
    )
    header = '| length | chunked (ms) | recurrent (ms) | speed-up | max abs diff |'
    if args.backward:
        header += ' chunked fwd+bwd (ms) | recurrent fwd+bwd (ms) | speed-up |'
    print(header)
    print('|' + ' --- |' * (header.count('|') - 1))
    for length in args.lengths:
        tensors = inputs(length, args.batch, args.channels, args.states, dev)

        def fast(tensors: list[torch.Tensor] = tensors) -> torch.Tensor:
            with torch.no_grad():
                return selective_scan(*tensors, chunk_size=args.chunk, use_kernel=False)

        def slow(tensors: list[torch.Tensor] = tensors) -> torch.Tensor:
            with torch.no_grad():
                return selective_scan_reference(*tensors)

        def fast_bwd(tensors: list[torch.Tensor] = tensors) -> None:
            t = [v.clone().requires_grad_(True) for v in tensors]
            selective_scan(*t, chunk_size=args.chunk, use_kernel=False).sum().backward()

        def slow_bwd(tensors: list[torch.Tensor] = tensors) -> None:
            t = [v.clone().requires_grad_(True) for v in tensors]
            selective_scan_reference(*t).sum().backward()

        run_reference = length <= args.reference_max
        diff = float('nan')
        fast()
        if run_reference:
            diff = float((fast() - slow()).abs().max())
        f_times, s_times, fb_times, sb_times = [], [], [], []
        for _ in range(args.repeats):
            f_times.append(timed(fast, dev))
            if run_reference:
                s_times.append(timed(slow, dev))
            if args.backward:
                fb_times.append(timed(fast_bwd, dev))
                if run_reference:
                    sb_times.append(timed(slow_bwd, dev))
        f = statistics.median(f_times) * 1e3
        s = statistics.median(s_times) * 1e3 if s_times else float('nan')
        row = f'| {length} | {f:.1f} | {s:.1f} | {s / f:.1f}x | {diff:.1e} |'
        if args.backward:
            fb = statistics.median(fb_times) * 1e3
            sb = statistics.median(sb_times) * 1e3 if sb_times else float('nan')
            row += f' {fb:.1f} | {sb:.1f} | {sb / fb:.1f}x |'
        print(row, flush=True)
    print(f'load average after: {os.getloadavg()}')


if __name__ == '__main__':
    main()
