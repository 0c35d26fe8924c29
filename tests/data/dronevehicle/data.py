#!/usr/bin/env python3
"""Generate a tiny DroneVehicle copy in the official layout (and the DOTA one).

Official layout: {split}/{split}img/NNNNN.jpg (RGB), {split}/{split}imgr/NNNNN.jpg
(IR, 3 identical channels), {split}/{split}label/NNNNN.xml (RGB labels) and
{split}/{split}labelr/NNNNN.xml (IR labels). Frames are real-size 840 x 712
JPEGs: 640 x 512 content plus a 100 px white border; XML coordinates are in the
bordered frame.

Reproduced quirks: spelling variants (feright car, feright_car, feright, truvk),
junk names (*, empty), <bndbox> objects, an object without geometry, an
incomplete polygon, names with trailing spaces, objects reaching into the
border (clipped) or lying entirely in it (dropped), RGB and IR labels that
differ.

DOTA layout (E2E-MFD) under dota/: {train,test}/{rgb,ir}/{images,labels}, 640 x
512 frames without border, lines 'x1 y1 x2 y2 x3 y3 x4 y4 class difficulty'.
"""

import os
import shutil

import numpy as np
from PIL import Image, ImageDraw

SPLITS = {'train': 4, 'val': 3, 'test': 3}
DOTA_SPLITS = {'train': 3, 'test': 2}
NAMES = ['car', 'truck', 'bus', 'van', 'freight car']
BORDER = 100
W, H = 640, 512


def rotated(cx: float, cy: float, w: float, h: float, a: float) -> list[float]:
    c, s = np.cos(a), np.sin(a)
    pts = []
    for dx, dy in ((-w / 2, -h / 2), (w / 2, -h / 2), (w / 2, h / 2), (-w / 2, h / 2)):
        pts += [round(cx + c * dx - s * dy), round(cy + s * dx + c * dy)]
    return pts


def make_objects(rng: np.random.Generator, n: int) -> list[tuple[str, list[float]]]:
    """Objects in content coordinates (no border)."""
    out = []
    for k in range(n):
        cx, cy = rng.uniform(60, W - 60), rng.uniform(60, H - 60)
        w, h = rng.uniform(30, 60), rng.uniform(15, 25)
        out.append((NAMES[k % len(NAMES)], rotated(cx, cy, w, h, rng.uniform(0, 3.1))))
    return out


def draw(
    objects: list[tuple[str, list[float]]],
    seed: int,
    offset: int,
    size: tuple[int, int],
    border: bool,
) -> tuple[Image.Image, Image.Image]:
    yy, xx = np.mgrid[0:H, 0:W]
    base = 90 + 40 * xx / W + 30 * yy / H + 10 * (seed % 4)
    rgb = np.stack([base, base * 0.95, base * 0.8], -1)
    ir = 40 + 30 * yy / H + 0 * xx
    canvas_rgb = np.full((size[1], size[0], 3), 255.0)
    canvas_ir = np.full((size[1], size[0]), 255.0)
    b = BORDER if border else 0
    canvas_rgb[b : b + H, b : b + W] = rgb
    canvas_ir[b : b + H, b : b + W] = ir
    img_rgb = Image.fromarray(canvas_rgb.astype(np.uint8))
    img_ir = Image.fromarray(canvas_ir.astype(np.uint8)).convert('RGB')
    for k, (_, pts) in enumerate(objects):
        poly = [(pts[i] + offset, pts[i + 1] + offset) for i in range(0, 8, 2)]
        ImageDraw.Draw(img_rgb).polygon(poly, fill=(200, 40 + 40 * k % 200, 40))
        ImageDraw.Draw(img_ir).polygon(poly, fill=(230, 230, 230))
    return img_rgb, img_ir


def polygon_xml(name: str, pts: list[float]) -> str:
    coords = ''.join(
        f'<{a}{i // 2 + 1}>{int(pts[i + (a == "y")])}</{a}{i // 2 + 1}>'
        for i in range(0, 8, 2)
        for a in ('x', 'y')
    )
    return (
        f'\t<object>\n\t\t<name>{name}</name>\n\t\t<pose>Unspecified</pose>\n'
        f'\t\t<truncated>0</truncated>\n\t\t<difficult>0</difficult>\n'
        f'\t\t<polygon>{coords}</polygon>\n\t</object>\n'
    )


def write_xml(path: str, stem: str, body: str) -> None:
    with open(path, 'w') as f:
        f.write(
            '<annotation>\n\t<filename>' + stem + '.jpg</filename>\n'
            '\t<source><database>DroneVehicle</database></source>\n'
            '\t<size><width>840</width><height>712</height><depth>3</depth></size>\n'
            '\t<segmented>0</segmented>\n' + body + '</annotation>\n'
        )


def official(root: str) -> None:
    rng = np.random.default_rng(0)
    index = 1
    for split, n in SPLITS.items():
        d = os.path.join(root, split)
        shutil.rmtree(d, ignore_errors=True)
        for sub in ('img', 'imgr', 'label', 'labelr'):
            os.makedirs(os.path.join(d, split + sub))
        for j in range(n):
            stem = f'{index:05d}'
            index += 1
            objects = make_objects(rng, 3)
            img_rgb, img_ir = draw(objects, index, BORDER, (840, 712), True)
            img_rgb.save(os.path.join(d, split + 'img', stem + '.jpg'), quality=40)
            img_ir.save(os.path.join(d, split + 'imgr', stem + '.jpg'), quality=40)
            bordered = [(name, [v + BORDER for v in pts]) for name, pts in objects]
            ir_body = ''.join(polygon_xml(name, pts) for name, pts in bordered)
            # RGB labels differ from IR labels: shifted by 2 px, last object missing
            rgb_body = ''.join(
                polygon_xml(name, [v + 2 for v in pts]) for name, pts in bordered[:-1]
            )
            if j == 0:
                # spelling variants of freight car / truck, trailing space, junk
                for k, variant in enumerate(
                    ['feright car', 'feright_car', 'feright', 'truvk', 'car ']
                ):
                    ir_body += polygon_xml(
                        variant, rotated(200 + 80 * k, 560, 40, 20, 0.3)
                    )
                ir_body += polygon_xml('*', rotated(300, 300, 30, 15, 0.0))
                ir_body += polygon_xml('', rotated(400, 300, 30, 15, 0.0))
            if j == 1:
                # bndbox object, object without geometry, incomplete polygon
                ir_body += (
                    '\t<object>\n\t\t<name>van</name>\n\t\t<bndbox><xmin>300</xmin>'
                    '<ymin>320</ymin><xmax>350</xmax><ymax>345</ymax></bndbox>\n\t</object>\n'
                    '\t<object>\n\t\t<name>car</name>\n\t\t<pose>Unspecified</pose>\n\t</object>\n'
                    '\t<object>\n\t\t<name>car</name>\n\t\t<polygon><x1>10</x1><y1>10</y1>'
                    '<x2>20</x2></polygon>\n\t</object>\n'
                )
            if j == 2:
                # reaching into the border (clipped) and entirely in it (dropped)
                ir_body += polygon_xml('bus', [80, 200, 130, 200, 130, 230, 80, 230])
                ir_body += polygon_xml('car', [10, 10, 60, 10, 60, 40, 10, 40])
            write_xml(os.path.join(d, split + 'labelr', stem + '.xml'), stem, ir_body)
            write_xml(os.path.join(d, split + 'label', stem + '.xml'), stem, rgb_body)


def dota(root: str) -> None:
    rng = np.random.default_rng(1)
    base = os.path.join(root, 'dota')
    shutil.rmtree(base, ignore_errors=True)
    index = 1
    for split, n in DOTA_SPLITS.items():
        for mod in ('rgb', 'ir'):
            for sub in ('images', 'labels'):
                os.makedirs(os.path.join(base, split, mod, sub))
        for j in range(n):
            stem = f'{index:05d}'
            index += 1
            objects = make_objects(rng, 3)
            img_rgb, img_ir = draw(objects, index, 0, (W, H), False)
            img_rgb.save(
                os.path.join(base, split, 'rgb', 'images', stem + '.jpg'), quality=40
            )
            img_ir.save(
                os.path.join(base, split, 'ir', 'images', stem + '.jpg'), quality=40
            )
            names = [
                'feright_car' if name == 'freight car' else name for name, _ in objects
            ]
            lines = [
                ' '.join(str(int(v)) for v in pts) + f' {name} 0'
                for name, (_, pts) in zip(names, objects)
            ]
            if j == 0:
                lines = ['imagesource:DroneVehicle', 'gsd:null', *lines]
            for mod in ('rgb', 'ir'):
                with open(
                    os.path.join(base, split, mod, 'labels', stem + '.txt'), 'w'
                ) as f:
                    f.write('\n'.join(lines) + '\n')


if __name__ == '__main__':
    here = os.path.dirname(os.path.abspath(__file__))
    official(here)
    dota(here)
