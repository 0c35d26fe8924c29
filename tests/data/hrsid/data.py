#!/usr/bin/env python3
"""Generate a tiny HRSID copy in the layout of the HRSID_JPG release.

JPEGImages/<scene>_<y0>_<y1>_<x0>_<x1>.jpg (grey JPEG tiles with three identical
channels; 96 x 96 here instead of 800 x 800) and annotations/{train,test}2017.json
(COCO: images, annotations with bbox x y w h and polygon segmentation, one category
'ship'), plus train_test2017.json with both.

Reproduced quirks: a tile without ships, a ship whose polygon is missing (empty
segmentation), a ship crossing the tile border (clipped).
"""

import json
import math
import os
import shutil
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

ROOT = os.path.dirname(os.path.abspath(__file__))
SIZE = 96
TILES = {
    'train': ['P0001_0_800_0_800', 'P0001_0_800_800_1600', 'P0002_800_1600_0_800'],
    'test': ['P0003_0_800_0_800', 'P0003_800_1600_800_1600'],
}


def polygon(cx: float, cy: float, w: float, h: float, a: float) -> list[float]:
    """A ship outline: a rotated hexagon (pointed bow and stern)."""
    c, s = math.cos(a), math.sin(a)
    shape = [
        (-w / 2, 0),
        (-w / 3, -h / 2),
        (w / 3, -h / 2),
        (w / 2, 0),
        (w / 3, h / 2),
        (-w / 3, h / 2),
    ]
    return [
        round(v, 1)
        for dx, dy in shape
        for v in (cx + c * dx - s * dy, cy + s * dx + c * dy)
    ]


def main() -> None:
    rng = np.random.default_rng(0)
    for sub in ('JPEGImages', 'annotations'):
        shutil.rmtree(os.path.join(ROOT, sub), ignore_errors=True)
        os.makedirs(os.path.join(ROOT, sub))
    everything: dict[str, list[Any]] = {'images': [], 'annotations': []}
    image_id, annotation_id = 1, 1
    for split, stems in TILES.items():
        coco: dict[str, list[Any]] = {'images': [], 'annotations': []}
        for k, stem in enumerate(stems):
            sea = rng.gamma(2.0, 10.0, (SIZE, SIZE)).clip(0, 255).astype(np.uint8)
            img = Image.fromarray(sea)
            draw = ImageDraw.Draw(img)
            n = 0 if stem == 'P0001_0_800_800_1600' else 1 + k % 3
            outlines = []
            for _ in range(n):
                cx, cy = (float(v) for v in rng.uniform(20, SIZE - 20, 2))
                size = (float(rng.uniform(14, 24)), float(rng.uniform(5, 8)))
                outlines.append(polygon(cx, cy, *size, float(rng.uniform(-1.5, 1.5))))
            if stem == 'P0002_800_1600_0_800':
                outlines.append(
                    polygon(SIZE - 3.0, 40.0, 16.0, 6.0, 0.0)
                )  # crosses the border
            for j, pts in enumerate(outlines):
                draw.polygon(
                    [(pts[i], pts[i + 1]) for i in range(0, len(pts), 2)], fill=235
                )
                xs, ys = pts[0::2], pts[1::2]
                x0, y0 = round(min(xs), 1), round(min(ys), 1)
                w, h = round(max(xs) - x0, 1), round(max(ys) - y0, 1)
                missing = stem == 'P0003_0_800_0_800' and j == 0
                coco['annotations'].append(
                    {
                        'id': annotation_id,
                        'image_id': image_id,
                        'category_id': 1,
                        'bbox': [x0, y0, w, h],
                        'area': round(w * h, 1),
                        'segmentation': [] if missing else [pts],
                        'iscrowd': 0,
                    }
                )
                annotation_id += 1
            img.convert('RGB').save(
                os.path.join(ROOT, 'JPEGImages', f'{stem}.jpg'), quality=90
            )
            coco['images'].append(
                {
                    'id': image_id,
                    'file_name': f'{stem}.jpg',
                    'width': SIZE,
                    'height': SIZE,
                }
            )
            image_id += 1
        coco['categories'] = [{'id': 1, 'name': 'ship', 'supercategory': 'ship'}]
        with open(os.path.join(ROOT, 'annotations', f'{split}2017.json'), 'w') as f:
            json.dump(coco, f)
        everything['images'] += coco['images']
        everything['annotations'] += coco['annotations']
    everything['categories'] = coco['categories']
    with open(os.path.join(ROOT, 'annotations', 'train_test2017.json'), 'w') as f:
        json.dump(everything, f)


if __name__ == '__main__':
    main()
