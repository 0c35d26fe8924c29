#!/usr/bin/env python3
"""Generate a tiny LLVIP copy in the official layout.

Layout: visible/{train,test}/NNNNNN.jpg (RGB), infrared/{train,test}/NNNNNN.jpg
(three identical channels, as the real files), Annotations/NNNNNN.xml (Pascal VOC,
class 'person', one folder for both splits). Frames are real-size 1280 x 1024 JPEGs:
a dark street (low light) in the visible frame, warm people in the infrared one.

Reproduced quirks: a box reaching past the image edge (clipped), a box entirely
outside (dropped), an object of another class, an object without <bndbox>, a
<bndbox> missing a coordinate and a box without area (all skipped).
"""

import os
import shutil

import numpy as np
from PIL import Image, ImageDraw

SPLITS = {'train': 3, 'test': 2}
W, H = 1280, 1024


def make_people(rng: np.random.Generator, n: int) -> list[list[int]]:
    """Upright person boxes ``xmin ymin xmax ymax`` inside the frame."""
    boxes = []
    for _ in range(n):
        w, h = int(rng.uniform(60, 110)), int(rng.uniform(180, 300))
        x0, y0 = int(rng.uniform(20, W - w - 20)), int(rng.uniform(300, H - h - 20))
        boxes.append([x0, y0, x0 + w, y0 + h])
    return boxes


def draw(boxes: list[list[int]], seed: int) -> tuple[Image.Image, Image.Image]:
    yy, xx = np.mgrid[0:H, 0:W]
    base = 12 + 10 * xx / W + 8 * yy / H + 2 * (seed % 3)
    rgb = np.stack([base, base * 0.9, base * 1.2], -1)
    ir = 60 + 25 * yy / H
    img_rgb = Image.fromarray(rgb.astype(np.uint8))
    img_ir = Image.fromarray(ir.astype(np.uint8)).convert('RGB')
    for x0, y0, x1, y1 in boxes:
        ImageDraw.Draw(img_rgb).rectangle((x0, y0, x1 - 1, y1 - 1), fill=(35, 30, 40))
        ImageDraw.Draw(img_ir).rectangle((x0, y0, x1 - 1, y1 - 1), fill=(215, 215, 215))
    return img_rgb, img_ir


def person_xml(box: list[int], name: str = 'person') -> str:
    coords = ''.join(
        f'<{k}>{v}</{k}>' for k, v in zip(('xmin', 'ymin', 'xmax', 'ymax'), box)
    )
    return (
        f'\t<object>\n\t\t<name>{name}</name>\n\t\t<pose>Unspecified</pose>\n'
        f'\t\t<truncated>0</truncated>\n\t\t<difficult>0</difficult>\n'
        f'\t\t<bndbox>{coords}</bndbox>\n\t</object>\n'
    )


def write_xml(path: str, stem: str, body: str) -> None:
    with open(path, 'w') as f:
        f.write(
            '<annotation>\n\t<folder>VOC2007</folder>\n\t<filename>' + stem + '.jpg'
            '</filename>\n\t<source><database>LLVIP</database></source>\n'
            '\t<size><width>1280</width><height>1024</height><depth>3</depth></size>\n'
            '\t<segmented>0</segmented>\n' + body + '</annotation>\n'
        )


def quirks(j: int) -> str:
    """The odd objects of the first train frames."""
    if j == 0:
        # past the right edge (clipped), entirely below the frame (dropped)
        return person_xml([1240, 400, 1330, 640]) + person_xml([300, 1030, 360, 1100])
    if j == 1:
        # another class, no <bndbox>, a missing coordinate, no area
        return (
            person_xml([100, 100, 150, 200], name='car')
            + '\t<object>\n\t\t<name>person</name>\n\t</object>\n'
            + '\t<object>\n\t\t<name>person</name>\n\t\t<bndbox><xmin>5</xmin>'
            '<ymin>5</ymin><xmax>20</xmax></bndbox>\n\t</object>\n'
            + person_xml([400, 500, 400, 600])
        )
    return ''


def generate(root: str) -> None:
    rng = np.random.default_rng(0)
    annotations = os.path.join(root, 'Annotations')
    for folder in ('visible', 'infrared', 'Annotations'):
        shutil.rmtree(os.path.join(root, folder), ignore_errors=True)
    os.makedirs(annotations)
    index = 1
    for split, n in SPLITS.items():
        for folder in ('visible', 'infrared'):
            os.makedirs(os.path.join(root, folder, split))
        for j in range(n):
            # real names: 010001.jpg ... (train), 190001.jpg ... (test)
            stem = f'{(1 if split == "train" else 19):02d}{index:04d}'
            index += 1
            boxes = make_people(rng, 2 + j % 2)
            img_rgb, img_ir = draw(boxes, index)
            img_rgb.save(
                os.path.join(root, 'visible', split, stem + '.jpg'), quality=30
            )
            img_ir.save(
                os.path.join(root, 'infrared', split, stem + '.jpg'), quality=30
            )
            body = ''.join(person_xml(b) for b in boxes)
            if split == 'train':
                body += quirks(j)
            write_xml(os.path.join(annotations, stem + '.xml'), stem, body)


if __name__ == '__main__':
    generate(os.path.dirname(os.path.abspath(__file__)))
