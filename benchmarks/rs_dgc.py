"""RS-DGC on two gloo processes: accuracy after N steps against the payload compression.

A small synthetic scene-classification task (6 classes of oriented stripe textures with
noise, 32 x 32 x 3), a small CNN, SGD with momentum, each rank on its own shard; the test
accuracy on 1200 held-out scenes after ``--steps`` steps, for dense all-reduce and for
RS-DGC and magnitude top-k at several densities (same error feedback and layer budget).

    .venv/bin/python benchmarks/rs_dgc.py --steps 150 --seeds 0 1 2
"""

import argparse
import os
import socket
import statistics
import tempfile
import time
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn
from torch.multiprocessing.spawn import spawn

from torchgeo_ext.trainers.gradient_compression import RSDGCState, rs_dgc_hook

CLASSES = 6


def scenes(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    y = torch.randint(0, CLASSES, (n,), generator=generator)
    angle = y.float() * torch.pi / CLASSES
    rows, cols = torch.meshgrid(torch.arange(32.0), torch.arange(32.0), indexing='ij')
    phase = torch.rand(n, generator=generator) * 6.28
    along = (
        cols[None] * torch.cos(angle)[:, None, None]
        + rows[None] * torch.sin(angle)[:, None, None]
    )
    stripes = torch.sin(0.8 * along + phase[:, None, None])
    x = stripes[:, None].repeat(1, 3, 1, 1) + 1.2 * torch.randn(
        n, 3, 32, 32, generator=generator
    )
    return x, y


def model() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(64 * 64, 128), nn.ReLU(), nn.Linear(128, CLASSES),
    )  # fmt: skip


def worker(
    rank: int, port: int, runs: list[tuple[str, float, int]], steps: int, out: str
) -> None:
    dist.init_process_group(
        'gloo', init_method=f'tcp://127.0.0.1:{port}', rank=rank, world_size=2
    )
    torch.set_num_threads(1)
    test_x, test_y = scenes(1200, 999)
    results = []
    for indicator, density, seed in runs:
        torch.manual_seed(seed)
        net = nn.parallel.DistributedDataParallel(model())
        state = None
        if indicator != 'dense':
            state = RSDGCState(density=density, indicator=indicator)  # type: ignore[arg-type]
            net.register_comm_hook(state, rs_dgc_hook)
        optimizer = torch.optim.SGD(net.parameters(), lr=0.02, momentum=0.9)
        x, y = scenes(steps * 32, 1000 * seed + rank)
        start = time.perf_counter()
        for step in range(steps):
            batch = slice(32 * step, 32 * (step + 1))
            loss = nn.functional.cross_entropy(net(x[batch]), y[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        seconds = time.perf_counter() - start
        with torch.no_grad():
            accuracy = (net(test_x).argmax(1) == test_y).float().mean().item()
        ratio = state.compression if state is not None else 1.0
        results.append((indicator, density, seed, accuracy, ratio, seconds))
    if rank == 0:
        torch.save(results, os.path.join(out, 'results.pt'))
    dist.destroy_process_group()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument('--steps', type=int, default=150)
    parser.add_argument('--seeds', type=int, nargs='+', default=[0, 1, 2])
    parser.add_argument('--densities', type=float, nargs='+', default=[0.1, 0.02, 0.01])
    args = parser.parse_args()
    runs = [('dense', 1.0, seed) for seed in args.seeds]
    for density in args.densities:
        for indicator in ('nsi', 'magnitude'):
            runs += [(indicator, density, seed) for seed in args.seeds]
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        port = int(s.getsockname()[1])
    with tempfile.TemporaryDirectory() as out:
        spawn(worker, args=(port, runs, args.steps, out), nprocs=2, join=True)
        results = torch.load(Path(out) / 'results.pt')
    print(
        f'torch {torch.__version__}, {args.steps} steps, batch 32 per rank, 2 gloo processes, '
        f'load average {os.getloadavg()[0]:.1f}'
    )
    print(
        '| exchange | density | payload compression | test accuracy (mean, min-max over seeds) |'
    )
    print('| --- | ---: | ---: | --- |')
    keys = sorted(
        {(r[0], r[1]) for r in results}, key=lambda k: (k[0] != 'dense', -k[1], k[0])
    )
    for indicator, density in keys:
        rows = [r for r in results if (r[0], r[1]) == (indicator, density)]
        accuracies = [r[3] for r in rows]
        name = {
            'dense': 'dense all-reduce',
            'nsi': 'RS-DGC (NSI)',
            'magnitude': 'magnitude top-k',
        }
        print(
            f'| {name[indicator]} | {density:g} | {statistics.mean(r[4] for r in rows):.1f}x | '
            f'{statistics.mean(accuracies):.3f} ({min(accuracies):.3f}-{max(accuracies):.3f}) |'
        )


if __name__ == '__main__':
    main()
