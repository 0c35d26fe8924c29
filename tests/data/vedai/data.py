#!/usr/bin/env python3
"""Generate a tiny VEDAI copy in the official layout.

Layout: Vehicules{512,1024}/<id>_{co,ir}.png, Annotations{512,1024}/<id>.txt
(14 columns), annotation{512,1024}.txt (15 columns) and, in Annotations512 only,
fold01.txt/fold01test.txt and fold02.txt/fold02test.txt. Images are small
(64 px in the "512" folder, 128 px in the "1024" folder) to stay tiny: the
loader reads sizes from the files. Quirks of the real files are reproduced:
trailing spaces/tabs, a blank last line, an image without a per-image
annotation file (the loader falls back to annotationNNN.txt), an image in no
fold, objects crossing the border, classes SuperYOLO drops (motorcycle 7,
plane 31).
"""

import math
import os
import shutil

import numpy as np
from PIL import Image

SIZE = {512: 64, 1024: 128}
IDS = [f'{i:08d}' for i in range(8)]
FOLDS = {1: (IDS[0:5], IDS[5:7]), 2: (IDS[2:7], IDS[0:2])}
NO_PER_IMAGE_FILE = IDS[5]
# class ids cycling through the map; 7 (motorcycle) and 31 (plane) get dropped
# by the SuperYOLO map.
CLASS_CYCLE = [1, 11, 5, 2, 10, 4, 23, 9, 7, 31, 8]


def objects(rng: np.random.Generator, index: int) -> list[tuple[float, ...]]:
    """Objects in 512-scale coordinates: (xc, yc, theta, class, w, h)."""
    out: list[tuple[float, ...]] = []
    for k in range(3):
        cls = CLASS_CYCLE[(3 * index + k) % len(CLASS_CYCLE)]
        w, h = rng.uniform(6, 12), rng.uniform(3, 6)
        xc, yc = rng.uniform(10, 54), rng.uniform(10, 54)
        theta = rng.uniform(-math.pi, math.pi)
        out.append((xc, yc, theta, cls, w, h))
    if index == 1:
        # crosses the right border (as real VEDAI boxes may)
        out.append((62.5, 30.0, 0.1, 1, 8.0, 4.0))
    return out


def corners(obj: tuple[float, ...], scale: float) -> tuple[list[int], list[int]]:
    xc, yc, theta, _, w, h = obj
    c, s = math.cos(theta), math.sin(theta)
    xs, ys = [], []
    for dx, dy in ((-w / 2, -h / 2), (w / 2, -h / 2), (w / 2, h / 2), (-w / 2, h / 2)):
        xs.append(round((xc + c * dx - s * dy) * scale))
        ys.append(round((yc + s * dx + c * dy) * scale))
    return xs, ys


def main() -> None:
    root = os.path.dirname(os.path.abspath(__file__))
    for res in (512, 1024):
        for sub in (f'Vehicules{res}', f'Annotations{res}'):
            shutil.rmtree(os.path.join(root, sub), ignore_errors=True)
            os.makedirs(os.path.join(root, sub))
    rng = np.random.default_rng(0)
    all_objects = {image_id: objects(rng, i) for i, image_id in enumerate(IDS)}
    for res in (512, 1024):
        size = SIZE[res]
        scale = size / 64
        combined = []
        for i, image_id in enumerate(IDS):
            yy, xx = np.mgrid[0:size, 0:size] / size
            base = (80 + 60 * xx + 40 * yy).astype(np.float64)
            rgb = np.stack([base, base * 0.9 + 10, base * 0.8 + 20 * (i % 3)], -1)
            ir = 60 + 50 * yy + 5 * i
            lines = []
            for obj in all_objects[image_id]:
                xs, ys = corners(obj, scale)
                x0, x1 = max(min(xs), 0), min(max(xs), size)
                y0, y1 = max(min(ys), 0), min(max(ys), size)
                rgb[y0:y1, x0:x1] = (230, 60 + 10 * (obj[3] % 10), 40)
                ir[y0:y1, x0:x1] = 220
                xc, yc, theta, cls = obj[0] * scale, obj[1] * scale, obj[2], obj[3]
                contained, occluded = int(min(xs) >= 0 and max(xs) <= size), 0
                lines.append(
                    f'{xc:.6f} {yc:.6f} {theta:.6f} {cls} {contained} {occluded} '
                    + ' '.join(str(v) for v in xs + ys)
                )
                combined.append(
                    f'{image_id} {xc:.6f} {yc:.6f} {theta:.6f} '
                    + ' '.join(str(v) for v in xs + ys)
                    + f' {cls} {contained} {occluded}'
                )
            Image.fromarray(rgb.clip(0, 255).astype(np.uint8)).save(
                os.path.join(root, f'Vehicules{res}', f'{image_id}_co.png')
            )
            ir8 = ir.clip(0, 255).astype(np.uint8)
            Image.fromarray(np.stack([ir8] * 3, -1)).save(
                os.path.join(root, f'Vehicules{res}', f'{image_id}_ir.png')
            )
            if image_id != NO_PER_IMAGE_FILE:
                # trailing spaces / tabs and a blank last line, as in the real files
                text = ''.join(
                    line + (' \t' if k % 2 else ' ') + '\n'
                    for k, line in enumerate(lines)
                )
                with open(
                    os.path.join(root, f'Annotations{res}', f'{image_id}.txt'), 'w'
                ) as f:
                    f.write(text + '\n')
        with open(
            os.path.join(root, f'Annotations{res}', f'annotation{res}.txt'), 'w'
        ) as f:
            f.write('\n'.join(combined) + '\n')
    for fold, (train, test) in FOLDS.items():
        for name, ids in (
            (f'fold{fold:02d}.txt', train),
            (f'fold{fold:02d}test.txt', test),
        ):
            with open(os.path.join(root, 'Annotations512', name), 'w') as f:
                f.write(''.join(f'{i} \n' for i in ids))


if __name__ == '__main__':
    main()
