#!/usr/bin/env python3
"""Loading throughput of VEDAI and DroneVehicle against raw image decoding.

For each dataset a synthetic copy at the real image sizes is written to a
temporary folder (VEDAI 512 x 512 PNG pairs with per-image annotation files;
DroneVehicle 840 x 712 JPEG pairs with XML labels). Then, through the same
DataLoader set-up (2 worker processes, persistent, batch size 8):

* ``dataset``: the torchgeo-ext dataset with the detection collate (decoding,
  annotation look-up, border crop, float32 conversion, stacking);
* ``raw``: a dataset that only decodes the same image files with Pillow (uint8
  arrays, default collate);
* ``uint8``: the torchgeo-ext dataset as its data module builds it
  (``dtype='uint8'``: the same values, a quarter of the bytes between
  processes), plus, in the main process, what the data module's
  ``on_after_batch_transfer`` then does to each batch (float32 conversion and
  normalisation, :class:`DetectionAugmentation` without augmentations): the
  model still gets float32.

Rounds alternate raw / dataset so that load from other processes on the
machine hits both alike; the ratio dataset / raw is reported per round and as
the median. Target: >= 0.9.

Usage: python benchmarks/loading.py [--samples 64] [--rounds 5] [--workers 2]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import warnings
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..'))

from torchgeo_ext.datamodules.detection import DetectionAugmentation, collate_detection
from torchgeo_ext.datasets.dronevehicle import DroneVehicle
from torchgeo_ext.datasets.vedai import VEDAI


def texture(rng: np.random.Generator, h: int, w: int, c: int) -> np.ndarray:  # type: ignore[type-arg]
    """Aerial-like texture: smooth field plus noise (compresses like photos)."""
    small = rng.uniform(40, 200, size=(h // 16 + 1, w // 16 + 1, c))
    field = np.kron(small, np.ones((16, 16, 1)))[:h, :w]
    return np.clip(field + rng.normal(0, 12, size=(h, w, c)), 0, 255).astype(np.uint8)


def make_vedai(root: str, n: int) -> list[str]:
    rng = np.random.default_rng(0)
    os.makedirs(os.path.join(root, 'Vehicules512'))
    os.makedirs(os.path.join(root, 'Annotations512'))
    files = []
    ids = [f'{i:08d}' for i in range(n)]
    for image_id in ids:
        co = os.path.join(root, 'Vehicules512', f'{image_id}_co.png')
        ir = os.path.join(root, 'Vehicules512', f'{image_id}_ir.png')
        Image.fromarray(texture(rng, 512, 512, 3)).save(co)
        Image.fromarray(np.repeat(texture(rng, 512, 512, 1), 3, axis=2)).save(ir)
        files += [co, ir]
        with open(os.path.join(root, 'Annotations512', f'{image_id}.txt'), 'w') as f:
            for _ in range(6):
                x, y = rng.integers(20, 490, size=2)
                xs = [x, x + 12, x + 12, x]
                ys = [y, y, y + 6, y + 6]
                f.write(
                    f'{x + 6}.0 {y + 3}.0 0.0 1 1 0 '
                    + ' '.join(str(v) for v in xs + ys)
                    + ' \n'
                )
    with open(os.path.join(root, 'Annotations512', 'fold01.txt'), 'w') as f:
        f.write('\n'.join(ids) + '\n')
    return files


def make_dronevehicle(root: str, n: int) -> list[str]:
    rng = np.random.default_rng(0)
    d = os.path.join(root, 'train')
    for sub in ('trainimg', 'trainimgr', 'trainlabelr'):
        os.makedirs(os.path.join(d, sub))
    files = []
    for i in range(n):
        stem = f'{i + 1:05d}'
        for sub, c in (('trainimg', 3), ('trainimgr', 1)):
            canvas = np.full((712, 840, 3), 255, np.uint8)
            content = texture(rng, 512, 640, c)
            canvas[100:612, 100:740] = content if c == 3 else np.repeat(content, 3, 2)
            path = os.path.join(d, sub, stem + '.jpg')
            Image.fromarray(canvas).save(path, quality=90)
            files.append(path)
        objects = ''
        for _ in range(12):
            x, y = rng.integers(120, 700), rng.integers(120, 580)
            objects += (
                f'<object><name>car</name><polygon><x1>{x}</x1><y1>{y}</y1>'
                f'<x2>{x + 30}</x2><y2>{y}</y2><x3>{x + 30}</x3><y3>{y + 15}</y3>'
                f'<x4>{x}</x4><y4>{y + 15}</y4></polygon></object>'
            )
        with open(os.path.join(d, 'trainlabelr', stem + '.xml'), 'w') as f:
            f.write(
                '<annotation><size><width>840</width><height>712</height></size>'
                + objects
                + '</annotation>'
            )
    return files


class RawDecode(Dataset[dict[str, Any]]):
    """Decode pairs of image files with Pillow, nothing else."""

    def __init__(self, files: list[str]) -> None:
        self.pairs = [files[i : i + 2] for i in range(0, len(files), 2)]

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> dict[str, Any]:
        out = {}
        for k, path in enumerate(self.pairs[index]):
            with Image.open(path) as img:
                out[f'image{k}'] = torch.from_numpy(np.array(img))
        return out


class RawDecodeFloat(RawDecode):
    """Decode the same pairs and convert them to one float32 C x H x W tensor.

    The unavoidable part of a loader whose contract is float32 images: the
    bytes written are 4 / (bytes per decoded pixel) times those of ``raw``.
    """

    def __getitem__(self, index: int) -> dict[str, Any]:
        bands = []
        for k, path in enumerate(self.pairs[index]):
            with Image.open(path) as img:
                array = np.asarray(img)
            bands.append(array if k == 0 else array[..., :1])
        image = np.concatenate(bands, axis=2).transpose(2, 0, 1)
        return {'image': torch.from_numpy(image).float()}


def throughput(loader: DataLoader[Any], epochs: int = 1, after: Any = None) -> float:
    """Samples per second over ``epochs`` passes (after one warm-up pass).

    ``after`` runs on each batch in the main process (the data module's
    ``on_after_batch_transfer``) and is timed with the loading.
    """
    for _ in loader:
        pass
    n = 0
    start = time.perf_counter()
    for _ in range(epochs):
        for batch in loader:
            if after is not None:
                batch = after(batch)
            n += len(batch['image'] if 'image' in batch else batch['image0'])
    return n / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--samples', type=int, default=64)
    parser.add_argument('--rounds', type=int, default=5)
    parser.add_argument('--workers', type=int, default=2)
    parser.add_argument('--batch-size', type=int, default=8)
    args = parser.parse_args()
    warnings.simplefilter('ignore')
    torch.set_num_threads(1)

    with tempfile.TemporaryDirectory() as tmp:
        setups: dict[str, tuple[Dataset[Any], Dataset[Any], list[str]]] = {}
        vedai_root = os.path.join(tmp, 'vedai')
        files = make_vedai(vedai_root, args.samples)
        setups['VEDAI 512 (PNG)'] = (
            VEDAI(vedai_root),
            VEDAI(vedai_root, dtype='uint8'),
            files,
        )
        dv_root = os.path.join(tmp, 'dronevehicle')
        files = make_dronevehicle(dv_root, args.samples)
        setups['DroneVehicle (JPEG, border crop)'] = (
            DroneVehicle(dv_root),
            DroneVehicle(dv_root, dtype='uint8'),
            files,
        )
        # what the data modules run after the transfer (no augmentation)
        to_float = DetectionAugmentation()

        def loader(ds: Dataset[Any], collate: Any) -> DataLoader[Any]:
            return DataLoader(
                ds,
                batch_size=args.batch_size,
                num_workers=args.workers,
                persistent_workers=args.workers > 0,
                collate_fn=collate,
            )

        print(
            f'{args.samples} samples, {args.workers} workers, batch '
            f'{args.batch_size}, {args.rounds} rounds, {os.cpu_count()} CPUs'
        )
        print(
            '| dataset | raw decode (samples/s) | decode + float32 (samples/s) '
            '| float32 dataset (samples/s) | uint8 dataset (samples/s) '
            '| uint8 dataset + conversion (samples/s) '
            '| float32 dataset / raw | uint8 dataset / raw '
            '| uint8 dataset + conversion / raw |'
        )
        print('| --- | --- | --- | --- | --- | --- | --- | --- | --- |')
        for name, (ds, ds8, files) in setups.items():
            raw_loader = loader(RawDecode(files), None)
            float_loader = loader(RawDecodeFloat(files), None)
            ds_loader = loader(ds, collate_detection)
            ds8_loader = loader(ds8, collate_detection)
            raws, floats, dss, ratios, d8s, ratios8 = [], [], [], [], [], []
            u8s, ratios_u8 = [], []
            for _ in range(args.rounds):
                r = throughput(raw_loader)
                f = throughput(float_loader)
                d = throughput(ds_loader)
                u8 = throughput(ds8_loader)
                d8 = throughput(ds8_loader, after=to_float)
                raws.append(r)
                floats.append(f)
                dss.append(d)
                d8s.append(d8)
                u8s.append(u8)
                ratios_u8.append(u8 / r)
                ratios.append(d / r)
                ratios8.append(d8 / r)

            def fmt(values: list[float]) -> str:
                rounds = ', '.join(f'{x:.2f}' for x in values)
                return f'{statistics.median(values):.2f} (rounds: {rounds})'

            print(
                f'| {name} | {statistics.median(raws):.1f} | '
                f'{statistics.median(floats):.1f} | '
                f'{statistics.median(dss):.1f} | {statistics.median(u8s):.1f} | '
                f'{statistics.median(d8s):.1f} | {fmt(ratios)} | {fmt(ratios_u8)} | '
                f'{fmt(ratios8)} |'
            )


if __name__ == '__main__':
    main()
