#!/usr/bin/env python3
"""Generate a tiny SSDD copy in the layout of the official release (Official-SSDD-OPEN).

BBox_SSDD/voc_style/{JPEGImages,Annotations}_{train,test,test_inshore,test_offshore}/
holds grey JPEGs stored with three identical channels and VOC XML with <bndbox>;
RBox_SSDD/voc_style/ the same images with <rotated_bndbox> (rotated_bbox_cx/cy/w/h/theta
and the corners x1 y1 .. x4 y4). Test images are those whose number ends in 1 or 9,
divided into inshore and offshore scenes. Images are small and of different sizes.

Reproduced quirks: a ship crossing the image border (clipped) and one lying
entirely outside (dropped).
"""

import math
import os
import shutil

import numpy as np
from PIL import Image, ImageDraw

ROOT = os.path.dirname(os.path.abspath(__file__))
SPLITS = {
    'train': ['000002', '000003', '000004', '000005'],
    'test_inshore': ['000001'],
    'test_offshore': ['000009', '000011'],
}
SIZES = [(96, 64), (80, 112), (128, 96)]


def corners(cx: float, cy: float, w: float, h: float, a: float) -> list[float]:
    c, s = math.cos(a), math.sin(a)
    pts = []
    for dx, dy in ((-w / 2, -h / 2), (w / 2, -h / 2), (w / 2, h / 2), (-w / 2, h / 2)):
        pts += [round(cx + c * dx - s * dy, 1), round(cy + s * dx + c * dy, 1)]
    return pts


def ships(rng: np.random.Generator, size: tuple[int, int], n: int) -> list[list[float]]:
    """(cx, cy, w, h, theta) of n ships well inside the image."""
    width, height = size
    return [
        [
            round(float(rng.uniform(20, width - 20)), 1),
            round(float(rng.uniform(20, height - 20)), 1),
            round(float(rng.uniform(12, 20)), 1),
            round(float(rng.uniform(4, 7)), 1),
            round(float(rng.uniform(-1.5, 1.5)), 3),
        ]
        for _ in range(n)
    ]


def header(stem: str, size: tuple[int, int]) -> str:
    return (
        '<annotation>\n\t<folder>JPEGImages</folder>\n'
        f'\t<filename>{stem}.jpg</filename>\n\t<path>JPEGImages</path>\n'
        f'\t<size>\n\t\t<width>{size[0]}</width>\n\t\t<height>{size[1]}</height>\n'
        '\t\t<depth>3</depth>\n\t</size>\n\t<segmented>0</segmented>\n'
    )


def obj(inner: str) -> str:
    return (
        '\t<object>\n\t\t<name>ship</name>\n\t\t<pose>Unspecified</pose>\n'
        '\t\t<truncated>0</truncated>\n\t\t<difficult>0</difficult>\n'
        f'{inner}\t</object>\n'
    )


def bbox_xml(stem: str, size: tuple[int, int], boxes: list[list[float]]) -> str:
    body = ''
    for cx, cy, w, h, a in boxes:
        pts = corners(cx, cy, w, h, a)
        xs, ys = pts[0::2], pts[1::2]
        values = [
            math.floor(min(xs)),
            math.floor(min(ys)),
            math.ceil(max(xs)),
            math.ceil(max(ys)),
        ]
        tags = ''.join(
            f'\t\t\t<{k}>{v}</{k}>\n'
            for k, v in zip(('xmin', 'ymin', 'xmax', 'ymax'), values)
        )
        body += obj(f'\t\t<bndbox>\n{tags}\t\t</bndbox>\n')
    return header(stem, size) + body + '</annotation>\n'


def rbox_xml(stem: str, size: tuple[int, int], boxes: list[list[float]]) -> str:
    body = ''
    for cx, cy, w, h, a in boxes:
        keys = [
            'rotated_bbox_cx',
            'rotated_bbox_cy',
            'rotated_bbox_w',
            'rotated_bbox_h',
            'rotated_bbox_theta',
        ]
        tags = ''.join(
            f'\t\t\t<{k}>{v}</{k}>\n' for k, v in zip(keys, (cx, cy, w, h, a))
        )
        pts = corners(cx, cy, w, h, a)
        names = [f'{c}{i}' for i in range(1, 5) for c in 'xy']
        tags += ''.join(f'\t\t\t<{k}>{v}</{k}>\n' for k, v in zip(names, pts))
        body += obj(f'\t\t<rotated_bndbox>\n{tags}\t\t</rotated_bndbox>\n')
    return header(stem, size) + body + '</annotation>\n'


def image(
    rng: np.random.Generator, size: tuple[int, int], boxes: list[list[float]]
) -> Image.Image:
    width, height = size
    sea = rng.gamma(2.0, 12.0, (height, width)).clip(0, 255).astype(np.uint8)
    img = Image.fromarray(sea)
    draw = ImageDraw.Draw(img)
    for box in boxes:
        pts = corners(*box)
        draw.polygon([(pts[i], pts[i + 1]) for i in range(0, 8, 2)], fill=230)
    return img.convert('RGB')


def main() -> None:
    rng = np.random.default_rng(0)
    for variant in ('BBox_SSDD', 'RBox_SSDD'):
        shutil.rmtree(os.path.join(ROOT, variant), ignore_errors=True)
    k = 0
    for split, stems in SPLITS.items():
        for stem in stems:
            size = SIZES[k % len(SIZES)]
            boxes = ships(rng, size, 1 + k % 3)
            if stem == '000003':
                # crossing the left border (clipped), entirely outside (dropped)
                boxes += [[2.0, 30.0, 14.0, 6.0, 0.0], [-30.0, 30.0, 10.0, 4.0, 0.2]]
            k += 1
            img = image(rng, size, boxes)
            targets = [split, 'test'] if split.startswith('test_') else [split]
            for variant, writer in (('BBox_SSDD', bbox_xml), ('RBox_SSDD', rbox_xml)):
                for target in targets:
                    base = os.path.join(ROOT, variant, 'voc_style')
                    images = os.path.join(base, f'JPEGImages_{target}')
                    notes = os.path.join(base, f'Annotations_{target}')
                    os.makedirs(images, exist_ok=True)
                    os.makedirs(notes, exist_ok=True)
                    img.save(os.path.join(images, f'{stem}.jpg'), quality=90)
                    with open(os.path.join(notes, f'{stem}.xml'), 'w') as f:
                        f.write(writer(stem, size, boxes))


if __name__ == '__main__':
    main()
